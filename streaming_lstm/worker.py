"""What runs inside a Spark Python worker: one ``mapInPandas`` training task per partition key.

This is an importable module on purpose: the compiled model is cached in train.py's module-level
dict, which survives between tasks because Spark reuses Python workers. The function handed to
``mapInPandas`` is a ``functools.partial`` of :func:`train_frames`, so cloudpickle sends a reference
to this module, not a copy of the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from streaming_lstm import faults, train
from streaming_lstm.config import AppConfig, from_dict
from streaming_lstm.normalizer import NormStats
from streaming_lstm.store import pack_model, unpack_model
from streaming_lstm.weights import LSTMConfig, arrays_from_bytes, weights_to_bytes

RESULT_SCHEMA = "key int, rows long, correct long, loss_sum double, train_loss double, weights binary, norm binary, seconds double, worker_pid int"

_CONFIG_CACHE: dict[str, AppConfig] = {}


def _config(config_json: dict[str, Any]) -> AppConfig:
    """The config a task was sent, validated once per Python worker rather than once per task."""
    cache_key = repr(sorted(config_json.items()))
    cfg = _CONFIG_CACHE.get(cache_key)
    if cfg is None:
        cfg = _CONFIG_CACHE[cache_key] = from_dict(config_json)
    return cfg


def encode_model(weights: dict[str, np.ndarray], norm: NormStats) -> bytes:
    """Weights and normaliser statistics as one ``.npz`` blob (what the broadcast carries)."""
    return weights_to_bytes(pack_model(weights, norm))


def decode_model(blob: bytes, lstm: LSTMConfig) -> tuple[dict[str, np.ndarray], NormStats]:
    weights, _, norm = unpack_model(arrays_from_bytes(blob), lstm)
    return weights, norm


def _maybe_fail(batch_id: int) -> None:
    """The ``worker`` fault point: die in a task's first attempt only, so Spark's retry succeeds."""
    if not os.environ.get(faults.ENV):
        return  # the normal case: no fault configured, nothing more to look up
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0:
        faults.hit("worker", batch_id)


def train_frames(frames: Iterator[pd.DataFrame], *, model_blob: Any, config_json: dict[str, Any], batch_id: int, threads: int) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` body: rows ``key, _idx, f0.., label`` in, one result row per key out.

    Rows are sorted by their global index ``_idx`` first: the shuffle delivers blocks in no fixed
    order, and a replayed batch must train on the rows in the same order to reproduce its weights.
    """
    import time

    entered = time.perf_counter()
    cfg = _config(config_json)
    spec = train.TrainSpec.from_app(cfg, streaming=True)
    blob = model_blob.value if hasattr(model_blob, "value") else model_blob
    weights, norm = decode_model(blob, spec.model)
    frame = pd.concat(list(frames), ignore_index=True) if frames is not None else pd.DataFrame()
    _maybe_fail(batch_id)
    if frame.empty:
        return
    feats = [f"f{i}" for i in range(spec.model.num_features)]
    for key in sorted(int(k) for k in frame["key"].unique()):
        part = frame[frame["key"] == key].sort_values("_idx", kind="stable")
        x = part[feats].to_numpy(np.float64)
        y = part["label"].to_numpy(np.int32)
        result = train.train_partition(
            key,
            weights,
            norm,
            x,
            y,
            spec,
            epochs=cfg.train.local_epochs,
            batch_size=cfg.train.batch_size,
            seed=train.task_seed(cfg.model.seed, batch_id, key),
            threads=threads,
        )
        yield pd.DataFrame(
            {
                "key": [result.key],
                "rows": [result.rows],
                "correct": [result.prequential.correct],
                "loss_sum": [result.prequential.loss_sum],
                "train_loss": [result.train_loss],
                "weights": [weights_to_bytes(result.weights)],
                "norm": [weights_to_bytes(result.norm.to_arrays())],
                "seconds": [time.perf_counter() - entered],
                "worker_pid": [os.getpid()],
            }
        )


WARM_SCHEMA = "worker_pid int, seconds double"


def warm_frames(frames: Iterator[pd.DataFrame], *, config_json: dict[str, Any], threads: int) -> Iterator[pd.DataFrame]:
    """Import TF and trace the compiled model in this Python worker before the stream starts."""
    import time

    started = time.perf_counter()
    for _ in frames:
        pass
    cfg = _config(config_json)
    spec = train.TrainSpec.from_app(cfg, streaming=True)
    n = spec.model.num_features
    from streaming_lstm.weights import init_weights

    train.fit(init_weights(spec.model), np.zeros((2, n), np.float32), np.zeros(2, np.int32), spec, epochs=1, batch_size=2, seed=0, threads=threads)
    train.score(init_weights(spec.model), np.zeros((2, n), np.float32), np.zeros(2, np.int32), spec, threads)
    yield pd.DataFrame({"worker_pid": [os.getpid()], "seconds": [time.perf_counter() - started]})


SCORE_SCHEMA = "value string, probabilities array<double>, predicted int, error string"


def score_frames(frames: Iterator[pd.DataFrame], *, model_blob: Any, config_json: dict[str, Any], threads: int) -> Iterator[pd.DataFrame]:
    """The prediction ``mapInPandas`` body: parsed rows ``value, f0.., reason`` in, in their order.

    A valid row (``reason`` NULL) gets its class probabilities and ``predicted`` class id; a
    rejected one passes through with ``error`` = its reason, so one Spark job handles both.
    """
    cfg = _config(config_json)
    spec = train.TrainSpec.from_app(cfg)
    blob = model_blob.value if hasattr(model_blob, "value") else model_blob
    weights, norm = decode_model(blob, spec.model)
    feats = [f"f{i}" for i in range(spec.model.num_features)]
    for frame in frames:
        if frame.empty:
            continue
        ok = frame["reason"].isna().to_numpy()
        probs = train.predict(weights, norm.transform(frame.loc[ok, feats].to_numpy(np.float64)), spec, threads).astype(np.float64)
        column: list[Any] = [None] * len(frame)
        predicted = np.full(len(frame), -1, np.int32)
        for j, row in zip(np.flatnonzero(ok), probs, strict=True):
            column[j] = row
        predicted[ok] = probs.argmax(axis=1)
        yield pd.DataFrame({"value": frame["value"], "probabilities": column, "predicted": predicted, "error": frame["reason"]})
