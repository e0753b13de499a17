"""Services this machine runs for the demo, the tests and users trying things out: Apache Kafka and
Tansu brokers, an HDFS minicluster, and the Maven-fetched jar sets they run from; all on loopback,
all child processes with one lifecycle (``process.Service``: start, wait until ready, log tail,
stop, context manager).

May import: ``core``. Never Spark (the Connect server, a Spark driver, lives in ``spark``).
"""
