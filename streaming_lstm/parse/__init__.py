"""What a valid row or event is, with its executors side by side: ``rows`` (the rules, CSV per
RFC 4180, and the Python executor the one-process commands use), ``spark_parse`` / ``events``
(the same rules as Spark SQL expressions inside the streaming plan) and ``arrow_parse`` (training
rows in a Python task of the plan built once, decided in Arrow's kernels where they can be);
``data`` reads a whole file for ``fit`` and ``evaluate``; ``counts`` counts a batch's rows by verdict, in one vocabulary for
the query's observed metrics and the trainer. Every executor gives the same verdict and reason
for every line.

May import: ``core``, ``storage`` (reading files).
"""
