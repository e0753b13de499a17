"""The command line: the parser of ``streaming-lstm`` and the body of each subcommand (one-process
fit / evaluate / predict, init-config, export, report, demo), and how results are printed.

May import: anything in the project, ``producers`` included (lazily, inside the command that needs
it: a spark-submit zip ships ``streaming_lstm`` alone). Nothing imports it but ``streaming_lstm.cli``.
"""
