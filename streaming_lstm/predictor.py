"""``streaming-lstm predict`` on a stream: score rows with the newest model version as it appears.

Each micro-batch checks the model directory for a newer version (a directory listing) and loads it
before scoring, so a version the trainer writes is used from the next batch on. Output: one JSON
line per row, ``{"batch_id", "value", "class", "probabilities", "model_version", "scored_at"}``;
a row that cannot be parsed gets ``"error"`` instead of a prediction.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming_lstm import worker
from streaming_lstm.spark_parse import feature_names, parse
from streaming_lstm.standalone import class_names
from streaming_lstm.store import ModelStore, SavedModel


class StreamPredictor:
    def __init__(self, spark: SparkSession, model_path: str | Path, out: IO[str] | None = None) -> None:
        self.spark = spark
        self.store = ModelStore.resolve(model_path)
        self.out = out or sys.stdout
        self.saved: SavedModel | None = None
        self.blob: Any = None
        self.rows_scored = 0
        self.first_use: dict[int, float] = {}  # model version -> when it first scored a row
        self._refresh()
        if self.saved is None:
            raise FileNotFoundError(f"no model found in {model_path}")

    def _refresh(self) -> None:
        versions = self.store.versions()
        if not versions or (self.saved is not None and versions[-1] <= self.saved.version):
            return
        saved = self.store.load_latest()
        if saved is None or (self.saved is not None and saved.version <= self.saved.version):
            return
        if self.blob is not None:
            self.blob.unpersist()
        self.saved = saved
        self.blob = self.spark.sparkContext.broadcast(worker.encode_model(saved.weights, saved.norm))

    def handle(self, df: DataFrame, batch_id: int) -> None:
        self._refresh()
        saved = self.saved
        assert saved is not None
        # Cached: the scoring job and the rejects share one read and parse of the micro-batch.
        parsed = parse(df, saved.config.data, require_label=False).persist()
        try:
            fn = functools.partial(worker.score_frames, model_blob=self.blob, config_json=saved.config.to_dict(), threads=0)
            good = parsed.filter(F.col("reason").isNull()).select("value", *feature_names(saved.config.data))
            scored = good.mapInPandas(fn, worker.SCORE_SCHEMA).collect()
            bad = parsed.filter(F.col("reason").isNotNull()).select("value", "reason").collect()
        finally:
            parsed.unpersist()
        now = time.time()
        names = class_names(saved.config)
        for r in scored:
            record = {
                "batch_id": batch_id,
                "value": r["value"],
                "class": names[r["predicted"]],
                "probabilities": [round(p, 6) for p in r["probabilities"]],
                "model_version": saved.version,
                "scored_at": now,
            }
            self.out.write(json.dumps(record) + "\n")
        for r in bad:
            self.out.write(
                json.dumps({"batch_id": batch_id, "value": r["value"], "error": r["reason"], "model_version": saved.version, "scored_at": now}) + "\n"
            )
        self.out.flush()
        if scored:
            self.first_use.setdefault(saved.version, now)
        self.rows_scored += len(scored)
