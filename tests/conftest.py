"""Shared fixtures. The session-scoped services (a Spark session, ~5 s to start; a broker, HDFS, a
Connect server) start once per test process: once per run serially, once per pytest-xdist worker
that needs them under ``scripts/test.sh``. All listen on free ports, so workers never collide."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Spark's Python workers must run this interpreter (the venv's), not python3 from PATH.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# The suite starts dozens of JVMs (each command-line test's Spark driver, the brokers, HDFS) that
# live a minute or less: C1 alone compiles what they run at a fraction of the CPU C2 spends, and no
# test measures speed (local/jvm_deps.extra_java_options; set it empty to test with C2).
os.environ.setdefault("STREAMING_LSTM_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def iris_csv() -> Path:
    return ROOT / "data" / "iris.csv"


@pytest.fixture(scope="session")
def iris_lines(iris_csv: Path) -> list[str]:
    """The 150 Iris rows as CSV lines (no header), in file (class) order."""
    return iris_csv.read_text().splitlines()[1:]


@pytest.fixture(scope="session")
def iris_cfg():  # type: ignore[no-untyped-def]
    from streaming_lstm.core.config_load import load_config

    return load_config(ROOT / "conf" / "iris.toml")


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    session = get_session(SparkConfig(master="local[2]", conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka() -> Iterator[object]:
    """A real Apache Kafka broker (KRaft, one JVM on loopback) for the whole test process, from the jars
    scripts/setup.sh fetched. Tests use uuid-named topics, so they share it."""
    from streaming_lstm.local.kafka_broker import ApacheKafkaBroker

    with ApacheKafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def hdfs(spark: object) -> Iterator[object]:
    """A real HDFS (MiniDFSCluster: one NameNode, one DataNode, own JVM, loopback) for the whole test process.

    The shared Spark session gets the cluster's client settings (one replica per block); child
    processes get them through ``HADOOP_CONF_DIR`` (``hdfs.conf_dir``), as on a real cluster.
    Tests use uuid-named directories, so they share it."""
    from streaming_lstm.local.minidfs import MiniDFS

    with MiniDFS() as dfs:
        conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        for key, value in MiniDFS.CLIENT_CONF.items():
            conf.set(key, value)
        yield dfs


@pytest.fixture(scope="session")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Spark Connect server (its own driver JVM and Python workers, local[2], loopback) for
    the whole test process, started as ``demo --remote local`` starts one; clients reach it at the URL."""
    from streaming_lstm.spark import connect_server

    server = connect_server.start("local[2]", log_path=str(tmp_path_factory.mktemp("connect") / "server.log"))
    yield server.client_url  # the server takes only clients with its token
    server.stop()


@pytest.fixture(params=["spark-connector", "python-source"])
def reader(request: pytest.FixtureRequest) -> str:
    """Each Kafka test runs once with Spark's connector and once with the Python data source."""
    return str(request.param)


READER_SETTING = {"spark-connector": "spark", "python-source": "python"}


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[object]:
    """A real Apache Kafka broker whose client listener is SASL_SSL (SCRAM-SHA-512, TLS with a
    certificate made at start-up): what production clusters require. Its own credentials."""
    from streaming_lstm.local.kafka_broker import ApacheKafkaBroker

    with ApacheKafkaBroker(secure=True) as broker:
        yield broker
