"""Training as a pure function of (weights, rows, config): it never touches Spark.

TensorFlow is imported with this module, once: the Spark driver never imports it (it
needs only :mod:`~streaming_lstm.core.seeds` and :mod:`~streaming_lstm.core.results`), the Python workers
and the one-process commands do.

The standalone ``fit`` and every streaming partition task call the functions here; they run the
process's compiled model for their :class:`~streaming_lstm.core.compiled.TrainSpec`
(:mod:`~streaming_lstm.core.compiled`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from streaming_lstm.core.change import forecast_base, forecast_columns, served, window_inputs
from streaming_lstm.core.compiled import TrainSpec, compiled, env_threads
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal
from streaming_lstm.core.results import PartitionResult, Score
from streaming_lstm.core.threads import intra_op_threads
from streaming_lstm.core.weights import Weights, check_weights

SCORE_CHUNK = 8192  # rows per predict call: bounds memory on large batches


def padded_size(rows: int, batch_size: int) -> int:
    """The static mini-batch size that ``fit`` traces for ``rows`` rows: ``batch_size``, or, for
    fewer rows, the next power of two (at most log2(batch_size) + 1 traces per process, and a
    small partition pads to less than twice its rows)."""
    if rows >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(0, rows - 1).bit_length())


def mini_batches(rows: int, epochs: int, batch_size: int, rng: np.random.Generator, first: int = 0, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``order`` (S, b) and ``mask`` (S, b): each epoch a fresh permutation of the rows cut into
    mini-batches of ``batch_size``; an epoch's last short mini-batch is padded with row 0 at mask 0.
    ``b`` is :func:`padded_size`, or ``width`` when that is larger: each mini-batch of
    ``batch_size`` rows then fills the first columns and masked padding the rest, the same steps
    in a wider traced shape. With ``first`` > 0 the first epoch meets rows ``[0, first)`` (in a
    permutation of their own) before the others."""
    b = max(width, padded_size(rows, batch_size))
    per_epoch = -(-rows // batch_size)  # mini-batches per epoch
    order = np.zeros((epochs, per_epoch * batch_size), np.int32)
    mask = np.zeros((epochs, per_epoch * batch_size), np.float32)
    for e in range(epochs):
        if e == 0 and 0 < first < rows:
            order[e, :rows] = np.concatenate([rng.permutation(first), first + rng.permutation(rows - first)])
        else:
            order[e, :rows] = rng.permutation(rows)
        mask[e, :rows] = 1.0
    order, mask = order.reshape(-1, batch_size), mask.reshape(-1, batch_size)
    if b <= batch_size:  # rows fewer than batch_size: one mini-batch, cut to b >= rows
        return order[:, :b], mask[:, :b]
    pad = ((0, 0), (0, b - batch_size))
    return np.pad(order, pad), np.pad(mask, pad)


def fit(
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainSpec,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int = 0,
    trace_size: int = 0,
) -> tuple[Weights, float]:
    """Train from ``weights`` on normalised rows ``x`` (N, F) and labels ``y`` (N,).

    Mini-batches of ``batch_size`` in a fresh seeded order each epoch, a fresh optimiser state.
    Returns the new weights and the mean training loss of the last epoch. Pure: the inputs are
    not modified and the result depends only on the arguments. ``threads`` 0 picks the intra-op
    threads for this model and mini-batch (:func:`~streaming_lstm.core.threads.intra_op_threads`)
    if this process has not set them yet.

    ``trace_size`` (>= ``batch_size``; 0: ``batch_size``) is the mini-batch size the traced loop
    is built for: smaller mini-batches are padded to it with masked rows, which carry no loss and
    no gradient, so a schedule of sizes (``schedule.mini_batch``) shares one trace per process
    instead of tracing each size (~0.7 s each for a small model) at the price of the padding's
    arithmetic.
    """
    new_weights, last, _ = _run_fit(weights, x, y, spec, epochs, batch_size, seed, threads, scored_rows=None, trace_size=trace_size)
    return new_weights, last


def fit_scored(
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainSpec,
    *,
    new_rows: int,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int = 0,
    trace_size: int = 0,
) -> tuple[Weights, float, Score]:
    """:func:`fit` (classification, ``epochs`` >= 1) that also scores rows ``x[:new_rows]`` as the
    first epoch met them: each row by the weights of the step that learned it, before that step
    (every row is predicted before any step learns it, as in River's row-by-row test-then-train,
    a mini-batch at a time). The score costs no forward pass of its own."""
    assert epochs > 0 and not spec.model.forecast, "scoring in the training pass needs classification and an epoch"
    new_weights, last, score_ = _run_fit(weights, x, y, spec, epochs, batch_size, seed, threads, scored_rows=new_rows, trace_size=trace_size)
    assert score_ is not None
    return new_weights, last, score_


def _run_fit(
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainSpec,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int,
    *,
    scored_rows: int | None,
    trace_size: int = 0,
) -> tuple[Weights, float, Score | None]:
    traced = max(trace_size, batch_size)
    model = compiled(spec, threads or env_threads() or intra_op_threads(spec.model, traced))
    model.net.assign(check_weights(weights, spec.model))
    model.reset_optimizer()
    n = len(x)
    if epochs <= 0 or n == 0:
        return model.net.get(), float("nan"), (None if scored_rows is None else Score(0, 0, 0.0))
    y_dtype = np.float32 if spec.model.forecast else np.int32
    width = padded_size(n, traced)
    order, mask = mini_batches(n, epochs, batch_size, np.random.default_rng(seed), first=scored_rows or 0, width=width)  # (S, b) each
    args = (np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, y_dtype), order, mask)
    per_epoch = len(order) // epochs
    score_ = None
    if scored_rows is not None:
        losses_t, right, entropy = model.train_steps(order.shape[1], scored=True)(*args)
        first = order[:per_epoch], mask[:per_epoch] > 0  # the first epoch meets every row once
        new = first[0][first[1]] < scored_rows  # the new rows, not the rehearsal's
        right_new, entropy_new = right.numpy()[:per_epoch][first[1]][new], entropy.numpy()[:per_epoch][first[1]][new]
        score_ = Score(int(new.sum()), int(right_new.sum()), float(entropy_new.astype(np.float64).sum()))
        losses = losses_t.numpy()
    else:
        losses = model.train_steps(order.shape[1])(*args).numpy()
    sizes = mask[-per_epoch:].sum(axis=1)  # the last epoch's mini-batch sizes
    last = float(np.dot(losses[-per_epoch:].astype(np.float64), sizes) / n)  # the last epoch's mean
    return model.net.get(), last, score_


def score(weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, spec: TrainSpec, threads: int = 0) -> Score:
    """Correct predictions and summed cross-entropy of ``weights`` on normalised rows."""
    model = compiled(spec, threads)
    model.net.assign(check_weights(weights, spec.model))
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), SCORE_CHUNK):
        c, s = model.score_step(np.asarray(x[start : start + SCORE_CHUNK], np.float32), np.asarray(y[start : start + SCORE_CHUNK], np.int32))
        correct += int(c)
        loss_sum += float(s)
    return Score(len(x), correct, loss_sum)


def predict(weights: Mapping[str, np.ndarray], x: np.ndarray, spec: TrainSpec, threads: int = 0) -> np.ndarray:
    """Class probabilities (N, C) for normalised rows."""
    model = compiled(spec, threads)
    model.net.assign(check_weights(weights, spec.model))
    parts = [model.predict_step(np.asarray(x[s : s + SCORE_CHUNK], np.float32)).numpy() for s in range(0, len(x), SCORE_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, spec.model.num_classes), np.float32)


def outputs(weights: Mapping[str, np.ndarray], x: np.ndarray, spec: TrainSpec, threads: int = 0) -> np.ndarray:
    """The head's raw outputs (N, C) for normalised rows (forecasts in normalised target units)."""
    model = compiled(spec, threads)
    model.net.assign(check_weights(weights, spec.model))
    parts = [model.outputs_step(np.asarray(x[s : s + SCORE_CHUNK], np.float32)).numpy() for s in range(0, len(x), SCORE_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, spec.model.num_classes), np.float32)


def network_forecast(weights: Mapping[str, np.ndarray], norm: NormStats, x_raw: np.ndarray, spec: TrainSpec, threads: int = 0) -> np.ndarray:
    """The network's forecasts (N, C) in the targets' own units for raw windows ``x_raw`` (N, T*F):
    the changes from the window's last values with ``data.forecast_change``, else the targets.
    ``norm`` holds the inputs' statistics, then the learned targets' (LSTMConfig.num_stats)."""
    nf = spec.model.num_features
    shift, div = norm.scale()
    xn = ((window_inputs(spec, x_raw) - shift[:nf]) / div[:nf]).astype(np.float32)
    return outputs(weights, xn, spec, threads).astype(np.float64) * div[nf:] + shift[nf:]


def forecast(
    weights: Mapping[str, np.ndarray], norm: NormStats, x_raw: np.ndarray, spec: TrainSpec, threads: int = 0, gain: np.ndarray | None = None
) -> np.ndarray:
    """Forecasts (N, C) in the targets' own units, served with ``gain`` (change.served)."""
    return served(spec, x_raw, network_forecast(weights, norm, x_raw, spec, threads), gain)


def score_forecast(
    weights: Mapping[str, np.ndarray],
    norm: NormStats,
    x_raw: np.ndarray,
    y: np.ndarray,
    naive: np.ndarray,
    spec: TrainSpec,
    threads: int = 0,
    gain: np.ndarray | None = None,
) -> tuple[Score, ForecastGain | None]:
    """Prequential forecast figures: errors in the targets' units, the naive forecast's, and the
    squared error in normalised units (what the training loss measures); with
    ``data.forecast_change`` also the windows' sums for the gain (gain.py)."""
    y = np.asarray(y, np.float64)
    change = network_forecast(weights, norm, x_raw, spec, threads)  # (N, C): the changes with forecast_change
    err = served(spec, x_raw, change, gain) - y
    err_n = err / norm.scale()[1][spec.model.num_features :]  # (N, C) in normalised units
    loss_sum = float((err_n**2).mean(axis=1).sum()) if len(y) else 0.0
    score = Score(len(y), 0, loss_sum, float(np.abs(err).sum()), float((err**2).sum()), float(np.abs(np.asarray(naive, np.float64) - y).sum()))
    return score, (ForecastGain.of(change, y - forecast_base(spec, x_raw)) if spec.change_from else None)


def train_partition(
    key: int,
    weights: Mapping[str, np.ndarray],
    norm: NormStats,
    x_raw: np.ndarray,
    y: np.ndarray,
    spec: TrainSpec,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int = 0,
    naive: np.ndarray | None = None,
    replay: Rehearsal | None = None,
    gain: np.ndarray | None = None,
    score_steps: bool = False,
    trace_size: int = 0,
) -> PartitionResult:
    """One streaming partition: test, then train (prequential, as in River).

    1. Score every row with the incoming global weights and normaliser (the prequential figures;
       forecasts also against ``naive``, the last-value forecast of each target, (N, C), served
       with the incoming ``gain``, and the rows' sums for the next gain, gain.py). With
       ``score_steps`` (classification, ``train.prequential = "step"``) the first local epoch
       scores instead: each row by the weights of the step that learns it, before that step, on
       the merged normaliser (:func:`fit_scored`).
    2. Merge this partition's statistics (features, and forecast targets) into the global ones and
       normalise with that.
    3. Train ``epochs`` local epochs from the global weights, on the new rows and the ``replay``
       rows (this key's share of the rehearsal buffer, rehearsal.py; raw, like ``x_raw``) (:func:`fit`).

    The result carries this partition's own statistics; the driver merges all partitions' into the
    global normaliser, so no row is counted twice. ``y`` is (N,) class ids or (N, C) raw targets
    (learned as changes from the window's last values with ``data.forecast_change``).
    """
    started = time.perf_counter()
    if spec.model.forecast:
        assert naive is not None, "a forecast partition needs the naive forecasts"
        prequential, sums = score_forecast(weights, norm, x_raw, y, naive, spec, threads, gain)
        columns = forecast_columns(spec, x_raw, y)
        local = NormStats.of(columns)
        if replay is not None and len(replay):
            columns = np.concatenate([columns, forecast_columns(spec, replay.x, replay.y)])
        both = norm.merge(local).transform(columns)
        x_n, y_n = both[:, : spec.model.num_features], both[:, spec.model.num_features :]
        new_weights, train_loss = fit(weights, x_n, y_n, spec, epochs=epochs, batch_size=batch_size, seed=seed, threads=threads)
        return PartitionResult(key, len(x_raw), prequential, train_loss, new_weights, local, time.perf_counter() - started, gain=sums)
    local = NormStats.of(x_raw)
    merged = norm.merge(local)
    x_n, y_n = merged.transform(x_raw), y
    if replay is not None and len(replay):
        x_n = np.concatenate([x_n, merged.transform(replay.x)])
        y_n = np.concatenate([y, replay.y.astype(y.dtype)])
    options = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "threads": threads, "trace_size": trace_size}
    if score_steps and epochs > 0:
        new_weights, train_loss, prequential = fit_scored(weights, x_n, y_n, spec, new_rows=len(x_raw), **options)
    else:
        prequential = score(weights, norm.transform(x_raw), y, spec, threads)
        new_weights, train_loss = fit(weights, x_n, y_n, spec, **options)
    return PartitionResult(key, len(x_raw), prequential, train_loss, new_weights, local, time.perf_counter() - started)
