"""Prove the math: the from-scratch LSTM equals tf.keras.layers.LSTM with the same weights,
in outputs and in gradients (as micrograd checks itself against torch)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_lstm.core.model import LSTMStack, forward_steps, lstm_layer, transposed
from streaming_lstm.core.weights import LSTMConfig, init_weights, schema


def to_keras_gate_order(w: np.ndarray) -> np.ndarray:
    """Ours: [forget, input, candidate, output]; Keras: [input, forget, candidate, output]."""
    f, i, g, o = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1)


def from_keras_gate_order(w: np.ndarray) -> np.ndarray:
    i, f, g, o = np.split(w, 4, axis=-1)
    return np.concatenate([f, i, g, o], axis=-1)


def keras_twin(cfg: LSTMConfig, weights: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    inputs = tf.keras.Input((cfg.timesteps, cfg.features_per_step))
    h = inputs
    layers = []
    for layer, hidden in enumerate(cfg.hidden):
        lstm = tf.keras.layers.LSTM(hidden, return_sequences=layer < len(cfg.hidden) - 1)
        h = lstm(h)
        layers.append(lstm)
    head = tf.keras.layers.Dense(cfg.num_classes)
    model = tf.keras.Model(inputs, head(h))
    for layer, lstm in enumerate(layers):
        lstm.set_weights([to_keras_gate_order(weights[f"lstm_{layer}/{n}"]) for n in ("kernel", "recurrent_kernel", "bias")])
    head.set_weights([weights["head/kernel"], weights["head/bias"]])
    return model, layers, head


@pytest.mark.parametrize("hidden", [(7,), (6, 5)])
def test_outputs_and_gradients_equal_keras_lstm(hidden: tuple[int, ...]) -> None:
    cfg = LSTMConfig(timesteps=5, features_per_step=3, hidden=hidden, num_classes=4, seed=3)
    rng = np.random.default_rng(0)
    weights = init_weights(cfg)
    # Random biases too, so a gate-order mistake cannot hide behind zeros.
    weights = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in weights.items()}
    x = rng.normal(size=(8, cfg.timesteps * cfg.features_per_step)).astype(np.float32)
    y = rng.integers(0, cfg.num_classes, size=8).astype(np.int32)

    ours = LSTMStack(cfg)
    ours.assign(weights)
    keras_model, layers, head = keras_twin(cfg, weights)
    x_seq = x.reshape(-1, cfg.timesteps, cfg.features_per_step)

    with tf.GradientTape() as tape:
        logits = ours(x)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    grads = dict(zip([n for n, _ in schema(cfg)], tape.gradient(loss, ours.ordered), strict=True))

    with tf.GradientTape() as tape:
        k_logits = keras_model(x_seq)
        k_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=k_logits))
    k_vars = [v for lstm in layers for v in lstm.trainable_weights] + list(head.trainable_weights)
    k_grads = tape.gradient(k_loss, k_vars)

    np.testing.assert_allclose(logits.numpy(), k_logits.numpy(), atol=1e-5, rtol=1e-5)
    assert abs(float(loss) - float(k_loss)) < 1e-5

    k_named: dict[str, np.ndarray] = {}
    it = iter(k_grads)
    for layer in range(len(hidden)):
        for n in ("kernel", "recurrent_kernel", "bias"):
            k_named[f"lstm_{layer}/{n}"] = from_keras_gate_order(next(it).numpy())
    k_named["head/kernel"] = next(it).numpy()
    k_named["head/bias"] = next(it).numpy()
    for name, g in grads.items():
        scale = max(float(np.abs(k_named[name]).max()), 1e-6)
        np.testing.assert_allclose(g.numpy() / scale, k_named[name] / scale, atol=1e-4, err_msg=name)


def test_gate_order_matters() -> None:
    """The parity test can fail: swapping two gates changes the output."""
    cfg = LSTMConfig(timesteps=3, features_per_step=2, hidden=(4,), num_classes=3, seed=1)
    rng = np.random.default_rng(1)
    w = {k: (v + rng.normal(0, 0.5, v.shape)).astype(np.float32) for k, v in init_weights(cfg).items()}
    x = rng.normal(size=(5, 6)).astype(np.float32)
    m = LSTMStack(cfg)
    m.assign(w)
    a = m(x).numpy()
    w2 = dict(w)
    w2["lstm_0/kernel"] = to_keras_gate_order(w["lstm_0/kernel"])
    m.assign(w2)
    assert not np.allclose(a, m(x).numpy(), atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    timesteps=st.integers(1, 6),
    features=st.integers(1, 4),
    hidden=st.integers(1, 6),
    sequence=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_hand_written_backward_equals_autodiff(batch: int, timesteps: int, features: int, hidden: int, sequence: bool, seed: int) -> None:
    """The layer's hand-written backward (one matmul per weight over all timesteps) against
    TensorFlow's autodiff of the same forward equations, in float64, on random shapes."""
    rng = np.random.default_rng(seed)
    xs = tf.constant(rng.normal(size=(timesteps, batch, features)))  # time-major
    kernel, recurrent, bias = (tf.constant(rng.normal(0, 0.6, shape)) for shape in ((features, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,)))
    upstream = tf.constant(rng.normal(size=(timesteps, batch, hidden) if sequence else (batch, hidden)))  # dL/d(output)
    inputs = [xs, kernel, recurrent, bias]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        ours = lstm_layer(xs, kernel, recurrent, bias, sequence=sequence, input_grad=True)
        hs = forward_steps(xs, kernel, recurrent, bias).hs
        reference = tf.stack(hs) if sequence else hs[-1]
        loss, ref_loss = tf.reduce_sum(ours * upstream), tf.reduce_sum(reference * upstream)
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())
    for name, g, ref in zip(("x", "kernel", "recurrent_kernel", "bias"), tape.gradient(loss, inputs), tape.gradient(ref_loss, inputs), strict=True):
        np.testing.assert_allclose(g.numpy(), ref.numpy(), atol=1e-6, rtol=1e-6, err_msg=name)


def test_first_layer_skips_the_input_gradient() -> None:
    """The first layer's input is data: no gradient is computed for it, the weights' still are."""
    xs = tf.constant(np.ones((3, 2, 1)), tf.float32)  # (T, B, F)
    w = [tf.constant(np.full(s, 0.1), tf.float32) for s in ((1, 8), (2, 8), (8,))]
    with tf.GradientTape() as tape:
        tape.watch([xs, *w])
        out = lstm_layer(xs, *w, sequence=False, input_grad=False)
    grads = tape.gradient(out, [xs, *w])
    assert grads[0] is None
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[1:])


def grappler_optimised(fn) -> list[tuple[str, bool | None]]:  # type: ignore[no-untyped-def]
    """The ops of ``fn``'s graph after Grappler's default passes, and each MatMul's transpose_b."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.framework import meta_graph
    from tensorflow.python.grappler import tf_optimizer

    cf = tf.function(fn).get_concrete_function(tf.TensorSpec((10, 8)), tf.TensorSpec((4, 8)))
    graph = meta_graph.create_meta_graph_def(graph=cf.graph)
    graph.collection_def["train_op"].node_list.value.extend(t.name.split(":")[0] for t in cf.outputs)
    optimised = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), graph)
    return [(n.op, n.attr["transpose_b"].b if n.op == "MatMul" else None) for n in optimised.node]


def test_the_backward_multiplies_by_a_transposed_copy_that_grappler_keeps() -> None:
    """``transposed`` survives Grappler: the MatMul reads a transposed copy (Eigen's fast path on
    the backward's shapes), where a bare ``tf.transpose`` is folded into ``transpose_b``."""
    kept = grappler_optimised(lambda a, b: tf.matmul(a, transposed(b)))
    assert ("MatMul", False) in kept and ("Transpose", None) in kept
    folded = grappler_optimised(lambda a, b: tf.matmul(a, tf.transpose(b)))
    assert ("MatMul", True) in folded and ("Transpose", None) not in folded
    a, b = tf.random.normal((10, 8), seed=1), tf.random.normal((4, 8), seed=2)
    np.testing.assert_allclose(tf.function(lambda: tf.matmul(a, transposed(b)))().numpy(), tf.matmul(a, b, transpose_b=True).numpy(), rtol=1e-6, atol=1e-6)
