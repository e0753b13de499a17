"""The pure training function: deterministic under a seed, and it learns."""

import numpy as np
import pytest

from streaming_lstm import training
from streaming_lstm.normalizer import NormStats
from streaming_lstm.weights import LSTMConfig, init_weights

CFG = LSTMConfig(timesteps=4, features_per_step=1, hidden=(8,), num_classes=3, seed=1)


def toy(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    x = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
    return x.astype(np.float32), y


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_same_seed_same_weights_and_it_learns(optimizer: str) -> None:
    spec = training.TrainSpec(CFG, optimizer, 0.05 if optimizer == "sgd" else 0.01, 5.0, 1e-4)
    x, y = toy()
    xn = NormStats.of(x).transform(x)
    w0 = init_weights(CFG)
    before = training.score(w0, xn, y, spec)
    a, loss_a = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=3)
    b, loss_b = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=3)
    c, _ = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert loss_a == loss_b
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    after = training.score(a, xn, y, spec)
    assert after.loss < before.loss
    assert after.accuracy > 0.9


def test_train_partition_scores_before_training() -> None:
    spec = training.TrainSpec(CFG, "adam", 0.01, 5.0, 0.0)
    x, y = toy()
    w0 = init_weights(CFG)
    empty = NormStats.empty(4)
    r = training.train_partition(0, w0, empty, x, y, spec, epochs=5, batch_size=10, seed=1)
    # The prequential score is the incoming model's, on the incoming normaliser.
    expected = training.score(w0, empty.transform(x), y, spec)
    assert (r.prequential.correct, r.prequential.loss_sum) == (expected.correct, pytest.approx(expected.loss_sum, rel=1e-6))
    assert r.rows == len(x) and r.norm.count == len(x)
    assert training.score(r.weights, NormStats.of(x).transform(x), y, spec).loss < expected.loss


def test_short_last_batch_and_other_sizes_do_not_retrace() -> None:
    spec = training.TrainSpec(CFG, "adam", 0.01, 0.0, 0.0)
    x, y = toy(23)
    training.fit(init_weights(CFG), x, y, spec, epochs=1, batch_size=10, seed=0)
    model = training.compiled(spec)
    before = model.train_steps.experimental_get_tracing_count()
    training.fit(init_weights(CFG), x[:17], y[:17], spec, epochs=2, batch_size=4, seed=0)
    assert model.train_steps.experimental_get_tracing_count() == before


def test_a_partition_task_with_only_its_model_row_returns_no_rows() -> None:
    """A batch smaller than its keys leaves some tasks only their model row (keying.keyed_rows);
    no frames at all (an unplanned task) gives no rows either; two model rows are refused."""
    from pathlib import Path

    import pandas as pd

    from streaming_lstm import executor
    from streaming_lstm.config import load_config
    from streaming_lstm.normalizer import NormStats

    cfg = load_config(Path(__file__).resolve().parent.parent / "conf" / "iris.toml")
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    blob = executor.encode_model(init_weights(spec.model), NormStats.empty(spec.model.num_features))
    feats = cfg.data.feature_columns()
    model_row = pd.DataFrame({"key": [-1], "_idx": [-1], **{f: [np.nan] for f in feats}, "label": [-1], "_model": [blob]})
    kwargs = {"config_dict": cfg.to_dict(), "batch_id": 0, "threads": 1, "epochs": 1}
    assert list(executor.train_frames(iter([]), **kwargs)) == []
    assert list(executor.train_frames(iter([model_row]), **kwargs)) == []
    data_row = pd.DataFrame({"key": [0], "_idx": [0], **{f: [1.0] for f in feats}, "label": [1], "_model": [None]})
    # Mean aggregation (the default): the key's figures, then its task's fold (results.Fold).
    key_row, fold_row = list(executor.train_frames(iter([model_row, data_row]), **kwargs))
    assert int(key_row["rows"].iloc[0]) == 1 and int(key_row["key"].iloc[0]) == 0 and key_row["weights"].iloc[0] == b""
    assert int(fold_row["key"].iloc[0]) == -1 and int(fold_row["rows"].iloc[0]) == 1
    with pytest.raises(RuntimeError, match="2 model rows"):
        list(executor.train_frames(iter([model_row, model_row, data_row]), **kwargs))
