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

Layer l reads the h sequence of layer l-1; a dense head reads the last layer's final h and gives
logits; softmax and sparse cross-entropy are applied by the training functions (training.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from streaming_lstm.core.weights import LSTMConfig, Weights, schema

__all__ = ["LSTMCell", "LSTMConfig", "LSTMStack"]


class LSTMCell(tf.Module):
    """One LSTM layer unrolled over time; the four gates share one (B, 4H) matmul per step."""

    def __init__(self, layer: int, fan_in: int, hidden: int) -> None:
        super().__init__(name=f"lstm_{layer}")
        self.hidden = hidden
        self.kernel = tf.Variable(tf.zeros((fan_in, 4 * hidden)), name="kernel")  # W (F, 4H)
        self.recurrent_kernel = tf.Variable(tf.zeros((hidden, 4 * hidden)), name="recurrent_kernel")  # U (H, 4H)
        self.bias = tf.Variable(tf.zeros((4 * hidden,)), name="bias")  # b (4H,)

    def __call__(self, xs: tf.Tensor, *, sequence: bool = True) -> tf.Tensor:
        """xs: (B, T, F) -> the h sequence (B, T, H), or (``sequence=False``) the last h (B, H)."""
        batch = tf.shape(xs)[0]
        H = self.hidden
        # The input projection of all timesteps at once: one (B*T, F) x (F, 4H) matmul, then one
        # unstack. Why not xw[:, t]: each slice's gradient is a zero-padded (B, T, 4H) tensor, T of
        # them summed; the unstack's gradient is a single stack.
        xw = tf.unstack(tf.einsum("btf,fg->btg", xs, self.kernel) + self.bias, axis=1)  # T x (B, 4H)
        h = tf.zeros((batch, H))  # (B, H)
        c = tf.zeros((batch, H))  # (B, H)
        hs = []
        for xw_t in xw:  # T is static: the loop unrolls when traced
            z = xw_t + tf.matmul(h, self.recurrent_kernel)  # (B, 4H)
            # One split, not four slices: a slice's gradient is a zero-padded (B, 4H) tensor per
            # gate, the split's is a single concat (measured with `python -m bench kernel`).
            zf, zi, zg, zo = tf.split(z, 4, axis=1)  # 4 x (B, H), in the order f, i, g, o
            f = tf.sigmoid(zf)  # forget    (B, H)
            i = tf.sigmoid(zi)  # input     (B, H)
            g = tf.tanh(zg)  # candidate (B, H)
            o = tf.sigmoid(zo)  # output    (B, H)
            c = f * c + i * g  # (B, H)
            h = o * tf.tanh(c)  # (B, H)
            hs.append(h)
        return tf.stack(hs, axis=1) if sequence else h  # (B, T, H) or (B, H)


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
        seq = tf.reshape(x, (-1, cfg.timesteps, cfg.features_per_step))  # (B, T, F)
        for cell in self.cells[:-1]:
            seq = cell(seq)  # (B, T, H_l)
        last = self.cells[-1](seq, sequence=False)  # (B, H_L): the head reads only the final h
        return tf.matmul(last, self.head_kernel) + self.head_bias  # (B, C)

    def assign(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, var in self.by_name.items():
            var.assign(weights[name])

    def get(self) -> Weights:
        return {name: self.by_name[name].numpy() for name, _ in schema(self.config)}
