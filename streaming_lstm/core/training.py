"""Training as a pure function of (weights, rows, config): it never touches Spark.

TensorFlow is imported here, at the top, once: the Spark driver never imports this module (it
needs only :mod:`~streaming_lstm.core.seeds` and :mod:`~streaming_lstm.core.results`), the Python workers
and the one-process commands do.

The standalone ``fit`` and every streaming partition task call the functions here. A process keeps
one compiled model per :class:`TrainSpec` in a module-level cache (:func:`compiled`): Spark reuses
its Python workers across micro-batches, and a cache that lives in this importable module survives
between tasks, while one inside a cloudpickled closure would be rebuilt (and TF retraced) every task.

Optimisers are written out too (adam, sgd, rmsprop) so that their state is plain variables that a
task resets to zero: every task starts from the global weights with a fresh optimiser, which makes a
replayed task reproduce its result exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streaming_lstm.core.change import forecast_base, forecast_columns, served, window_inputs
from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.model import LSTMStack
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal
from streaming_lstm.core.results import PartitionResult, Score
from streaming_lstm.core.tf_import import tf
from streaming_lstm.core.threads import INTER_OP_THREADS, intra_op_threads
from streaming_lstm.core.weights import LSTMConfig, Weights, check_weights

ADAM_BETA1, ADAM_BETA2, EPSILON, RMSPROP_RHO = 0.9, 0.999, 1e-7, 0.9
SCORE_CHUNK = 8192  # rows per predict call: bounds memory on large batches


@dataclass(frozen=True)
class TrainSpec:
    """What a compiled model depends on; hashable, the key of the per-process cache."""

    model: LSTMConfig
    optimizer: str
    learning_rate: float
    clip_norm: float
    l2: float
    change_from: tuple[int, ...] = ()  # data.forecast_change: AppConfig.change_columns()

    @classmethod
    def from_app(cls, cfg: AppConfig, *, streaming: bool = False) -> TrainSpec:
        """The standalone trainer's spec, or (``streaming``) a partition task's."""
        t = cfg.train
        lr = t.local_learning_rate if streaming and t.local_learning_rate > 0 else t.learning_rate
        return cls(LSTMConfig.from_app(cfg), t.optimizer, lr, t.clip_norm, t.l2, cfg.change_columns())


_THREADS_SET = False


def configure_threads(threads: int) -> None:
    """Set TF's thread pools once per process, before TF runs anything: ``threads`` intra-op
    (0: TF's default, the cores) and :data:`~streaming_lstm.core.threads.INTER_OP_THREADS`
    inter-op threads (:mod:`~streaming_lstm.core.threads` says why).

    With several Spark tasks per executor, tasks x intra-op threads should not exceed the cores.
    """
    global _THREADS_SET
    if _THREADS_SET:
        return
    _THREADS_SET = True
    try:
        if threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
        tf.config.experimental.enable_op_determinism()
    except RuntimeError:
        # TF was already initialised in this process (e.g. a test ran a model first); its pools stay.
        pass


class CompiledModel:
    """An :class:`~streaming_lstm.core.model.LSTMStack`, its optimiser state and traced functions.

    :meth:`train_steps` runs every mini-batch of a training call inside one traced loop: a call
    from Python into a ``tf.function`` costs about as much as a whole step of a small LSTM on 10
    rows, so ``fit`` makes one call, not one per mini-batch. Its mini-batch size is static (one
    trace per size, :func:`padded_size`; a short mini-batch is padded with masked rows): with a
    ``None`` batch dimension every elementwise gradient carries shape and broadcast-reduction ops,
    which make up a large share of a step's ops. Scoring and prediction take a ``None`` batch
    dimension.
    """

    def __init__(self, spec: TrainSpec) -> None:
        self.spec = spec
        self.net = LSTMStack(spec.model)
        variables = self.net.ordered
        self.slots_m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.slots_v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.step = tf.Variable(0.0, trainable=False)
        self._l2_vars = [v for name, v in self.net.by_name.items() if not name.endswith("bias")]
        nfeat = spec.model.num_features
        x_sig = tf.TensorSpec((None, nfeat), tf.float32)
        # Class ids, or (forecast) the normalised targets, one column per forecast value.
        y_sig = tf.TensorSpec((None, spec.model.num_classes), tf.float32) if spec.model.forecast else tf.TensorSpec((None,), tf.int32)
        self._sigs = (x_sig, y_sig)
        self._train_fns: dict[int, tf.types.experimental.PolymorphicFunction] = {}
        self.score_step = tf.function(self._score_step, input_signature=[x_sig, y_sig])
        self.predict_step = tf.function(self._predict_step, input_signature=[x_sig])
        self.outputs_step = tf.function(self.net, input_signature=[x_sig])  # the head's raw outputs
        self._reset = tf.function(self._reset_body, input_signature=[])

    # -- traced bodies ------------------------------------------------------------------------
    def train_steps(self, batch: int) -> tf.types.experimental.PolymorphicFunction:
        """The traced training loop for mini-batches of ``batch`` rows (traced on first use)."""
        fn = self._train_fns.get(batch)
        if fn is None:
            steps_sig = tf.TensorSpec((None, batch), tf.int32), tf.TensorSpec((None, batch), tf.float32)
            fn = self._train_fns[batch] = tf.function(self._train_steps, input_signature=[*self._sigs, *steps_sig])
        return fn

    def _loss(self, x, y, mask):  # type: ignore[no-untyped-def]
        """The mean loss over the rows whose ``mask`` is 1 (padding rows have 0: no gradient)."""
        out = self.net(x)  # (B, C): logits, or the normalised forecasts
        if self.spec.model.forecast:
            per_row = tf.reduce_mean(tf.square(out - y), axis=1)  # (B,) MSE over the forecast values
        else:
            per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)  # (B,)
        loss = tf.reduce_sum(per_row * mask) / tf.reduce_sum(mask)
        if self.spec.l2 > 0:
            loss += self.spec.l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_vars])
        return loss

    def _train_step(self, x, y, mask):  # type: ignore[no-untyped-def]
        variables = self.net.ordered
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, mask)
        grads = tape.gradient(loss, variables)
        if self.spec.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.spec.clip_norm)
        lr = self.spec.learning_rate
        self.step.assign_add(1.0)
        t = self.step
        # The updates are Keras's own (tf.keras.optimizers, Keras 3), term for term, so that they
        # agree to float rounding (tests/test_optimizers.py). Note where epsilon sits: Adam adds it
        # to sqrt(v) with the bias correction folded into the step size (Kingma & Ba's "efficient"
        # form), RMSprop inside the square root; both damp the steps of tiny gradients.
        #   Adam:  m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  var -= alpha m / (sqrt(v) + eps)
        #   with alpha = lr sqrt(1 - b2^t) / (1 - b1^t)
        # Adam runs as TF's fused kernel (ResourceApplyAdam computes exactly those three lines, in
        # that order): one op per variable instead of eight, which matters at small mini-batches.
        beta1_power, beta2_power = tf.pow(ADAM_BETA1, t), tf.pow(ADAM_BETA2, t)  # once per step, not per variable
        for var, g, m, v in zip(variables, grads, self.slots_m, self.slots_v, strict=True):
            if self.spec.optimizer == "adam":
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle,
                    m=m.handle,
                    v=v.handle,
                    beta1_power=beta1_power,
                    beta2_power=beta2_power,
                    lr=lr,
                    beta1=ADAM_BETA1,
                    beta2=ADAM_BETA2,
                    epsilon=EPSILON,
                    grad=g,
                )
            elif self.spec.optimizer == "rmsprop":
                v.assign(RMSPROP_RHO * v + (1 - RMSPROP_RHO) * tf.square(g))
                var.assign_sub((lr * g) / tf.sqrt(v + EPSILON))
            else:  # sgd
                var.assign_sub(lr * g)
        return loss

    def _train_steps(self, x, y, order, mask):  # type: ignore[no-untyped-def]
        """Step k trains rows ``order[k]`` (S, b) where ``mask[k]`` is 1; returns the (S,) step losses."""
        steps = tf.shape(order)[0]
        losses = tf.TensorArray(tf.float32, size=steps)
        for k in tf.range(steps):  # a graph loop (AutoGraph), not a Python one
            idx = order[k]  # (b,) static
            losses = losses.write(k, self._train_step(tf.gather(x, idx), tf.gather(y, idx), mask[k]))
        return losses.stack()

    def _score_step(self, x, y):  # type: ignore[no-untyped-def]
        logits = self.net(x)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.int32))
        return correct, tf.reduce_sum(losses)

    def _predict_step(self, x):  # type: ignore[no-untyped-def]
        return tf.nn.softmax(self.net(x))

    # -- eager helpers ------------------------------------------------------------------------
    def reset_optimizer(self) -> None:
        """Zero the optimiser's state in one traced call: eager assigns of host zeros, one per
        slot variable, cost a visible share of a small partition's training."""
        self._reset()

    def _reset_body(self) -> None:
        for s in (*self.slots_m, *self.slots_v):
            s.assign(tf.zeros_like(s))
        self.step.assign(0.0)


_CACHE: dict[TrainSpec, CompiledModel] = {}


def env_threads() -> int:
    """``STREAMING_LSTM_TF_THREADS``: intra-op threads for a process outside a trainer task (0: unset)."""
    return int(os.environ.get("STREAMING_LSTM_TF_THREADS", "0"))


def compiled(spec: TrainSpec, threads: int = 0) -> CompiledModel:
    """The process's compiled model for ``spec`` (built and traced on first use only)."""
    model = _CACHE.get(spec)
    if model is None:
        configure_threads(threads or env_threads())
        model = _CACHE[spec] = CompiledModel(spec)
    return model


def padded_size(rows: int, batch_size: int) -> int:
    """The static mini-batch size that ``fit`` traces for ``rows`` rows: ``batch_size``, or, for
    fewer rows, the next power of two (at most log2(batch_size) + 1 traces per process, and a
    small partition pads to less than twice its rows)."""
    if rows >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(0, rows - 1).bit_length())


def mini_batches(rows: int, epochs: int, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``order`` (S, b) and ``mask`` (S, b): each epoch a fresh permutation of the rows cut into
    mini-batches of ``batch_size``; an epoch's last short mini-batch is padded with row 0 at mask 0.
    ``b`` is :func:`padded_size`."""
    b = padded_size(rows, batch_size)
    per_epoch = -(-rows // batch_size)  # mini-batches per epoch
    order = np.zeros((epochs, per_epoch * batch_size), np.int32)
    mask = np.zeros((epochs, per_epoch * batch_size), np.float32)
    for e in range(epochs):
        order[e, :rows] = rng.permutation(rows)
        mask[e, :rows] = 1.0
    # Rows fewer than batch_size: one mini-batch, cut to b >= rows; else b == batch_size.
    return order.reshape(-1, batch_size)[:, :b], mask.reshape(-1, batch_size)[:, :b]


def fit(
    weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, spec: TrainSpec, *, epochs: int, batch_size: int, seed: int, threads: int = 0
) -> tuple[Weights, float]:
    """Train from ``weights`` on normalised rows ``x`` (N, F) and labels ``y`` (N,).

    Mini-batches of ``batch_size`` in a fresh seeded order each epoch, a fresh optimiser state.
    Returns the new weights and the mean training loss of the last epoch. Pure: the inputs are
    not modified and the result depends only on the arguments. ``threads`` 0 picks the intra-op
    threads for this model and mini-batch (:func:`~streaming_lstm.core.threads.intra_op_threads`)
    if this process has not set them yet.
    """
    model = compiled(spec, threads or env_threads() or intra_op_threads(spec.model, batch_size))
    model.net.assign(check_weights(weights, spec.model))
    model.reset_optimizer()
    n = len(x)
    if epochs <= 0 or n == 0:
        return model.net.get(), float("nan")
    y_dtype = np.float32 if spec.model.forecast else np.int32
    order, mask = mini_batches(n, epochs, batch_size, np.random.default_rng(seed))  # (S, b) each
    run = model.train_steps(order.shape[1])
    losses = run(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, y_dtype), order, mask).numpy()
    per_epoch = len(order) // epochs
    sizes = mask[-per_epoch:].sum(axis=1)  # the last epoch's mini-batch sizes
    last = float(np.dot(losses[-per_epoch:].astype(np.float64), sizes) / n)  # the last epoch's mean
    return model.net.get(), last


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
) -> PartitionResult:
    """One streaming partition: test, then train (prequential, as in River).

    1. Score every row with the incoming global weights and normaliser (the prequential figures;
       forecasts also against ``naive``, the last-value forecast of each target, (N, C), served
       with the incoming ``gain``, and the rows' sums for the next gain, gain.py).
    2. Merge this partition's statistics (features, and forecast targets) into the global ones and
       normalise with that.
    3. Train ``epochs`` local epochs from the global weights, on the new rows and the ``replay``
       rows (this key's share of the rehearsal buffer, rehearsal.py; raw, like ``x_raw``).

    The result carries this partition's own statistics; the driver merges all partitions' into the
    global normaliser, so no row is counted twice. ``y`` is (N,) class ids or (N, C) raw targets
    (learned as changes from the window's last values with ``data.forecast_change``).
    """
    started = time.perf_counter()
    sums = None
    if spec.model.forecast:
        assert naive is not None, "a forecast partition needs the naive forecasts"
        prequential, sums = score_forecast(weights, norm, x_raw, y, naive, spec, threads, gain)
        columns = forecast_columns(spec, x_raw, y)
        local = NormStats.of(columns)
        if replay is not None and len(replay):
            columns = np.concatenate([columns, forecast_columns(spec, replay.x, replay.y)])
        both = norm.merge(local).transform(columns)
        x_n, y_n = both[:, : spec.model.num_features], both[:, spec.model.num_features :]
    else:
        prequential = score(weights, norm.transform(x_raw), y, spec, threads)
        local = NormStats.of(x_raw)
        merged = norm.merge(local)
        x_n, y_n = merged.transform(x_raw), y
        if replay is not None and len(replay):
            x_n = np.concatenate([x_n, merged.transform(replay.x)])
            y_n = np.concatenate([y, replay.y.astype(y.dtype)])
    new_weights, train_loss = fit(weights, x_n, y_n, spec, epochs=epochs, batch_size=batch_size, seed=seed, threads=threads)
    return PartitionResult(key, len(x_raw), prequential, train_loss, new_weights, local, time.perf_counter() - started, gain=sums)
