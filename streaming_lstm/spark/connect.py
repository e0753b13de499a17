"""The Spark Connect seam: the few places where a classic driver and a Connect client differ.

Under Spark Connect (``--remote sc://HOST:PORT``, or ``SPARK_REMOTE``) the session is a thin gRPC
client: there is no ``SparkContext``, no broadcast, no job group and no py4j gateway. Everything
else the trainer does (DataFrames, ``mapInPandas`` over Arrow, streaming ``foreachBatch``) works in
both modes through the same code. What differs is collected here:

* :func:`is_remote` says which kind of session a function was handed;
* :func:`default_parallelism` asks Spark itself (a tiny ``range`` job) instead of the SparkContext;
* :func:`describe` labels the jobs that follow (a job description in classic mode, a tag under
  Connect, where descriptions cannot be set);
* :func:`open_session` turns ``--remote`` into a session, starting a local server for ``local``.

* :func:`ship_model` sends the weights to the tasks: a broadcast variable in classic mode; under
  Connect, which has none, ``None``, and the caller adds one *model row* per task to the data
  instead (trainer/routing.py, trainer/predictor.py). Rows work in both modes, but cost a shuffle
  of the model per batch (``python -m bench overhead`` compares them), so classic mode broadcasts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from streaming_lstm.core.config import ConfigError, SparkConfig

REMOTE_ENV = "SPARK_REMOTE"
_TAG_OK = re.compile(r"[^A-Za-z0-9_.-]+")


def is_remote(spark: Any) -> bool:
    """True for a Spark Connect session (``pyspark.sql.connect.session.SparkSession``)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """The cluster's default parallelism (cores), in both modes.

    Under Connect there is no ``sparkContext.defaultParallelism``; ``spark.range`` without a
    partition count is split into exactly that many partitions, so counting the partitions of a
    range that has rows for each gives the same number.
    """
    if not is_remote(spark):
        return int(spark.sparkContext.defaultParallelism)
    ids = spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p"))
    return int(ids.agg(F.max("p")).first()[0]) + 1  # type: ignore[index]


def describe(spark: SparkSession, text: str) -> None:
    """Label the jobs that follow (the Spark UI's job description; a job tag under Connect)."""
    if is_remote(spark):
        spark.clearTags()
        spark.addTag(_TAG_OK.sub("-", text).strip("-")[:100] or "streaming-lstm")
    else:
        spark.sparkContext.setJobDescription(text)


def ship_model(spark: SparkSession, blob: bytes) -> Any:
    """A broadcast of ``blob`` (classic), or None under Connect: send it as model rows instead.
    Release it with :func:`release` once the batch's job is done."""
    return None if is_remote(spark) else spark.sparkContext.broadcast(blob)


def release(shipped: Any) -> None:
    if shipped is not None:
        shipped.unpersist()


def remote_from(flag: str | None) -> str | None:
    """The Connect URL asked for: ``--remote`` first, then ``$SPARK_REMOTE``; None for classic."""
    value = flag or os.environ.get(REMOTE_ENV) or None
    if value is None:
        return None
    if value != "local" and not value.startswith("sc://"):
        raise ConfigError(f"--remote {value!r}: expected sc://HOST:PORT, or 'local' to start a local Spark Connect server for this run")
    return value


@dataclass
class Session:
    """The session a command runs in: ``kind`` is "classic" or "connect"; for ``--remote local``
    also the local server started for it (stopped with the session)."""

    spark: SparkSession
    kind: str
    url: str | None = None
    server: Any = None  # connect_server.LocalServer

    def stop(self) -> None:
        try:
            self.spark.stop()
        finally:
            if self.server is not None:
                self.server.stop()


def open_session(cfg: SparkConfig, remote: str | None, *, server_log: str | None = None) -> Session:
    """A classic session from ``cfg`` (remote None), a Connect client of ``sc://...``, or, for
    ``local``, a Connect client of a local server started first (with ``cfg``'s master and conf)."""
    if remote is None:
        from streaming_lstm.spark.session import get_session

        return Session(get_session(cfg), "classic")
    server = None
    url = remote
    if remote == "local":
        from streaming_lstm.spark import connect_server

        server = connect_server.start(cfg.master, conf=cfg.conf, log_path=server_log)
        url = server.client_url
    try:
        # PySpark's builder, which also switches pyspark.sql.functions to Connect columns for this
        # process; so one process holds one kind of session (it refuses a remote one next to a
        # classic one).
        spark = SparkSession.builder.remote(url).getOrCreate()
    except Exception:
        if server is not None:
            server.stop()
        raise
    return Session(spark, "connect", shown(url), server)


def shown(url: str) -> str:
    """A Connect URL as it may be printed: without its parameters (a token among them)."""
    return url.split("/;")[0]
