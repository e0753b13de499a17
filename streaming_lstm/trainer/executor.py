"""What runs inside a Spark Python worker: the ``mapInPandas`` bodies of training (one task trains
one or more partition keys), warm-up and scoring, and the result rows of training (:func:`key_rows`)
that the plan built once (planned.py) sends through its ``mapInArrow``.

This is an importable module on purpose: the compiled model is cached in training.py's module-level
dict, which survives between tasks because Spark reuses Python workers. The function handed to
``mapInPandas`` is a ``functools.partial`` of :func:`train_frames`, so cloudpickle sends a reference
to this module, not a copy of the cache.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from streaming_lstm.core import faults, results, schedule
from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.config_load import from_dict
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal, tail
from streaming_lstm.core.seeds import task_seed
from streaming_lstm.core.weights import LSTMConfig, arrays_from_bytes, flatten, weights_to_bytes
from streaming_lstm.storage.store import pack_model, unpack_model
from streaming_lstm.trainer.routing import ROUTE
from streaming_lstm.trainer.state import TrainerState, check_update

_CONFIG_CACHE: dict[str, AppConfig] = {}
TRAINING_MODULE = "streaming_lstm.core.training"


def _training() -> ModuleType:
    """training.py, imported here in the Python worker: it imports TensorFlow at its top, and the
    driver, which only references these functions, must not pay for that.

    The first import in a process freezes what exists (``gc.freeze``): Spark's daemon runs a full
    ``gc.collect()`` after every task of a reused worker, ~0.15 s over TensorFlow's objects that
    the worker's next task would wait for (spark/daemon.py freezes them before the fork where it
    can; this covers Spark's own daemon on a cluster)."""
    first = TRAINING_MODULE not in sys.modules
    from streaming_lstm.core import training

    if first:
        gc.collect()
        gc.freeze()
    return training


def task_config(config_dict: dict[str, Any]) -> AppConfig:
    """The config a task was sent, validated once per Python worker rather than once per task."""
    cache_key = repr(sorted(config_dict.items()))
    cfg = _CONFIG_CACHE.get(cache_key)
    if cfg is None:
        cfg = _CONFIG_CACHE[cache_key] = from_dict(config_dict)
    return cfg


class TaskModel(NamedTuple):
    """What a task starts from: the model's weights and normaliser, the rehearsal buffer
    (rehearsal.py) and the forecast gain's sums (gain.py), each None where the model has none."""

    weights: dict[str, np.ndarray]
    norm: NormStats
    rehearsal: Rehearsal | None = None
    gain: ForecastGain | None = None

    def served_gain(self) -> np.ndarray | None:
        return self.gain.value() if self.gain is not None else None


def start_model(state: TrainerState) -> TaskModel:
    """What a batch's tasks start from, given the state before the batch."""
    rehearsal = state.rehearsal if len(state.rehearsal) else None
    return TaskModel(state.training_weights(), state.norm, rehearsal, state.gain)


def encode_model(weights: dict[str, np.ndarray], norm: NormStats, rehearsal: Rehearsal | None = None, gain: ForecastGain | None = None) -> bytes:
    """A :class:`TaskModel` as one ``.npz`` blob (what the broadcast carries)."""
    return weights_to_bytes(pack_model(weights, norm, extra=gain.to_arrays() if gain is not None else None, rehearsal=rehearsal))


def decode_model(blob: bytes, lstm: LSTMConfig) -> TaskModel:
    arrays = arrays_from_bytes(blob)
    weights, _, norm = unpack_model(arrays, lstm)
    return TaskModel(weights, norm, Rehearsal.from_arrays(arrays), ForecastGain.from_arrays(arrays))


def maybe_fail(batch_id: int) -> None:
    """The ``worker`` fault point: die in a task's first attempt only, so Spark's retry succeeds."""
    if not os.environ.get(faults.ENV):
        return  # the normal case: no fault configured, nothing more to look up
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0:
        faults.hit("worker", batch_id)


def split_model_row(parts: list[pd.DataFrame], model_blob: Any = None) -> tuple[bytes | None, pd.DataFrame]:
    """A task's model and data rows: the broadcast ``model_blob`` (classic mode), or else the task's
    one model row (``_model`` set, trainer/routing.py; under Spark Connect); ``None`` if it has none."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if model_blob is not None:
        return model_blob.value if hasattr(model_blob, "value") else model_blob, frame
    if frame.empty or "_model" not in frame.columns:
        return None, frame
    is_model = frame["_model"].notna().to_numpy()
    blobs = frame.loc[is_model, "_model"]
    if len(blobs) != 1:
        raise RuntimeError(f"a task received {len(blobs)} model rows; expected exactly 1 (routing.model_rows)")
    return bytes(blobs.iloc[0]), frame.loc[~is_model].reset_index(drop=True)


class Folder:
    """Mean aggregation: this task's keys folded into one row-weighted sum (results.Fold), each
    key's update checked here against ``stream.max_update_norm`` first."""

    def __init__(self, cfg: AppConfig, weights: dict[str, np.ndarray]) -> None:
        self.limit = cfg.stream.max_update_norm
        self.start = flatten(weights) if self.limit > 0 else None
        self.total: np.ndarray | None = None
        self.rows = self.keys = 0

    def add(self, result: Any) -> Any:
        """Fold ``result`` in; the result without its weights (or with its refusal) is returned."""
        why = check_update(result.key, result.rows, result.weights, self.start, self.limit)
        if why is None:
            contribution = flatten(result.weights) * result.rows
            self.total = contribution if self.total is None else self.total + contribution
            self.rows, self.keys = self.rows + result.rows, self.keys + 1
        return dataclasses.replace(result, weights={}, rejected=why)

    def row(self, first_key: int) -> dict[str, Any] | None:
        return None if self.total is None else results.Fold(first_key, self.rows, self.keys, self.total).to_row(os.getpid())


def _one_row(row: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({name: [value] for name, value in row.items()})


def train_frames(
    frames: Iterator[pd.DataFrame], *, config_dict: dict[str, Any], batch_id: int, threads: int, epochs: int, model_blob: Any = None
) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` body: rows ``key, _idx, f0.., label`` in, one result row per key out.
    The global weights come as ``model_blob`` (a broadcast), or else as the one row with ``_model``
    set (Spark Connect; connect.ship_model). ``epochs`` is this batch's local epoch count
    (schedule.py), decided by the driver.
    """
    import time

    entered = time.perf_counter()
    cfg = task_config(config_dict)
    parts = list(frames) if frames is not None else []
    if not parts:
        return  # a batch with fewer rows than keys leaves a task's partition empty
    blob, frame = split_model_row(parts, model_blob)
    maybe_fail(batch_id)
    if frame.empty:
        return  # ... or only its model row
    assert blob is not None
    model = decode_model(blob, LSTMConfig.from_app(cfg))
    yield from train_keys(cfg, frame, model, batch_id=batch_id, epochs=epochs, threads=threads, entered=entered)


def train_keys(cfg: AppConfig, frame: pd.DataFrame, model: TaskModel, *, batch_id: int, epochs: int, threads: int, entered: float) -> Iterator[pd.DataFrame]:
    """:func:`key_rows` as one-row frames (``mapInPandas``)."""
    for row in key_rows(cfg, frame, model, batch_id=batch_id, epochs=epochs, threads=threads, entered=entered):
        yield _one_row(row)


def key_rows(cfg: AppConfig, frame: pd.DataFrame, model: TaskModel, *, batch_id: int, epochs: int, threads: int, entered: float) -> Iterator[dict[str, Any]]:
    """Train each key of ``frame`` (rows ``key, _idx, f0.., label``) from ``model``: one result
    row (of results.RESULT_SCHEMA) per key, then (mean aggregation) the task's fold.

    Rows are sorted by their global index ``_idx`` first: the shuffle delivers blocks in no fixed
    order, and a replayed batch must train on the rows in the same order to reproduce its weights.
    """
    import time

    training = _training()
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    folder = Folder(cfg, model.weights) if cfg.stream.aggregation == "mean" else None
    keys = sorted(int(k) for k in frame["key"].unique())
    for key in keys:
        part = frame[frame["key"] == key].sort_values("_idx", kind="stable")
        result = train_key(training, spec, cfg, key, part, model, batch_id=batch_id, epochs=epochs, threads=threads)
        if folder is not None:
            result = folder.add(result)
        yield dataclasses.replace(result, seconds=time.perf_counter() - entered, worker_pid=os.getpid()).to_row()
    fold = folder.row(keys[0]) if folder is not None else None
    if fold is not None:
        yield fold


def group_rows(cfg: AppConfig, frame: pd.DataFrame, model: TaskModel, *, batch_id: int, epochs: int, threads: int, entered: float) -> Iterator[dict[str, Any]]:
    """:func:`key_rows` for each task group of ``frame`` (rows with the same route go to one task,
    routing.to_tasks): a training task's one group in this thread; the driver's whole batch
    (``stream.train_in``) one thread per group, side by side as the tasks run, each with its own
    copy of the compiled model (compiled.model_slot). Each group folds its keys as its task would."""
    groups = [part for _, part in frame.groupby(ROUTE, sort=True)] if ROUTE in frame.columns else [frame]
    if len(groups) == 1:
        yield from key_rows(cfg, frame, model, batch_id=batch_id, epochs=epochs, threads=threads, entered=entered)
        return
    _training()
    from streaming_lstm.core.compiled import model_slot as slot

    def run(i: int) -> list[dict[str, Any]]:
        with slot(i):
            return list(key_rows(cfg, groups[i], model, batch_id=batch_id, epochs=epochs, threads=threads, entered=entered))

    with ThreadPoolExecutor(len(groups), thread_name_prefix="streaming-lstm-group") as pool:
        for rows in pool.map(run, range(len(groups))):
            yield from rows


def train_key(
    training: ModuleType,
    spec: Any,
    cfg: AppConfig,
    key: int,
    part: pd.DataFrame,
    start: TaskModel,
    *,
    batch_id: int,
    epochs: int,
    threads: int,
) -> Any:
    """One key's rows trained from the batch's starting model (training.train_partition, on its
    share of the rehearsal buffer, forecasts scored with its gain); the result carries the key's
    newest rows for the next buffer (rehearsal.py)."""
    weights, norm, rehearsal, _ = start
    x = part[cfg.input_columns()].to_numpy(np.float64)
    targets = cfg.data.target_columns()  # forecast: raw targets and naive forecasts, (N, C) each
    y = part[targets].to_numpy(np.float64) if targets else part["label"].to_numpy(np.int32)
    naive = part[cfg.data.naive_columns()].to_numpy(np.float64) if targets else None
    seed = task_seed(cfg.model.seed, batch_id, key)
    limit, partitions = cfg.train.rehearsal_rows, cfg.stream.partitions
    replay = rehearsal.share(key, partitions) if rehearsal is not None and limit > 0 else None
    options = {"naive": naive, "replay": replay, "gain": start.served_gain(), "threads": threads, "score_steps": cfg.scores_in_steps()}
    # A forecast trains in full mini-batches: the warm-up mini-batch made WaterFlow's one-step MAE
    # worse than the last value's (bench forecast; docs/learning.md, "The first rows"). The
    # warm-up sizes run in the full size's trace, which warm_frames has built before the stream.
    batch_size = cfg.train.batch_size if targets else schedule.mini_batch(cfg.train, int(norm.count), len(x))
    options["trace_size"] = cfg.train.batch_size
    result = training.train_partition(key, weights, norm, x, y, spec, epochs=epochs, batch_size=batch_size, seed=seed, **options)
    return dataclasses.replace(result, recent=tail(x, y, limit, partitions)) if limit > 0 else result


WARM_SCHEMA = "worker_pid int, seconds double"


def warm_frames(frames: Iterator[pd.DataFrame], *, config_dict: dict[str, Any], threads: int) -> Iterator[pd.DataFrame]:
    """Import TF and trace, in this Python worker before the stream starts, what a partition of
    ``train.batch_size`` rows or more runs (training.padded_size; smaller partitions trace their
    power of two on first use): the training loop that scores in its steps (a classifier under
    step scoring), or the plain loop and the forward pass that scores before training."""
    training = _training()
    import time

    started = time.perf_counter()
    for _ in frames:
        pass
    cfg = task_config(config_dict)
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    from streaming_lstm.core.weights import init_weights

    rows, n = cfg.train.batch_size, spec.model.num_features
    x, w = np.zeros((rows, n), np.float32), init_weights(spec.model)
    y = np.zeros((rows, spec.model.num_classes), np.float32) if spec.model.forecast else np.zeros(rows, np.int32)
    options = {"epochs": 1, "batch_size": rows, "seed": 0, "threads": threads}
    if cfg.scores_in_steps():
        training.fit_scored(w, x, y, spec, new_rows=rows, **options)
    else:
        training.fit(w, x, y, spec, **options)
        if spec.model.forecast:
            training.outputs(w, x, spec, threads)  # what scoring a forecast traces
        else:
            training.score(w, x, y, spec, threads)
    yield pd.DataFrame({"worker_pid": [os.getpid()], "seconds": [time.perf_counter() - started]})


SCORE_SCHEMA = "value string, outputs array<double>, predicted int, error string, _pos long, entity string, end_time double, label double, _id string"


def score_frames(frames: Iterator[pd.DataFrame], *, config_dict: dict[str, Any], threads: int, model_blob: Any = None) -> Iterator[pd.DataFrame]:
    """The prediction ``mapInPandas`` body: parsed rows ``value, f0.., reason, _pos`` (row mode also
    ``label``, the class id a row carries; event mode: windows, with ``entity`` and ``end_time``) in,
    one row out per input row, with its ``_pos`` (and ``_id``, passed through when given).
    The model is the broadcast ``model_blob``, or else the one row with ``_model`` set (Spark
    Connect; connect.ship_model).

    A valid row (``reason`` NULL) gets its ``outputs``: class probabilities and the ``predicted``
    class id, or (forecast) the forecasts in the targets' units and ``predicted`` -1; a rejected
    one passes through with ``error`` = its reason, so one Spark job handles both.
    """
    blob, frame = split_model_row(list(frames), model_blob)
    if frame.empty:
        return
    if blob is None:
        raise RuntimeError("a scoring task received rows but no model row")
    training = _training()
    cfg = task_config(config_dict)
    spec = training.TrainSpec.from_app(cfg)
    model = decode_model(blob, spec.model)
    weights, norm = model.weights, model.norm
    ok = frame["reason"].isna().to_numpy()
    x = frame.loc[ok, cfg.input_columns()].to_numpy(np.float64)
    if spec.model.forecast:
        outputs = training.forecast(weights, norm, x, spec, threads, model.served_gain())
    else:
        outputs = training.predict(weights, norm.transform(x), spec, threads).astype(np.float64)
    column: list[Any] = [None] * len(frame)
    predicted = np.full(len(frame), -1, np.int32)
    for j, row in zip(np.flatnonzero(ok), outputs, strict=True):
        column[j] = row
    if not spec.model.forecast:
        predicted[ok] = outputs.argmax(axis=1)
    none = pd.Series([None] * len(frame), dtype=object)
    yield pd.DataFrame(
        {
            "value": frame["value"],
            "outputs": column,
            "predicted": predicted,
            "error": frame["reason"],
            "_pos": frame["_pos"],
            "entity": frame["entity"] if "entity" in frame.columns else none,
            "end_time": frame["end_time"] if "end_time" in frame.columns else none.astype("float64"),
            "label": frame["label"].astype("float64") if "label" in frame.columns else none.astype("float64"),  # NaN: no known label
            "_id": frame["_id"] if "_id" in frame.columns else none,  # the row's source identity (prediction_sinks.py)
        }
    )
