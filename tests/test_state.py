"""The driver-side state: the averaging arithmetic, exactly-once batch ids, restarts, rejection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.weights import LSTMConfig, flatten, init_weights, unflatten
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer.state import TrainerState, Update, aggregate, running_average

ROOT = Path(__file__).resolve().parent.parent


def cfg_with(**stream: object):  # type: ignore[no-untyped-def]
    return load_config(ROOT / "conf" / "iris.toml", {"model.hidden": "3", **{f"stream.{k}": v for k, v in stream.items()}})


def update(state: TrainerState, rows: int, seed: int, key: int = 0) -> Update:
    w = init_weights(state.lstm, seed=seed)
    x = np.random.default_rng(seed).normal(size=(max(rows, 0), 4))
    return Update(rows, w, NormStats.of(x) if rows else NormStats.empty(4), key)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=3),
    st.integers(0, 10_000),
)
def test_update_equals_the_formula(counts: list[int], decay: float, prior_batches: int, seed: int) -> None:
    state = TrainerState(cfg_with(decay=decay), store=None)
    for b in range(prior_batches):
        state.apply(b, [update(state, 7 + b, seed + b)])
    prev_w, prev_n = flatten(state.weights), state.running_n
    ups = [update(state, n, seed + 100 + k, key=k) for k, n in enumerate(counts)]
    state.apply(prior_batches, ups)
    n_sum = float(sum(counts))
    num = decay * prev_n * prev_w + sum(n * flatten(u.weights) for n, u in zip(counts, ups, strict=True))
    den = decay * prev_n + n_sum
    expected = num / den if den > 0 else prev_w
    np.testing.assert_allclose(flatten(state.weights), expected, atol=1e-7, rtol=0)
    assert state.running_n == pytest.approx(den)


def test_a_batch_without_rows_keeps_weights_and_decays_their_mass() -> None:
    state = TrainerState(cfg_with(decay=0.5), store=None)
    state.apply(0, [update(state, 8, 1)])
    w = flatten(state.weights)
    state.apply(1, [update(state, 0, 2)])
    np.testing.assert_array_equal(flatten(state.weights), w)
    assert state.running_n == 4.0 and state.last_batch_id == 1


def test_decay_extremes() -> None:
    prev, new = np.array([1.0, 1.0]), np.array([3.0, 5.0])
    w, n = running_average(prev, 10.0, new * 2, 2.0, 1.0)  # cumulative mean over all 12 rows
    np.testing.assert_allclose(w, (10 * prev + 2 * new) / 12)
    assert n == 12.0
    w, n = running_average(prev, 10.0, new * 2, 2.0, 0.0)  # only the newest batch
    np.testing.assert_allclose(w, new)
    assert n == 2.0


def test_empty_partitions_contribute_nothing() -> None:
    state = TrainerState(cfg_with(decay=0.0), store=None)
    a = update(state, 10, 1)
    state.apply(0, [a, update(state, 0, 2, key=1)])
    np.testing.assert_allclose(flatten(state.weights), flatten(a.weights), atol=1e-7)
    assert state.rows_seen == 10


def test_robust_aggregations() -> None:
    v = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [1000.0, -1000.0]])
    rows = np.array([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(aggregate(v, rows, "median"), [2.5, 15.0])
    np.testing.assert_allclose(aggregate(v, rows, "trimmed_mean", 0.25), [2.5, 15.0])
    np.testing.assert_allclose(aggregate(v, np.array([3.0, 1.0, 0.0, 0.0]), "mean"), [1.25, 12.5])


def test_each_batch_id_is_applied_once() -> None:
    state = TrainerState(cfg_with(), store=None)
    assert state.apply(0, [update(state, 5, 1)]) is not None
    w = flatten(state.weights)
    assert state.apply(0, [update(state, 5, 2)]) is None
    np.testing.assert_array_equal(flatten(state.weights), w)
    assert state.rows_seen == 5 and state.version == 1


def test_non_finite_and_exploding_updates_are_rejected(tmp_path: Path) -> None:
    state = TrainerState(cfg_with(max_update_norm=50.0), store=None)
    good = update(state, 10, 1)
    bad = update(state, 10, 2, key=1)
    bad.weights["head/bias"][0] = np.nan
    huge = update(state, 10, 3, key=2)
    huge.weights["lstm_0/kernel"][:] = 1e6
    applied = state.apply(0, [good, bad, huge])
    assert applied is not None and applied.partitions_rejected == 2 and applied.rows_trained == 10
    assert all(np.isfinite(v).all() for v in state.weights.values())
    np.testing.assert_allclose(flatten(state.weights), flatten(good.weights), atol=1e-7)


def test_restart_resumes_versions_and_refuses_another_shape(tmp_path: Path) -> None:
    cfg = cfg_with(decay=0.5)
    store = ModelStore(tmp_path / "model")
    state = TrainerState.open(cfg, store)
    for b in range(3):
        state.apply(b, [update(state, 4, b)])
    again = TrainerState.open(cfg, store)
    assert (again.version, again.last_batch_id, again.rows_seen) == (3, 2, 12)
    assert again.running_n == pytest.approx(state.running_n)
    np.testing.assert_array_equal(flatten(again.weights), flatten(state.weights))
    np.testing.assert_array_equal(flatten(again.training_weights()), flatten(state.training_weights()))
    assert again.is_applied(2) and not again.is_applied(3)
    again.apply(3, [update(again, 4, 9)])
    assert store.versions()[-1] == 4
    other = load_config(ROOT / "conf" / "iris.toml", {"model.hidden": "5"})
    with pytest.raises(ValueError, match="use another --checkpoint"):
        TrainerState.open(other, store)


def test_train_from_running_or_batch() -> None:
    state = TrainerState(cfg_with(decay=0.5, train_from="batch"), store=None)
    u = update(state, 10, 5)
    state.apply(0, [update(state, 10, 4)])
    state.apply(1, [u])
    np.testing.assert_allclose(flatten(state.training_weights()), flatten(u.weights), atol=1e-7)
    assert not np.allclose(flatten(state.weights), flatten(u.weights))
    state2 = TrainerState(cfg_with(decay=0.5, train_from="running"), store=None)
    state2.apply(0, [update(state2, 10, 4)])
    state2.apply(1, [u])
    np.testing.assert_array_equal(flatten(state2.training_weights()), flatten(state2.weights))


@pytest.mark.parametrize(("server", "running"), [("none", True), ("adam", False), ("momentum", False)])
def test_train_from_auto_is_the_running_average_unless_a_server_optimiser_steps(server: str, running: bool) -> None:
    """A server optimiser's model is what its next round trains from; plain averaging trains the
    next batch from the running average."""
    state = TrainerState(cfg_with(decay=0.5, server_optimizer=server), store=None)
    assert state.cfg.stream.train_from == "auto"
    state.apply(0, [update(state, 10, 4)])
    state.apply(1, [update(state, 10, 5)])
    assert not np.allclose(flatten(state.weights), flatten(state.next_weights))
    expected = state.weights if running else state.next_weights
    np.testing.assert_array_equal(flatten(state.training_weights()), flatten(expected))


def test_train_from_auto_is_the_batch_aggregate_for_a_forecast() -> None:
    solar = load_config(ROOT / "conf" / "solar.toml")
    assert solar.data.task == "forecast" and solar.stream.train_from == "auto"
    assert not solar.trains_from_running()
    assert load_config(ROOT / "conf" / "solar.toml", {"stream.train_from": "running"}).trains_from_running()
    assert cfg_with().trains_from_running() and not cfg_with(train_from="batch").trains_from_running()


def test_unflatten_keeps_names() -> None:
    w = init_weights(LSTMConfig(4, 1, (3,), 3))
    assert list(unflatten(flatten(w), w)) == list(w)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=8), st.integers(1, 4), st.integers(0, 10_000))
def test_folded_sums_equal_per_key_weights(counts: list[int], tasks: int, seed: int) -> None:
    """Tasks that fold their keys (key k in task k mod T) give the state of per-key updates."""
    from streaming_lstm.core.results import Fold

    per_key, folded = TrainerState(cfg_with(decay=0.7), store=None), TrainerState(cfg_with(decay=0.7), store=None)
    ups = [update(per_key, n, seed + k, key=k) for k, n in enumerate(counts)]
    per_key.apply(0, ups)
    folds = []
    for t in range(min(tasks, len(ups))):
        mine = [u for u in ups if u.key % tasks == t]
        total = sum((u.rows * flatten(u.weights) for u in mine), np.zeros_like(flatten(ups[0].weights)))
        folds.append(Fold(mine[0].key, sum(u.rows for u in mine), len(mine), total))
    applied = folded.apply(0, [], folds=folds, folded_norms=[u.norm for u in ups])
    assert applied is not None and applied.partitions_used == len(ups) and applied.rows_trained == sum(counts)
    np.testing.assert_allclose(flatten(folded.weights), flatten(per_key.weights), atol=1e-6, rtol=0)
    np.testing.assert_allclose(folded.norm.mean, per_key.norm.mean, rtol=1e-12)
    assert folded.running_n == pytest.approx(per_key.running_n)


def test_folds_are_for_mean_aggregation_only() -> None:
    from streaming_lstm.core.results import Fold

    state = TrainerState(cfg_with(aggregation="median"), store=None)
    with pytest.raises(ValueError, match="mean aggregation only"):
        state.apply(0, [], folds=[Fold(0, 3, 1, flatten(state.weights) * 3)])


def test_a_task_folds_its_keys_and_refuses_a_bad_one_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """executor.train_frames with mean aggregation: one figures row per key without weights, one
    fold row; a key whose weights are not finite, or moved too far, is refused by the task and named."""
    import dataclasses

    import pandas as pd

    from streaming_lstm.core import training
    from streaming_lstm.core.results import decode
    from streaming_lstm.trainer import executor

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.max_update_norm": 100.0, "train.warmup_epochs": 0})
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    start = init_weights(spec.model, seed=1)
    blob = executor.encode_model(start, NormStats.empty(4))
    real = training.train_partition

    def sabotaged(key: int, *args: object, **kwargs: object) -> object:
        result = real(key, *args, **kwargs)  # type: ignore[arg-type]
        if key == 1:
            return dataclasses.replace(result, weights={k: v * np.nan for k, v in result.weights.items()})
        if key == 2:
            return dataclasses.replace(result, weights={k: v * 1e4 for k, v in result.weights.items()})
        return result

    monkeypatch.setattr(training, "train_partition", sabotaged)
    rng = np.random.default_rng(0)
    feats = cfg.data.feature_columns()
    frame = pd.DataFrame(
        {"key": np.repeat([0, 1, 2, 3], 5), "_idx": np.arange(20), **{f: rng.normal(5, 1, 20) for f in feats}, "label": rng.integers(0, 3, 20)}
    )
    rows = pd.concat(executor.train_frames(iter([frame]), config_dict=cfg.to_dict(), batch_id=0, threads=1, epochs=1, model_blob=blob))
    keys, folds = decode(rows.to_dict("records"), spec.model)
    assert [r.key for r in keys] == [0, 1, 2, 3] and all(r.folded for r in keys)
    assert "non-finite" in str(keys[1].rejected) and "max_update_norm" in str(keys[2].rejected)
    assert keys[0].rejected is None and keys[3].rejected is None
    (fold,) = folds
    assert (fold.first_key, fold.rows, fold.keys) == (0, 10, 2)
    state = TrainerState(cfg, store=None)
    applied = state.apply(0, [], folds=folds, folded_norms=[keys[0].norm, keys[3].norm], rejected=[str(keys[1].rejected), str(keys[2].rejected)])
    assert applied is not None and applied.partitions_rejected == 2 and applied.rows_trained == 10
    assert np.isfinite(flatten(state.weights)).all() and float(np.abs(flatten(state.weights)).max()) < 100
