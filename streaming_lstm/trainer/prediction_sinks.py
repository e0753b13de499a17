"""Where streaming predictions go, and the record that makes a replayed batch write the same bytes.

Every prediction is one record: the JSON object ``predict`` writes, with ``id``, the input row's
identity: ``topic/partition/offset`` from a Kafka source, ``entity/time`` for an event window
(``time``: its last event's, seconds since the epoch), else ``batch_id/position`` (the row's place
in its micro-batch, which a replay of the batch repeats).

Replays (:class:`ScoredLog`): before a batch's records are written, the model version that scored
it and its ``scored_at`` are recorded under ``CHECKPOINT/scored/``, with a copy of that version (the
trainer prunes old versions). Spark replays only the batch after the last one it committed: a
replay finds its record, scores with the same version and writes the same records.

What each sink guarantees:

* ``jsonl`` (``--out FILE`` or standard output): at least once; a replayed batch's lines are
  appended again, identical.
* ``kafka`` (``--out-topic T``): key = ``id``, value = the JSON line. At least once: duplicates come
  only from a replayed batch and are byte-identical to the first copy. Spark's connector writes
  them where it is loaded (``df.write.format("kafka")``), else kafka-python (``acks=all``).
* ``parquet`` (``--out DIR``): ``DIR/batch_id=N/``, written by Spark and replaced whole when the
  batch is replayed: exactly once per row. ``pandas.read_parquet(DIR)``, ``pyarrow.dataset`` (hive
  partitioning gives ``batch_id``) and ``spark.read.parquet(DIR)`` read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from pyspark.sql import SparkSession

from streaming_lstm.core.config import ConfigError
from streaming_lstm.storage.fs import filesystem, join
from streaming_lstm.storage.store import ModelStore, SavedModel

SINKS = ("jsonl", "kafka", "parquet")
PARQUET_SCHEMA = (
    "id string, value string, entity string, time double, class string, probabilities array<double>, forecast array<double>, "
    "label string, error string, model_version bigint, scored_at double"
)


@dataclass(frozen=True)
class Scored:
    """What scored a batch: recorded before its records are written, read back by a replay."""

    batch_id: int
    model_version: int
    scored_at: float


class ScoredLog:
    """``CHECKPOINT/scored/``: ``last.json`` (the newest batch's :class:`Scored`) and ``model/``, a
    copy of the one version it names."""

    def __init__(self, checkpoint: str) -> None:
        self.dir = join(checkpoint, "scored")
        self.path = join(self.dir, "last.json")
        self.models = ModelStore(join(self.dir, "model"))
        self.fs = filesystem(self.dir)

    def replay(self, batch_id: int) -> tuple[Scored, SavedModel] | None:
        """The record and model of ``batch_id`` if it was scored before (a replay), else None."""
        if not self.fs.exists(self.path):
            return None
        scored = Scored(**json.loads(self.fs.read_bytes(self.path)))
        return (scored, self.models.load(scored.model_version)) if scored.batch_id == batch_id else None

    def record(self, batch_id: int, saved: SavedModel, scored_at: float) -> Scored:
        """Keep ``saved`` (the only version kept here), then name it as ``batch_id``'s."""
        if saved.version not in self.models.versions():
            meta = {k: v for k, v in saved.meta.items() if k not in ("format", "version", "sha256", "config")}
            self.models.save(saved.version, saved.config, saved.weights, saved.norm, meta, saved.next_weights, keep=1, extra=saved.server)
        scored = Scored(batch_id, saved.version, scored_at)
        self.fs.write_atomic(self.path, json.dumps(scored.__dict__, sort_keys=True).encode())
        return scored


class Sink(Protocol):
    def write(self, spark: SparkSession, batch_id: int, records: Sequence[Mapping[str, Any]]) -> None: ...


class JsonLinesSink:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, spark: SparkSession, batch_id: int, records: Sequence[Mapping[str, Any]]) -> None:
        self.out.write("".join(json.dumps(r) + "\n" for r in records))
        self.out.flush()


class KafkaSink:
    """One record per prediction to ``topic`` (see the module docstring)."""

    def __init__(self, bootstrap: str, topic: str, options: Mapping[str, str], connector: bool | None = None) -> None:
        """``connector``: write with Spark's Kafka connector (True) or kafka-python (False); None: the connector if the session has it."""
        from streaming_lstm.kafka.settings import client_config, ensure_topic

        self.bootstrap, self.topic, self.options = bootstrap, topic, dict(options)
        ensure_topic(bootstrap, topic, -1, client_config(options))  # clusters often refuse to create topics on first write
        self._producer: Any = None
        self._connector = connector

    def write(self, spark: SparkSession, batch_id: int, records: Sequence[Mapping[str, Any]]) -> None:
        from streaming_lstm.kafka.reader import has_connector

        pairs = [(str(r["id"]), json.dumps(r)) for r in records]
        if self._connector is None:
            self._connector = has_connector(spark)
        if self._connector:
            frame = spark.createDataFrame(pairs, "key string, value string")
            opts = {k: v for k, v in self.options.items() if k.startswith("kafka.")}
            frame.write.format("kafka").options(**opts).option("kafka.bootstrap.servers", self.bootstrap).option("topic", self.topic).save()
            return
        self._python_producer().send_all(pairs)

    def _python_producer(self) -> Any:
        if self._producer is None:
            self._producer = PythonProducer(self.bootstrap, self.topic, self.options)
        return self._producer


class PythonProducer:
    """kafka-python, ``acks=all``, flushed per batch: for sessions without Spark's connector."""

    def __init__(self, bootstrap: str, topic: str, options: Mapping[str, str]) -> None:
        from kafka import KafkaProducer

        from streaming_lstm.kafka.settings import authentication_named, client_config

        self.topic = topic
        config = client_config(options)
        with authentication_named(bootstrap, config):
            self.producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", **config)

    def send_all(self, pairs: Sequence[tuple[str, str]]) -> None:
        for key, value in pairs:
            self.producer.send(self.topic, key=key.encode(), value=value.encode())
        self.producer.flush()


class ParquetSink:
    """``DIR/batch_id=N/`` per batch, replaced whole on a replay (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.dir = directory

    def write(self, spark: SparkSession, batch_id: int, records: Sequence[Mapping[str, Any]]) -> None:
        names = [c.split(" ")[0] for c in PARQUET_SCHEMA.split(", ")]
        rows = [tuple(r.get(n) for n in names) for r in records]
        spark.createDataFrame(rows, PARQUET_SCHEMA).coalesce(1).write.mode("overwrite").parquet(join(self.dir, f"batch_id={batch_id}"))


@dataclass(frozen=True)
class SinkSpec:
    """The ``--sink`` flags: which sinks, and where each writes. Picklable, so a Spark Connect
    server can build the sinks itself (trainer/predictor.py's RemotePredictHandler)."""

    kinds: tuple[str, ...] = ("jsonl",)
    out: str | None = None
    topic: str | None = None
    bootstrap: str | None = None
    kafka_options: dict[str, str] = field(default_factory=dict, repr=False)  # may hold credentials

    def check(self) -> None:
        unknown = [k for k in self.kinds if k not in SINKS]
        if unknown:
            raise ConfigError(f"--sink {unknown[0]}: expected one of {', '.join(SINKS)}")
        if "jsonl" in self.kinds and "parquet" in self.kinds:
            raise ConfigError("--sink jsonl and --sink parquet both write --out: pick one of them (kafka goes with either)")
        if "parquet" in self.kinds and not self.out:
            raise ConfigError("--sink parquet needs --out DIR (the Parquet directory)")
        if "kafka" in self.kinds and not self.topic:
            raise ConfigError("--sink kafka needs --out-topic TOPIC")
        if "kafka" in self.kinds and not self.bootstrap:
            raise ConfigError("--sink kafka needs --bootstrap SERVERS (or $STREAMING_LSTM_BOOTSTRAP)")

    def sinks(self, stream: IO[str] | None = None) -> list[Sink]:
        """The sinks, in the order they write. JSON lines go to ``stream`` if given, else appended
        to ``out`` (a Connect server's own file), else to standard output."""
        import sys

        made: list[Sink] = []
        for kind in self.kinds:
            if kind == "jsonl":
                made.append(JsonLinesSink(stream or (open(self.out, "a") if self.out else sys.stdout)))  # noqa: SIM115 - lives as long as the run
            elif kind == "kafka":
                assert self.bootstrap is not None and self.topic is not None
                made.append(KafkaSink(self.bootstrap, self.topic, self.kafka_options))
            else:
                assert self.out is not None
                made.append(ParquetSink(self.out if "://" in self.out else os.path.abspath(self.out)))
        return made
