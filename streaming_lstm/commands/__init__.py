"""The command line: one module per subcommand, each with its parser and its body (``fit``,
``evaluate``, ``train``, ``demo``, ``export``, ``predict``, ``report``, ``produce``, ``broker``,
``init-config``, ``jars``), the flag groups they share (``common``), the top-level parser
(``main``), and the one-process fit / evaluate / predict they call (``standalone``).

May import: anything in the project, ``producers`` included (lazily, inside the command that needs
it: a spark-submit zip ships ``streaming_lstm`` alone). Nothing imports it but ``streaming_lstm.cli``.
"""
