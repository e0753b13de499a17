"""What a valid row or event is, with its two executors side by side: ``rows`` (the rules, CSV per
RFC 4180, and the Python executor the one-process commands use) and ``spark_parse`` / ``events``
(the same rules as Spark SQL expressions inside the streaming plan); ``data`` reads a whole file
for ``fit`` and ``evaluate``; ``counts`` counts a batch's rows by verdict, in one vocabulary for
the query's observed metrics and the trainer. Both executors give the same verdict and reason for
every line.

May import: ``core``, ``storage`` (reading files).
"""
