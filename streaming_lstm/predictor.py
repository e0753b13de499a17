"""``streaming-lstm predict`` on a stream: score rows with the newest model version as it appears.

Each micro-batch checks the model directory for a newer version (a directory listing) and loads it
before scoring, and once more after: a version written while a batch is being scored has that
batch scored again with it. So a version is in use by the end of the batch running when it is
written, or else by the end of the next batch: the lag is at most the wait for the next trigger
plus one batch. Output: one JSON line per row, ``{"batch_id", "value", "class", "probabilities",
"model_version", "scored_at"}``; a row that cannot be parsed gets ``"error"`` instead of a
prediction, in its place among the rows of its Spark partition (rows keep their order within a
partition; a source may deal them across partitions, as the socket source does round-robin). One
Spark job per micro-batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from streaming_lstm import executor
from streaming_lstm.rows import HEADER
from streaming_lstm.spark_parse import feature_names, observed, parsed_batch
from streaming_lstm.store import ModelStore, SavedModel


class StreamPredictor:
    def __init__(self, spark: SparkSession, model_path: str | Path, out: IO[str] | None = None) -> None:
        self.spark = spark
        self.store = ModelStore.resolve(model_path)
        self.out = out or sys.stdout
        self.saved: SavedModel | None = None
        self.blob: Any = None
        self.rows_scored = 0
        self.rows_rejected = 0
        self.rescored_batches = 0  # batches scored again because a version appeared meanwhile
        self.last_batch_id = -1  # the last micro-batch handled (scored and written out)
        self._refresh()
        if self.saved is None:
            raise FileNotFoundError(f"no model found in {model_path}")

    def _refresh(self) -> bool:
        """Load the newest version if it is newer than the one in use; True if it was."""
        versions = self.store.versions()
        if not versions or (self.saved is not None and versions[-1] <= self.saved.version):
            return False
        saved = self.store.load_latest()
        if saved is None or (self.saved is not None and saved.version <= self.saved.version):
            return False
        if self.blob is not None:
            self.blob.unpersist()
        self.saved = saved
        self.blob = self.spark.sparkContext.broadcast(executor.encode_model(saved.weights, saved.norm))
        return True

    def _scorer(self) -> Any:
        saved = self.saved
        assert saved is not None
        return functools.partial(executor.score_frames, model_blob=self.blob, config_dict=saved.config.to_dict(), threads=0)

    def warm_up(self) -> float:
        """Import TF and trace the prediction function in every Python worker (seconds taken).

        Without it the first micro-batch pays ~4 s of TF import and tracing per worker, and the
        first new model version is picked up that much later.
        """
        started = time.perf_counter()
        saved = self.saved
        assert saved is not None
        n = self.spark.sparkContext.defaultParallelism
        feats = feature_names(saved.config.data)
        rows = self.spark.range(n * 2).select(F.lit("").alias("value"), *[F.lit(0.0).alias(f) for f in feats], F.lit(None).cast("string").alias("reason"))
        self.spark.sparkContext.setJobDescription("streaming-lstm predict: warm up the Python workers")
        rows.repartition(n).mapInPandas(self._scorer(), executor.SCORE_SCHEMA).count()
        return time.perf_counter() - started

    def start(self, source: DataFrame, checkpoint: str | Path, trigger: str = "1 second") -> StreamingQuery:
        """Start the prediction query (parsed in the plan, row counts as observed metrics)."""
        saved = self.saved
        assert saved is not None
        return (
            observed(source, saved.config.data, require_label=False)
            .writeStream.foreachBatch(self.handle)
            .option("checkpointLocation", str(checkpoint))
            .trigger(processingTime=trigger)
            .start()
        )

    def _score(self, parsed: DataFrame, batch_id: int) -> Any:
        saved = self.saved
        assert saved is not None
        self.spark.sparkContext.setJobDescription(f"streaming-lstm predict batch {batch_id}: score (model v{saved.version})")
        # Arrow, not collect(): one round trip, no per-row pickling.
        return parsed.mapInPandas(self._scorer(), executor.SCORE_SCHEMA).toArrow()

    def handle(self, df: DataFrame, batch_id: int) -> None:
        self._refresh()
        saved = self.saved
        assert saved is not None
        parsed = parsed_batch(df, saved.config.data, require_label=False).filter(F.col("reason").isNull() | (F.col("reason") != HEADER))
        parsed = parsed.select("value", *feature_names(saved.config.data), "reason")  # header rows skipped, not scored
        table = self._score(parsed, batch_id)
        # A version written while this batch was scored would otherwise wait for the next trigger:
        # score the batch once more with it, so what goes out is the newest model's (once per
        # batch only, so a trainer faster than the predictor cannot stall it).
        if table.num_rows and self._refresh():
            self.rescored_batches += 1
            table = self._score(parsed, batch_id)
            assert self.saved is not None
            saved = self.saved
        if table.num_rows == 0:
            self.last_batch_id = batch_id
            return
        now = time.time()
        names = saved.config.data.class_labels()
        scored = 0
        lines = []
        for r in table.to_pylist():
            if r["error"] is None:
                scored += 1
                record = {
                    "batch_id": batch_id,
                    "value": r["value"],
                    "class": names[r["predicted"]],
                    "probabilities": [round(p, 6) for p in r["probabilities"]],
                    "model_version": saved.version,
                    "scored_at": now,
                }
            else:
                record = {"batch_id": batch_id, "value": r["value"], "error": r["error"], "model_version": saved.version, "scored_at": now}
            lines.append(json.dumps(record))
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.rows_scored += scored
        self.rows_rejected += table.num_rows - scored
        self.last_batch_id = batch_id


def run_cli(args: argparse.Namespace, out: IO[str], trigger_ms: int) -> None:
    """``streaming-lstm predict --source ...``: score until idle, a signal, or a failed query."""
    from streaming_lstm import runner
    from streaming_lstm.sources import SourceSpec, open_source
    from streaming_lstm.spark_session import get_session

    cfg = ModelStore.load_latest_or_raise(args.model).config
    if getattr(args, "kafka_reader", None):
        cfg = dataclasses.replace(cfg, stream=dataclasses.replace(cfg.stream, kafka_reader=args.kafka_reader))
    spark = get_session(cfg.spark)
    source = open_source(spark, cfg, SourceSpec.from_args(args))
    predictor = StreamPredictor(spark, args.model, out)
    print(f"streaming-lstm: Python workers ready in {predictor.warm_up():.1f} s", file=sys.stderr, flush=True)
    query = predictor.start(source, args.checkpoint, f"{trigger_ms} milliseconds")
    event = threading.Event()
    runner.install_signal_handlers(event)
    started = time.monotonic()
    seen = {"rows": 0, "at": started}

    def tick() -> str | None:
        rows = predictor.rows_scored + predictor.rows_rejected
        if rows != seen["rows"]:
            seen.update(rows=rows, at=time.monotonic())
        if event.is_set():
            return "signal"
        if args.idle_timeout is not None and time.monotonic() - seen["at"] > args.idle_timeout:
            return "idle"
        return None

    runner.wait(query, tick)
    runner.stop_after_commit(query, predictor.last_batch_id)
    error = query.exception()
    spark.stop()
    if error is not None:
        raise RuntimeError(f"the prediction query failed: {runner.query_error(error)}")
    print(
        f'streaming-lstm: scored {predictor.rows_scored} rows, {predictor.rows_rejected} rejected (an "error" line each), '
        f"in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
