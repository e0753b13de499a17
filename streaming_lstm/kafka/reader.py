"""Reading a Kafka topic as a stream: Spark's own connector by default, the Python data source
(:mod:`streaming_lstm.kafka.source`) where the connector's jar is not on the classpath.

Choosing (``stream.kafka_reader``, ``--kafka-reader``):

* ``auto`` (default): Spark's ``kafka`` format when its connector is on the classpath (after
  ``scripts/setup.sh`` the local session is built with it, see spark/session.py), else the Python
  data source.
* ``spark``: Spark's connector, or a clear error when it is missing.
* ``python``: the project's Python data source, for environments without the jar.

Both give the columns ``key, value, topic, partition, offset, timestamp`` (``value`` as a string)
and read the same options with the same meaning: ``startingOffsets``, ``maxOffsetsPerTrigger``,
``failOnDataLoss`` and ``kafka.*`` pass-through. Differences, as found:

* ``kafka.*`` names are the Java client's for the connector; the Python source hands them to
  kafka-python with dots as underscores, which rejects a name it does not know.
* ``connectTimeoutSeconds`` (the up-front check below), ``brokerWaitSeconds``,
  ``readTimeoutSeconds`` and ``maxOffsetsPerPartition`` are the Python source's; they are not
  passed to the connector. The connector's own (``minPartitions``, ``fetchOffset.*``, ...) are
  ignored by the Python source.
* A broker that goes away: the Python source waits up to ``brokerWaitSeconds`` and says so in one
  line from its planner; with the connector, Spark's Kafka admin client waits and retries
  (``kafka.default.api.timeout.ms``, ``fetchOffset.numRetries``), and :class:`BrokerWatch` prints
  the one line from the driver.
* Records gone before they were read (retention): both fail with an error that names the
  partition and offsets when ``failOnDataLoss=true``, and skip them when ``false``;
  :func:`records_skipped` counts what was skipped from Spark's progress reports, for either.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.kafka.source import CONNECT_TIMEOUT_S, SOURCE_NAME, KafkaDataSource, connect
from streaming_lstm.spark.connect import is_remote

log = logging.getLogger(__name__)
CONNECTOR_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
READERS = {"spark": "spark-connector", "python": "python-source"}
FETCH_MAX_WAIT_MS = "10"
PYTHON_ONLY_OPTIONS = frozenset({"connecttimeoutseconds", "brokerwaitseconds", "readtimeoutseconds", "maxoffsetsperpartition"})


def has_connector(spark: SparkSession) -> bool:
    """Spark's Kafka connector is loadable in this session.

    ``Class.forName`` from py4j asks the JVM's system class loader, which never sees jars added
    through ``spark.jars``; Spark's own ``Utils.classIsLoadable`` asks the context class loader that
    does. Under Spark Connect there is no py4j: the server is asked to resolve the ``kafka`` format
    (analysis only; no broker is contacted), which fails with DATA_SOURCE_NOT_FOUND without it.
    """
    if is_remote(spark):
        try:
            spark.readStream.format("kafka").option("kafka.bootstrap.servers", "127.0.0.1:9").option("subscribe", "probe").load().schema  # noqa: B018
            return True
        except Exception as exc:
            if "DATA_SOURCE_NOT_FOUND" not in str(exc) and "Failed to find data source" not in str(exc):
                log.warning("could not tell whether the Connect server has Spark's Kafka connector (%s); using the Python source", exc)
            return False
    try:
        assert spark._jvm is not None
        return bool(spark._jvm.org.apache.spark.util.Utils.classIsLoadable(CONNECTOR_CLASS))
    except Exception:
        return False


def choose_reader(spark: SparkSession, cfg: AppConfig) -> str:
    """``"spark-connector"`` or ``"python-source"`` for ``stream.kafka_reader``."""
    wanted = cfg.stream.kafka_reader
    if wanted == "python":
        return READERS["python"]
    if has_connector(spark):
        return READERS["spark"]
    if wanted == "spark":
        raise ConfigError(
            "stream.kafka_reader: 'spark' needs Spark's Kafka connector on the classpath: run scripts/setup.sh (or 'streaming-lstm jars'), "
            "start Spark with --packages org.apache.spark:spark-sql-kafka-0-10_2.13:<Spark version>, or use --kafka-reader python"
        )
    return READERS["python"]


def read_kafka(spark: SparkSession, cfg: AppConfig, bootstrap: str, topic: str, options: Mapping[str, str], reader: str | None = None) -> DataFrame:
    """The stream of ``topic``; checks up front (bounded) that the broker and topic exist."""
    consumer, _ = connect(bootstrap, topic, options, float(options.get("connectTimeoutSeconds", CONNECT_TIMEOUT_S)))
    consumer.close()
    s = cfg.stream
    opts = {
        # A task reads a fixed offset range, all of it already on the broker; at the end of the range
        # the consumer's fetch would otherwise wait Kafka's default 500 ms for more, which is most
        # of a small batch's time (python -m bench kafka-wait). A user's own setting wins.
        "kafka.fetch.max.wait.ms": FETCH_MAX_WAIT_MS,
        "kafka.bootstrap.servers": bootstrap,
        "subscribe": topic,
        "startingOffsets": s.starting_offsets,
        "failOnDataLoss": str(s.fail_on_data_loss).lower(),
        **({"maxOffsetsPerTrigger": str(s.max_offsets_per_trigger)} if s.max_offsets_per_trigger else {}),
        **options,
    }
    reader = reader or choose_reader(spark, cfg)
    if reader == READERS["spark"]:
        log.info("Kafka: reading %s with Spark's connector", topic)
        df = spark.readStream.format("kafka").options(**{k: v for k, v in opts.items() if k.lower() not in PYTHON_ONLY_OPTIONS}).load()
    else:
        log.info("Kafka: reading %s with the Python data source", topic)
        spark.dataSource.register(KafkaDataSource)
        df = spark.readStream.format(SOURCE_NAME).options(**opts).load()
    return df.select("key", F.col("value").cast("string").alias("value"), "topic", "partition", "offset", "timestamp")


def _offsets(raw: Any) -> dict[str, int]:
    """A Kafka source's offsets in a progress report as ``{"topic/partition": offset}``.

    The connector writes ``{"topic": {"0": 12, ...}}``; the Python source ``{"0": 12, ...}``.
    """
    if raw is None:
        return {}
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update({f"{key}/{p}": int(o) for p, o in item.items()})
        elif isinstance(item, (int, str)) and str(item).lstrip("-").isdigit():
            out[f"/{key}"] = int(item)
    return out


def records_skipped(progress: Mapping[str, Any]) -> int:
    """Records a batch planned but did not read: gone from Kafka (``failOnDataLoss=false``).

    Planned = the sum over partitions of end - start offset; read = ``numInputRows``. (Transaction
    markers also take an offset each; a topic written by transactional producers counts them too.)
    """
    planned = 0
    for source in progress.get("sources", []):
        start, end = _offsets(source.get("startOffset")), _offsets(source.get("endOffset"))
        planned += sum(max(0, o - start.get(tp, o)) for tp, o in end.items())
    read = progress.get("numInputRows")
    if read is None:  # Spark Connect's progress reports carry it per source only
        read = sum(int(source.get("numInputRows") or 0) for source in progress.get("sources", []))
    return max(0, planned - int(read))


class BrokerWatch:
    """One line on stderr when Kafka stops answering and one when it is back (the connector's path).

    :meth:`check` is cheap to call often: it opens a TCP connection to a bootstrap server at most
    every ``every`` seconds.
    """

    def __init__(self, bootstrap: str, every: float = 2.0) -> None:
        self.servers = [(h, int(p)) for h, _, p in (s.strip().rpartition(":") for s in bootstrap.split(",") if s.strip())]
        self.bootstrap = bootstrap
        self.every = every
        self.away_since: float | None = None
        self.outages = 0
        self._next = 0.0

    def _reachable(self) -> bool:
        for host, port in self.servers:
            try:
                socket.create_connection((host, port), timeout=1.0).close()
                return True
            except OSError:
                continue
        return False

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        up = self._reachable()
        if not up and self.away_since is None:
            self.away_since = now
            self.outages += 1
            _say(f"Kafka at {self.bootstrap} is not answering; Spark's connector waits for it and resumes where it stopped")
        elif up and self.away_since is not None:
            _say(f"Kafka at {self.bootstrap} is back after {now - self.away_since:.0f} s")
            self.away_since = None


def _say(message: str) -> None:
    print(f"streaming-lstm kafka: {message}", file=sys.stderr, flush=True)
