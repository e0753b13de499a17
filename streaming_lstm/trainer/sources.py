"""Streaming sources. Every source yields a DataFrame with a string column ``value`` holding one
row of the dataset (a CSV line or a JSON object); everything after that is shared (spark_parse.py).

Offsets and what a micro-batch includes:

* ``socket``: Spark's socket source. Not fault-tolerant: rows received but not yet in a committed
  batch are lost if the driver dies (Spark keeps no replayable log of them). For demos and tests.
* ``file``: new files in a directory, at most ``stream.max_files_per_trigger`` per batch; a file is
  read whole, once (Spark's file-source log is part of the checkpoint).
* ``kafka``: see kafka/reader.py (Spark's connector, or the Python data source in kafka/source.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.kafka.settings import bootstrap_servers, kafka_options
from streaming_lstm.spark.connect import is_remote
from streaming_lstm.storage.fs import filesystem, is_local


@dataclass(frozen=True)
class SourceSpec:
    """Which stream to read, as the ``train`` and ``predict`` commands take it."""

    kind: str  # socket | file | kafka
    host: str = "127.0.0.1"
    port: int | None = None
    path: str | None = None
    bootstrap: str | None = None
    topic: str | None = None
    kafka_options: dict[str, str] = field(default_factory=dict, repr=False)  # may hold credentials: never in a repr

    @classmethod
    def from_args(cls, args: Any) -> SourceSpec:
        """From the command line's source flags (``--source``, ``--host`` ... ``--kafka-option``)."""
        kafka = args.source == "kafka"
        return cls(
            kind=args.source,
            host=args.host,
            port=args.port,
            path=args.path,
            bootstrap=bootstrap_servers(args.bootstrap) if kafka else args.bootstrap,
            topic=args.topic,
            kafka_options=kafka_options(args.kafka_option, getattr(args, "kafka_properties", None)),
        )

    def check(self) -> None:
        """The flags the source needs are there, and a local ``--path`` is a directory: said before
        any engine starts (a Hadoop URI is checked when Spark reads it)."""
        if self.kind == "socket" and not self.port:
            raise ConfigError("--port is required for --source socket")
        if self.kind == "file":
            if not self.path:
                raise ConfigError("--path is required for --source file")
            if is_local(self.path) and not os.path.isdir(self.path):
                raise FileNotFoundError(f"--path {self.path}: not a directory (the file source watches a directory for new files)")
        if self.kind == "kafka" and not self.topic:
            raise ConfigError("--topic is required for --source kafka")


def open_source(spark: SparkSession, cfg: AppConfig, spec: SourceSpec) -> DataFrame:
    """The streaming DataFrame of ``spec``; a missing setting is a ConfigError naming the flag."""
    spec.check()
    if spec.kind == "socket":
        assert spec.port is not None
        return socket_source(spark, spec.host, spec.port)
    if spec.kind == "file":
        assert spec.path is not None
        return file_source(spark, spec.path, cfg)
    if spec.kind == "kafka":
        assert spec.bootstrap is not None and spec.topic is not None
        return kafka_source(spark, cfg, spec.bootstrap, spec.topic, spec.kafka_options)
    raise ConfigError(f"--source {spec.kind}: expected socket, file or kafka")


def socket_source(spark: SparkSession, host: str, port: int) -> DataFrame:
    return spark.readStream.format("socket").option("host", host).option("port", port).load()


def file_source(spark: SparkSession, path: str | os.PathLike[str], cfg: AppConfig) -> DataFrame:
    """New files in a directory: a local path or any Hadoop URI (``hdfs://``, ``s3a://`` ...)."""
    loc = os.fspath(path)
    # Under Spark Connect a Hadoop URI is the server's to read (this client has no JVM to ask).
    checkable = is_local(loc) or not is_remote(spark)
    if checkable and not filesystem(loc).is_dir(loc):
        raise FileNotFoundError(f"--path {loc}: not a directory (the file source watches a directory for new files)")
    return spark.readStream.option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger).text(loc)


def kafka_source(spark: SparkSession, cfg: AppConfig, bootstrap: str, topic: str, options: Mapping[str, str]) -> DataFrame:
    """Kafka records' values as ``value`` (plus key, topic, partition, offset, timestamp)."""
    from streaming_lstm.kafka.reader import read_kafka

    return read_kafka(spark, cfg, bootstrap, topic, options)
