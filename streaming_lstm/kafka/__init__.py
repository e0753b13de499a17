"""Kafka as a source: the client settings (bootstrap, ``--kafka-option``), the choice between
Spark's own connector and the project's Python data source, and that data source (offset ranges
planned on the driver, read by the tasks).

May import: ``core``, ``spark``.
"""
