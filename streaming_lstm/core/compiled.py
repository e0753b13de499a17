"""The compiled model: an LSTM stack, its optimiser written out, and its traced functions,
cached per process.

A process keeps one compiled model per :class:`TrainSpec` in a module-level cache
(:func:`compiled`): Spark reuses its Python workers across micro-batches, and a cache that lives in
this importable module survives between tasks, while one inside a cloudpickled closure would be
rebuilt (and TF retraced) every task.

Optimisers are written out (adam, sgd, rmsprop) so that their state is plain variables that a
task resets to zero: every task starts from the global weights with a fresh optimiser, which makes a
replayed task reproduce its result exactly. :mod:`~streaming_lstm.core.training` runs the model.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.model import LSTMStack
from streaming_lstm.core.tf_import import tf
from streaming_lstm.core.threads import INTER_OP_THREADS
from streaming_lstm.core.weights import LSTMConfig

ADAM_BETA1, ADAM_BETA2, EPSILON, RMSPROP_RHO = 0.9, 0.999, 1e-7, 0.9


@dataclass(frozen=True)
class TrainSpec:
    """What a compiled model depends on; hashable, the key of the per-process cache."""

    model: LSTMConfig
    optimizer: str
    learning_rate: float
    clip_norm: float
    l2: float
    change_from: tuple[int, ...] = ()  # data.forecast_change: AppConfig.change_columns()
    xla: bool = False  # train.xla: each optimiser step compiled by XLA

    @classmethod
    def from_app(cls, cfg: AppConfig, *, streaming: bool = False) -> TrainSpec:
        """The standalone trainer's spec, or (``streaming``) a partition task's."""
        t = cfg.train
        lr = t.local_learning_rate if streaming and t.local_learning_rate > 0 else t.learning_rate
        return cls(LSTMConfig.from_app(cfg), t.optimizer, lr, t.clip_norm, t.l2, cfg.change_columns(), t.xla)


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
    trace per size, :func:`~streaming_lstm.core.training.padded_size`; a short mini-batch is padded
    with masked rows): with a ``None`` batch dimension every elementwise gradient carries shape and
    broadcast-reduction ops, which make up a large share of a step's ops. Scoring and prediction take a ``None`` batch
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
        self._train_fns: dict[tuple[int, bool], tf.types.experimental.PolymorphicFunction] = {}
        # No AutoGraph (which rewrites Python control flow on tensors into graph ops by parsing and
        # rewriting the source of each function and of every function it calls): the bodies loop
        # over static Python lists only, and the training loops are tf.while_loop (steps_loop).
        self.score_step = tf.function(self._score_step, input_signature=[x_sig, y_sig], autograph=False)
        self.predict_step = tf.function(self._predict_step, input_signature=[x_sig], autograph=False)
        self.outputs_step = tf.function(self.net, input_signature=[x_sig], autograph=False)  # the head's raw outputs
        self._reset = tf.function(self._reset_body, input_signature=[], autograph=False)
        # train.xla: XLA compiles the step (forward, hand-written backward, clipping, optimiser) into
        # a few fused kernels: 1.04-1.13x the graph's step at mini-batch 256, but 0.72-0.80x at 10,
        # where the graph's multiplications by transposed weight copies (model.transposed) win
        # (docs/benchmarks.md). The compile takes seconds per mini-batch size, once per process,
        # which is why it is not the default. Only the step: the loop around it has a number of
        # steps that varies per call, and XLA compiles once per shape.
        self._step = tf.function(self._train_step, jit_compile=True, autograph=False) if spec.xla else self._train_step

    # -- traced bodies ------------------------------------------------------------------------
    def train_steps(self, batch: int, scored: bool = False) -> tf.types.experimental.PolymorphicFunction:
        """The traced training loop for mini-batches of ``batch`` rows (traced on first use);
        ``scored``: the loop that also returns what each step predicted (:meth:`_scored_steps`)."""
        fn = self._train_fns.get((batch, scored))
        if fn is None:
            steps_sig = tf.TensorSpec((None, batch), tf.int32), tf.TensorSpec((None, batch), tf.float32)
            body = self._scored_steps if scored else self._train_steps
            fn = self._train_fns[batch, scored] = tf.function(body, input_signature=[*self._sigs, *steps_sig], autograph=False)
        return fn

    def _loss(self, x, y, mask):  # type: ignore[no-untyped-def]
        """The mean loss over the rows whose ``mask`` is 1 (padding rows have 0: no gradient), and
        the outputs and per-row losses it came from."""
        out = self.net(x)  # (B, C): logits, or the normalised forecasts
        if self.spec.model.forecast:
            per_row = tf.reduce_mean(tf.square(out - y), axis=1)  # (B,) MSE over the forecast values
        else:
            per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)  # (B,)
        loss = tf.reduce_sum(per_row * mask) / tf.reduce_sum(mask)
        if self.spec.l2 > 0:
            loss += self.spec.l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_vars])
        return loss, out, per_row

    def _train_step(self, x, y, mask):  # type: ignore[no-untyped-def]
        """One optimiser step; returns its loss, and the (B, C) outputs and (B,) per-row losses
        of the weights before the step (a loop that does not use them has them pruned)."""
        variables = self.net.ordered
        with tf.GradientTape() as tape:
            loss, out, per_row = self._loss(x, y, mask)
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
        return loss, out, per_row

    def _train_steps(self, x, y, order, mask):  # type: ignore[no-untyped-def]
        """Step k trains rows ``order[k]`` (S, b) where ``mask[k]`` is 1; returns the (S,) step losses."""

        def step(k, losses):  # type: ignore[no-untyped-def]
            idx = order[k]  # (b,) static
            loss, _, _ = self._step(tf.gather(x, idx), tf.gather(y, idx), mask[k])
            return (losses.write(k, loss),)

        (losses,) = steps_loop(step, tf.shape(order)[0], 1)
        return losses.stack()

    def _scored_steps(self, x, y, order, mask):  # type: ignore[no-untyped-def]
        """As :meth:`_train_steps`, and what each step predicted for its rows before it learned
        them (classification): whether right (S, b) and the cross-entropy (S, b)."""

        def step(k, losses, right, entropy):  # type: ignore[no-untyped-def]
            idx = order[k]  # (b,) static
            y_k = tf.gather(y, idx)  # (b,)
            loss, logits, per_row = self._step(tf.gather(x, idx), y_k, mask[k])  # logits (b, C)
            hit = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y_k), tf.float32)
            return losses.write(k, loss), right.write(k, hit), entropy.write(k, per_row)

        losses, right, entropy = steps_loop(step, tf.shape(order)[0], 3)
        return losses.stack(), right.stack(), entropy.stack()

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


def steps_loop(step: Callable[..., Any], steps: tf.Tensor, outputs: int) -> list[tf.TensorArray]:
    """A graph loop ``for k in range(steps)``: ``step(k, *arrays)`` returns the ``outputs`` float
    TensorArrays (``steps`` entries each) with entry k written.

    Written as ``tf.while_loop`` rather than a Python ``for`` that AutoGraph rewrites: AutoGraph
    parses and rewrites the source of the loop and of every function it calls, which is most of a
    first trace's time; what it produces for ``for k in tf.range(n)`` is this loop.
    """
    arrays = [tf.TensorArray(tf.float32, size=steps) for _ in range(outputs)]
    _, *out = tf.while_loop(lambda k, *_: k < steps, lambda k, *a: (k + 1, *step(k, *a)), [tf.constant(0), *arrays], maximum_iterations=steps)
    return out


_CACHE: dict[tuple[TrainSpec, int], CompiledModel] = {}
# Which copy of a spec's compiled model this thread uses (:func:`model_slot`): a compiled model
# holds its weights and optimiser state in variables, so two threads training at once (the driver
# training its task groups side by side, trainer/planned.py) each need their own.
_SLOT = threading.local()


@contextmanager
def model_slot(slot: int) -> Iterator[None]:
    """In this block, this thread's :func:`compiled` models are copy ``slot`` (0 outside any block)."""
    before = getattr(_SLOT, "n", 0)
    _SLOT.n = slot
    try:
        yield
    finally:
        _SLOT.n = before


def env_threads() -> int:
    """``STREAMING_LSTM_TF_THREADS``: intra-op threads for a process outside a trainer task (0: unset)."""
    return int(os.environ.get("STREAMING_LSTM_TF_THREADS", "0"))


def compiled(spec: TrainSpec, threads: int = 0) -> CompiledModel:
    """The process's compiled model for ``spec`` (built and traced on first use only), this
    thread's copy of it (:func:`model_slot`)."""
    key = (spec, getattr(_SLOT, "n", 0))
    model = _CACHE.get(key)
    if model is None:
        configure_threads(threads or env_threads())
        model = _CACHE[key] = CompiledModel(spec)
    return model
