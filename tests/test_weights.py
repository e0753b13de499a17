import io
import pickle

import numpy as np
import pytest

from streaming_lstm.core.weights import LSTMConfig, WeightsError, flatten, init_weights, schema, unflatten, weights_from_bytes, weights_to_bytes

CFG = LSTMConfig(timesteps=4, features_per_step=1, hidden=(8, 6), num_classes=3, seed=7)


def test_schema_is_stable_and_named() -> None:
    names = [n for n, _ in schema(CFG)]
    assert names == [
        "lstm_0/kernel",
        "lstm_0/recurrent_kernel",
        "lstm_0/bias",
        "lstm_1/kernel",
        "lstm_1/recurrent_kernel",
        "lstm_1/bias",
        "head/kernel",
        "head/bias",
    ]
    assert dict(schema(CFG))["lstm_1/kernel"] == (8, 24)


def test_init_is_seeded_and_forget_bias_is_one() -> None:
    a, b = init_weights(CFG), init_weights(CFG)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(init_weights(CFG, seed=8)["lstm_0/kernel"], a["lstm_0/kernel"])
    np.testing.assert_array_equal(a["lstm_0/bias"][:8], 1.0)  # forget gate
    np.testing.assert_array_equal(a["lstm_0/bias"][8:], 0.0)


def test_bytes_round_trip() -> None:
    w = init_weights(CFG)
    back = weights_from_bytes(weights_to_bytes(w), CFG)
    assert list(back) == list(w)
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])
        assert back[k].dtype == np.float32
    np.testing.assert_array_equal(flatten(unflatten(flatten(w), w)), flatten(w))


def test_schema_mismatch_names_the_tensor() -> None:
    w = init_weights(CFG)
    w["lstm_1/bias"] = np.zeros(5, np.float32)
    with pytest.raises(WeightsError, match=r"tensor 'lstm_1/bias' has shape \(5,\), the model expects \(24,\)"):
        weights_from_bytes(weights_to_bytes(w), CFG)
    del w["lstm_1/bias"]
    with pytest.raises(WeightsError, match="missing tensor 'lstm_1/bias'"):
        weights_from_bytes(weights_to_bytes(w), CFG)


def test_bad_bytes_and_pickles_are_refused() -> None:
    with pytest.raises(WeightsError, match="not a valid weights file"):
        weights_from_bytes(b"definitely not an npz", CFG)
    with pytest.raises(WeightsError, match="not a valid weights file"):
        weights_from_bytes(weights_to_bytes(init_weights(CFG))[:100], CFG)
    # An object array inside an npz is a pickle: refused, never loaded.
    buf = io.BytesIO()
    np.savez(buf, **{"head/bias": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(WeightsError, match="refusing pickled data"):
        weights_from_bytes(buf.getvalue(), CFG)
    with pytest.raises(WeightsError):
        weights_from_bytes(pickle.dumps(init_weights(CFG)), CFG)
