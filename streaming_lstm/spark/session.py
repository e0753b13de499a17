"""Creating the Spark session the trainer runs in (local mode, a cluster, or under spark-submit)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

from pyspark.sql import SparkSession

from streaming_lstm.core.config import SparkConfig
from streaming_lstm.local.jvm_deps import LATE_C2, connector_jars, extra_java_options
from streaming_lstm.spark import cds, zygote

LOG4J2 = "log4j2.properties"
REDACTED_OPTIONS = "(?i)url|password|secret|token|jaas"
REDACTED_SETTINGS = "(?i)secret|password|token|access[.]?key|jaas"
LOG4J2_VERBOSE = "log4j2-verbose.properties"  # -v: also the JVM's stack traces of a query that ends
CHECKPOINT_MANAGER = "spark.sql.streaming.checkpointFileManagerClass"
DAEMON_MODULE = "spark.python.daemon.module"
DAEMON = "streaming_lstm.spark.daemon"  # forks the Python workers with TensorFlow imported
FILESYSTEM_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"


_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def byte_size(text: str) -> int:
    """A Spark byte-size setting (``1g``, ``512m``, ``1073741824``; a bare number is bytes) in bytes."""
    found = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    unit = found.group(2).lower() if found else None
    if found is None or unit not in _BYTE_UNITS:
        raise ValueError(f"not a Spark byte size: {text!r} (a number with an optional unit k, m, g or t)")
    return int(found.group(1)) * _BYTE_UNITS[unit]


def max_result_bytes(spark: SparkSession) -> int:
    """``spark.driver.maxResultSize`` in bytes (0: no limit)."""
    return byte_size(spark.sparkContext.getConf().get("spark.driver.maxResultSize", "1g"))


def log4j2_path() -> str:
    """The JVM's log settings: the quiet ones, or with ``-v`` (streaming_lstm's logger at DEBUG) the verbose ones."""
    import logging

    name = LOG4J2_VERBOSE if logging.getLogger("streaming_lstm").isEnabledFor(logging.DEBUG) else LOG4J2
    return str(resources.files("streaming_lstm").joinpath("resources", name))


def require_java() -> None:
    """Fail with one clear line when no Java runtime is on PATH or JAVA_HOME."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java") is None:
        raise RuntimeError("Java was not found (Spark needs Java 17 or 21): install a JDK, e.g. 'apt-get install openjdk-17-jre-headless', or set JAVA_HOME")


def local_settings() -> dict[str, str]:
    """What a local session sets beyond every session's settings ([spark.conf] overrides each).

    The checkpoint manager: Spark's default (FileContext) has Hadoop's local file system fork a
    `chmod` for every checkpoint file it writes (no native Hadoop library), several times slower
    than the FileSystem manager (`python -m bench checkpoint-io`); rename on a local disk is
    atomic, so exactly-once holds (on a cluster, HDFS or object stores, Spark's default stays).
    The Python daemon: the workers are forked with TensorFlow imported (spark/daemon.py).
    """
    return {CHECKPOINT_MANAGER: FILESYSTEM_MANAGER, DAEMON_MODULE: DAEMON}


def get_session(cfg: SparkConfig, *, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """The active session if there is one (spark-submit, tests), else a new one from ``cfg``.

    In local mode the Python workers must run this interpreter: without PYSPARK_PYTHON Spark starts
    ``python3`` from PATH, which may lack the venv's packages.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    # Under spark-submit the JVM starts this Python driver and hands it the gateway port: the master
    # and deploy settings are the submitted ones and must not be overridden here.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    local = not submitted and cfg.master.startswith("local")
    java_opts = f"-Dlog4j2.configurationFile=file:{log4j2_path()}"
    driver_opts = f"{java_opts} {cds.java_options()} {shlex.join([*LATE_C2, *extra_java_options()])}" if local else java_opts
    builder = (
        SparkSession.builder.appName(cfg.app_name)
        .config("spark.driver.extraJavaOptions", driver_opts.strip())
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.python.worker.reuse", "true")
        # The JVM and its Python workers (and the driver's Arrow collection) talk over Unix domain
        # sockets instead of loopback TCP, where a task's small writes wait on the peer's delayed
        # ACK: ~40 ms of every Python task's input on this project's machine.
        .config("spark.python.unix.domain.socket.enabled", "true")
        # PySpark 4 wraps every DataFrame and Column call to record its Python call site for error
        # contexts: four py4j round trips each (the active session, the conf, set, clear), which
        # roughly doubles a micro-batch's round trips to the JVM. Set it to "true" in
        # [spark.conf] to get those call sites back.
        .config("spark.python.sql.dataFrameDebugging.enabled", "false")
        # Kafka credentials travel as options (kafka.sasl.jaas.config holds the password): their
        # values are redacted in plans, the UI and the event log, as Spark's defaults redact
        # passwords and tokens in its own settings.
        .config("spark.sql.redaction.options.regex", REDACTED_OPTIONS)
        .config("spark.redaction.regex", REDACTED_SETTINGS)
    )
    if not submitted:
        builder = builder.master(cfg.master)
    conf = {**(local_settings() if local else {}), **cfg.conf, **(extra_conf or {})}
    connector = connector_jars()
    if not submitted and connector:
        # Spark's Kafka connector, fetched by scripts/setup.sh for exactly this PySpark version;
        # under spark-submit the submitter passes --jars or --packages.
        conf["spark.jars"] = ",".join([*filter(None, conf.get("spark.jars", "").split(",")), *(str(j) for j in connector)])
    for key, value in conf.items():
        builder = builder.config(key, value)
    if local and conf.get(DAEMON_MODULE) == DAEMON:
        start_zygote(conf)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


_zygotes: list[subprocess.Popen[bytes]] = []  # kept to be reaped: each exits with its daemon or this process


def start_zygote(conf: dict[str, str]) -> None:
    """Import the Python daemon's modules in a process of their own while the JVM starts
    (spark/zygote.py): the daemon Spark launches for the first Python task takes it over."""
    threads = conf.get("spark.executorEnv.OMP_NUM_THREADS", conf.get("spark.task.cpus", "1"))
    _zygotes[:] = [z for z in _zygotes if z.poll() is None]
    proc = zygote.start(threads)
    if proc is not None:
        _zygotes.append(proc)


ADAPTIVE = "spark.sql.adaptive.enabled"


@contextmanager
def adaptive_execution_off(session: SparkSession) -> Iterator[None]:
    """Adaptive query execution off in ``session`` for the block, then as it was.

    Why, for a micro-batch's plans (the session foreachBatch hands over is the query's own clone):
    adaptive execution runs the cached batch and the key shuffle as jobs of their own (three jobs a
    clean batch instead of one) and re-plans between them, and the key shuffle's fixed task count
    is not a thing it may change (the figures: README, Benchmarks). Restored after, for callers that
    pass their own session.
    """
    with setting(session, ADAPTIVE, "false"):
        yield


@contextmanager
def setting(session: SparkSession, key: str, value: str) -> Iterator[None]:
    """``key`` set to ``value`` in ``session``'s SQL conf for the block, then as it was (unset if it was)."""
    conf = session.conf
    before = conf.get(key, None)
    conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            conf.unset(key)
        else:
            conf.set(key, before)
