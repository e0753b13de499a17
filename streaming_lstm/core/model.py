"""The from-scratch LSTM in TensorFlow: the config, the cell, the stack. No ``tf.keras.layers.LSTM``.

The config dataclass (:class:`~streaming_lstm.core.weights.LSTMConfig`) and the weights' schema live in
``weights.py`` so that the Spark driver can handle weights without importing TensorFlow.

One cell at step t (x_t: (B, F), h, c: (B, H)), gates in the order of the equations:

    z   = x_t W + h_{t-1} U + b        # (B, 4H)   W: (F, 4H), U: (H, 4H), b: (4H,)
    f_t = sigmoid(z[:, 0H:1H])         # forget
    i_t = sigmoid(z[:, 1H:2H])         # input
    g_t = tanh(z[:, 2H:3H])            # candidate
    o_t = sigmoid(z[:, 3H:4H])         # output
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Layer l reads the h sequence of layer l-1, time-major (T, B, H): each timestep one contiguous
block; a dense head reads the last layer's final h and gives logits; softmax and sparse
cross-entropy are applied by the training functions (training.py).

A layer's backward pass is written out (:func:`backward_steps`, :func:`lstm_layer`): the gate
derivatives per step in the reverse order of the equations, then each weight's gradient as one
matmul over all T*B rows; products by a transposed weight multiply by a transposed copy
(:func:`transposed`, Eigen's fast path). ``tests/test_model.py`` checks it against TensorFlow's
autodiff of :func:`forward_steps` and the whole stack against ``tf.keras.layers.LSTM``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from streaming_lstm.core.tf_import import tf
from streaming_lstm.core.weights import LSTMConfig, Weights, schema

__all__ = ["LSTMCell", "LSTMConfig", "LSTMStack", "backward_steps", "forward_steps", "lstm_layer", "transposed"]


class Steps(NamedTuple):
    """What the forward pass keeps per timestep for the hand-written backward (T entries each)."""

    hs: list[tf.Tensor]  # h_t            (B, H)
    cs: list[tf.Tensor]  # c_{t-1}        (B, H), c_{-1} = 0
    gates: list[tuple[tf.Tensor, ...]]  # (f_t, i_t, g_t, o_t, tanh(c_t)), each (B, H)


def forward_steps(xs: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor) -> Steps:
    """The cell's equations over all T steps of xs (T, B, F), differentiable by autodiff too.

    Sequences are time-major, (T, B, ...): a timestep is one contiguous block, so cutting the
    sequence into steps and joining steps into a sequence are views or plain copies, never the
    strided gathers a (B, T, ...) layout needs."""
    (T, F), batch, H = (xs.shape[0], xs.shape[2]), tf.shape(xs)[1], recurrent_kernel.shape[0]
    # The input projection of all timesteps at once, (T*B, F) x (F, 4H), then one unstack. With one
    # feature per step it is a broadcast product: the same arithmetic, where a matmul whose inner
    # dimension is 1 runs as a general contraction at a fraction of the product's speed.
    rows = tf.reshape(xs, (-1, F))  # (T*B, F)
    projected = rows * kernel if F == 1 else tf.matmul(rows, kernel)  # (T*B, 4H)
    xw = tf.unstack(tf.reshape(projected + bias, (T, -1, 4 * H)))  # T x (B, 4H)
    h = tf.zeros((batch, H), xs.dtype)  # (B, H)
    c = tf.zeros((batch, H), xs.dtype)  # (B, H)
    steps = Steps([], [], [])
    for xw_t in xw:  # T is static: the loop unrolls when traced
        z = xw_t + tf.matmul(h, recurrent_kernel)  # (B, 4H)
        zf, zi, zg, zo = tf.split(z, 4, axis=1)  # 4 x (B, H), in the order f, i, g, o
        f = tf.sigmoid(zf)  # forget    (B, H)
        i = tf.sigmoid(zi)  # input     (B, H)
        g = tf.tanh(zg)  # candidate (B, H)
        o = tf.sigmoid(zo)  # output    (B, H)
        steps.cs.append(c)
        c = f * c + i * g  # (B, H)
        tanh_c = tf.tanh(c)  # (B, H)
        h = o * tanh_c  # (B, H)
        steps.hs.append(h)
        steps.gates.append((f, i, g, o, tanh_c))
    return steps


def transposed(matrix: tf.Tensor) -> tf.Tensor:
    """matrix^T as a tensor of its own, for the backward's ``dZ U^T`` and ``dZ W^T``.

    Eigen multiplies by a second operand transposed through ``transpose_b`` 2x (256 rows) to 7x
    (10 rows) slower than by a transposed copy, on these shapes (B or T*B rows, 4H deep, H wide).
    A plain ``tf.transpose`` does not keep the copy: Grappler's arithmetic optimiser folds a
    Transpose that feeds a MatMul into the flag. A Snapshot between them is not folded.
    """
    return tf.raw_ops.Snapshot(input=tf.transpose(matrix))


def backward_steps(steps: Steps, dhs: list[tf.Tensor | None], recurrent_kernel: tf.Tensor) -> tf.Tensor:
    """dL/dz for every step, (T, B, 4H), from dL/dh_t of the layer's outputs (None: no gradient).

    Backpropagation through time, the forward equations differentiated in reverse order:

        dh    = dL/dh_t + dz_{t+1} U^T          # (B, H)   the output's and the next step's
        dc    = dc_{t+1} f_{t+1} + dh o (1 - tanh(c_t)^2)
        dz_f  = dc c_{t-1} f (1 - f);   dz_i = dc g i (1 - i)
        dz_g  = dc i (1 - g^2);         dz_o = dh tanh(c_t) o (1 - o)

    ``SigmoidGrad(y, dy) = dy y (1 - y)`` and ``TanhGrad(y, dy) = dy (1 - y^2)`` are one kernel
    each, where autodiff dispatches the same arithmetic as several.
    """
    recurrent_t = transposed(recurrent_kernel)  # U^T (4H, H)
    dzs: list[tf.Tensor] = []
    dh_next: tf.Tensor | None = None  # dz_{t+1} U^T
    dc_next: tf.Tensor | None = None  # dc_{t+1} f_{t+1}
    for t in reversed(range(len(steps.hs))):
        f, i, g, o, tanh_c = steps.gates[t]
        dh = [d for d in (dhs[t], dh_next) if d is not None]
        dh_t = dh[0] if len(dh) == 1 else dh[0] + dh[1]  # (B, H)
        dc = tf.raw_ops.TanhGrad(y=tanh_c, dy=dh_t * o)  # (B, H)
        if dc_next is not None:
            dc += dc_next
        dz = tf.concat(  # (B, 4H), the gates in the order f, i, g, o
            [
                tf.raw_ops.SigmoidGrad(y=f, dy=dc * steps.cs[t]),
                tf.raw_ops.SigmoidGrad(y=i, dy=dc * g),
                tf.raw_ops.TanhGrad(y=g, dy=dc * i),
                tf.raw_ops.SigmoidGrad(y=o, dy=dh_t * tanh_c),
            ],
            axis=1,
        )
        dzs.append(dz)
        dc_next = dc * f  # (B, H)
        if t > 0:
            dh_next = tf.matmul(dz, recurrent_t)  # (B, H)
    return tf.stack(dzs[::-1])  # (T, B, 4H)


def lstm_layer(xs: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor, *, sequence: bool, input_grad: bool) -> tf.Tensor:
    """One layer over xs (T, B, F): the h sequence (T, B, H), or (``sequence=False``) the last h
    (B, H), with the hand-written backward of :func:`backward_steps`.

    The weights' gradients are then one matmul each over all T*B rows, where autodiff of the
    unrolled loop multiplies and adds T small ones: ``dW = X^T dZ``, ``dU = H_{<T}^T dZ_{>0}``
    (h_{-1} = 0 adds nothing), ``db = sum dZ``. ``input_grad=False`` (the first layer: its input
    is data) skips dX = dZ W^T.
    """

    @tf.custom_gradient
    def layer(xs: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor) -> Any:
        steps = forward_steps(xs, kernel, recurrent_kernel, bias)
        T, (F, G) = len(steps.hs), kernel.shape  # G = 4H

        def grad(dout: tf.Tensor) -> tuple[tf.Tensor | None, ...]:
            dhs = tf.unstack(dout) if sequence else [None] * (T - 1) + [dout]
            dz = backward_steps(steps, dhs, recurrent_kernel)  # (T, B, 4H)
            dz_rows = tf.reshape(dz, (-1, G))  # (T*B, 4H)
            d_kernel = tf.matmul(tf.reshape(xs, (-1, F)), dz_rows, transpose_a=True)  # (F, 4H)
            d_bias = tf.reduce_sum(dz_rows, axis=0)  # (4H,)
            if T > 1:
                h_prev = tf.reshape(tf.stack(steps.hs[:-1]), (-1, recurrent_kernel.shape[0]))  # ((T-1)*B, H)
                d_recurrent = tf.matmul(h_prev, tf.reshape(dz[1:], (-1, G)), transpose_a=True)  # (H, 4H)
            else:
                d_recurrent = tf.zeros_like(recurrent_kernel)
            d_xs = tf.reshape(tf.matmul(dz_rows, transposed(kernel)), tf.shape(xs)) if input_grad else None  # (T, B, F)
            return d_xs, d_kernel, d_recurrent, d_bias

        return (tf.stack(steps.hs) if sequence else steps.hs[-1]), grad

    return layer(xs, kernel, recurrent_kernel, bias)


class LSTMCell(tf.Module):
    """One LSTM layer unrolled over time; the four gates share one (B, 4H) matmul per step."""

    def __init__(self, layer: int, fan_in: int, hidden: int) -> None:
        super().__init__(name=f"lstm_{layer}")
        self.layer = layer
        self.hidden = hidden
        self.kernel = tf.Variable(tf.zeros((fan_in, 4 * hidden)), name="kernel")  # W (F, 4H)
        self.recurrent_kernel = tf.Variable(tf.zeros((hidden, 4 * hidden)), name="recurrent_kernel")  # U (H, 4H)
        self.bias = tf.Variable(tf.zeros((4 * hidden,)), name="bias")  # b (4H,)

    def __call__(self, xs: tf.Tensor, *, sequence: bool = True) -> tf.Tensor:
        """xs: (T, B, F) -> the h sequence (T, B, H), or (``sequence=False``) the last h (B, H)."""
        weights = (tf.identity(self.kernel), tf.identity(self.recurrent_kernel), tf.identity(self.bias))
        return lstm_layer(xs, *weights, sequence=sequence, input_grad=self.layer > 0)


class LSTMStack(tf.Module):
    """Stacked :class:`LSTMCell` layers and a dense head; variables named as in :func:`schema`."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(name="lstm_stack")
        self.config = config
        fan_in = config.features_per_step
        self.cells: list[LSTMCell] = []
        for layer, hidden in enumerate(config.hidden):
            self.cells.append(LSTMCell(layer, fan_in, hidden))
            fan_in = hidden
        self.head_kernel = tf.Variable(tf.zeros((fan_in, config.num_classes)), name="head_kernel")  # (H, C)
        self.head_bias = tf.Variable(tf.zeros((config.num_classes,)), name="head_bias")  # (C,)
        self.by_name: dict[str, tf.Variable] = {}
        for layer, cell in enumerate(self.cells):
            self.by_name[f"lstm_{layer}/kernel"] = cell.kernel
            self.by_name[f"lstm_{layer}/recurrent_kernel"] = cell.recurrent_kernel
            self.by_name[f"lstm_{layer}/bias"] = cell.bias
        self.by_name["head/kernel"] = self.head_kernel
        self.by_name["head/bias"] = self.head_bias
        self.ordered: list[tf.Variable] = [self.by_name[n] for n, _ in schema(config)]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """x: (B, T*F) normalised features -> logits (B, C)."""
        cfg = self.config
        seq = tf.transpose(tf.reshape(x, (-1, cfg.timesteps, cfg.features_per_step)), (1, 0, 2))  # (T, B, F)
        for cell in self.cells[:-1]:
            seq = cell(seq)  # (T, B, H_l)
        last = self.cells[-1](seq, sequence=False)  # (B, H_L): the head reads only the final h
        return tf.matmul(last, self.head_kernel) + self.head_bias  # (B, C)

    def assign(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, var in self.by_name.items():
            var.assign(weights[name])

    def get(self) -> Weights:
        return {name: self.by_name[name].numpy() for name, _ in schema(self.config)}
