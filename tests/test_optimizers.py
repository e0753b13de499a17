"""The hand-written optimisers (training.py) equal tf.keras.optimizers: same weights, same
gradients, several steps (as the LSTM itself is checked against tf.keras.layers.LSTM)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from streaming_lstm.core import compiled, training
from streaming_lstm.core.model import LSTMStack
from streaming_lstm.core.weights import LSTMConfig, init_weights

CFG = LSTMConfig(timesteps=3, features_per_step=2, hidden=(5, 4), num_classes=3, seed=11)
STEPS = 6


def keras_optimizer(name: str, lr: float) -> tf.keras.optimizers.Optimizer:
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate=lr, beta_1=compiled.ADAM_BETA1, beta_2=compiled.ADAM_BETA2, epsilon=compiled.EPSILON)
    if name == "rmsprop":
        return tf.keras.optimizers.RMSprop(learning_rate=lr, rho=compiled.RMSPROP_RHO, epsilon=compiled.EPSILON, momentum=0.0, centered=False)
    return tf.keras.optimizers.SGD(learning_rate=lr)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_optimizer_steps_equal_keras(name: str) -> None:
    rng = np.random.default_rng(5)
    w0 = {k: (v + rng.normal(0, 0.2, v.shape)).astype(np.float32) for k, v in init_weights(CFG).items()}
    batches = [(rng.normal(size=(7, CFG.num_features)).astype(np.float32), rng.integers(0, CFG.num_classes, 7).astype(np.int32)) for _ in range(STEPS)]
    lr = 0.01
    spec = training.TrainSpec(CFG, name, lr, clip_norm=0.0, l2=0.0)  # no clipping, no L2: the optimiser alone

    ours = training.compiled(spec)
    ours.net.assign(w0)
    ours.reset_optimizer()
    # All steps in one call of the traced loop that fit() uses: step k trains rows order[k].
    xs, ys = np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    order = np.arange(len(xs), dtype=np.int32).reshape(STEPS, 7)
    ours.train_steps(7)(xs, ys, order, np.ones(order.shape, np.float32))
    got = ours.net.get()

    net = LSTMStack(CFG)
    net.assign(w0)
    opt = keras_optimizer(name, lr)
    for x, y in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=net(x)))
        grads = tape.gradient(loss, net.ordered)
        opt.apply_gradients(zip(grads, net.ordered, strict=True))
    want = net.get()

    moved = max(float(np.abs(want[k] - w0[k]).max()) for k in w0)
    assert moved > 1e-3, f"the steps changed the weights ({moved:.1e}), far beyond the tolerance"
    diff = max(float(np.abs(got[k] - want[k]).max()) for k in w0)
    assert diff <= 1e-6, f"{name}: max abs difference to Keras after {STEPS} steps: {diff:.2e}"


def test_padded_short_mini_batches_equal_keras_on_the_real_rows_alone() -> None:
    """fit() pads a short mini-batch to its static size with masked rows (training.mini_batches):
    the steps equal Keras's Adam on the unpadded mini-batches (17 rows in 7 + 7 + 3; 3 rows in one
    mini-batch padded to 4)."""
    spec = training.TrainSpec(CFG, "adam", 0.01, clip_norm=0.0, l2=0.0)
    rng = np.random.default_rng(8)
    w0 = {k: (v + rng.normal(0, 0.2, v.shape)).astype(np.float32) for k, v in init_weights(CFG).items()}
    for rows, batch in [(17, 7), (3, 7)]:
        x = rng.normal(size=(rows, CFG.num_features)).astype(np.float32)
        y = rng.integers(0, CFG.num_classes, rows).astype(np.int32)
        got, _ = training.fit(w0, x, y, spec, epochs=2, batch_size=batch, seed=4)
        net = LSTMStack(CFG)
        net.assign(w0)
        opt = keras_optimizer("adam", 0.01)
        perms = np.random.default_rng(4)
        for _ in range(2):
            perm = perms.permutation(rows)
            for start in range(0, rows, batch):
                idx = perm[start : start + batch]
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[idx], logits=net(x[idx])))
                grads = tape.gradient(loss, net.ordered)
                opt.apply_gradients(zip(grads, net.ordered, strict=True))
        want = net.get()
        diff = max(float(np.abs(got[k] - want[k]).max()) for k in w0)
        assert diff <= 1e-6, f"{rows} rows in mini-batches of {batch}: max abs difference to Keras {diff:.2e}"
