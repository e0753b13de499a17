"""The rehearsal buffer (core/rehearsal.py): which rows it keeps, which key replays which, that it
travels with the model (store and broadcast), and that a partition trains on it but scores only its
new rows. Replay exactness with it on is the kill tests' (test_faults.py, test_events_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streaming_lstm.core import training
from streaming_lstm.core.config import decay_for_half_life
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal, tail
from streaming_lstm.core.results import PartitionResult, decode
from streaming_lstm.core.weights import LSTMConfig, init_weights
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer import executor
from streaming_lstm.trainer.state import TrainerState, Update

ROOT = Path(__file__).resolve().parent.parent
CFG = LSTMConfig(timesteps=4, features_per_step=1, hidden=(8,), num_classes=3, seed=1)


def rows(start: int, n: int, features: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose first feature is their number: which rows a buffer holds is readable."""
    x = np.zeros((n, features))
    x[:, 0] = np.arange(start, start + n)
    return x, (np.arange(start, start + n) % 3).astype(np.int32)


def test_each_key_adds_its_newest_rows_and_the_buffer_keeps_the_newest_limit() -> None:
    buffer = Rehearsal.empty(4, 0)
    assert len(buffer) == 0 and buffer.y.dtype == np.int32
    # Two keys of a 10-row batch, limit 6: each key gives its last ceil(6 / 2) = 3 rows.
    key0, key1 = tail(*rows(0, 5), 6, 2), tail(*rows(5, 5), 6, 2)
    assert key0.x[:, 0].tolist() == [2, 3, 4] and key1.x[:, 0].tolist() == [7, 8, 9]
    buffer = buffer.extended([key0, key1], 6)
    assert buffer.x[:, 0].tolist() == [2, 3, 4, 7, 8, 9] and buffer.y.tolist() == [2, 0, 1, 1, 2, 0]
    # The next batch pushes the oldest out; a key with fewer rows than its share gives them all.
    buffer = buffer.extended([tail(*rows(10, 2), 6, 2), tail(*rows(12, 4), 6, 2)], 6)
    assert buffer.x[:, 0].tolist() == [9, 10, 11, 13, 14, 15]
    # Key k of P replays every P-th row from k: the keys' shares partition the buffer.
    shares = [buffer.share(k, 4).x[:, 0].tolist() for k in range(4)]
    assert shares == [[9, 14], [10, 15], [11], [13]]
    assert tail(*rows(0, 5), 0, 2).x.shape == (0, 4)


def test_a_malformed_buffer_is_refused_and_forecast_buffers_hold_targets() -> None:
    with pytest.raises(ValueError, match="rehearsal buffer"):
        Rehearsal.from_arrays({"rehearsal/x": np.zeros((3, 2)), "rehearsal/y": np.zeros(2)})
    assert Rehearsal.from_arrays({}) is None
    forecast = Rehearsal.empty(6, 2)
    assert forecast.y.shape == (0, 2) and forecast.y.dtype == np.float64


def test_the_buffer_is_saved_with_each_version_and_reopened(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "conf" / "iris.toml", {"train.rehearsal_rows": 5})
    state = TrainerState(cfg, ModelStore(tmp_path))
    f = state.lstm.num_features
    w = init_weights(state.lstm)
    x, y = rows(0, 4, f)
    recent = [tail(x[:2], y[:2], 5, 2), tail(x[2:], y[2:], 5, 2)]
    state.apply(0, [Update(2, w, NormStats.of(x[:2]), 0), Update(2, w, NormStats.of(x[2:]), 1)], recent=recent)
    x2, y2 = rows(4, 6, f)
    state.apply(1, [Update(6, w, NormStats.of(x2), 0)], recent=[tail(x2, y2, 5, 2)])
    assert state.rehearsal.x[:, 0].tolist() == [2, 3, 7, 8, 9]  # newest 5; the one key gave its last ceil(5 / 2)
    reopened = TrainerState.open(cfg, ModelStore(tmp_path))
    np.testing.assert_array_equal(reopened.rehearsal.x, state.rehearsal.x)
    np.testing.assert_array_equal(reopened.rehearsal.y, state.rehearsal.y)
    # A restart with a smaller buffer keeps the newest rows; with 0 it keeps none (nor saves any).
    smaller = TrainerState.open(load_config(ROOT / "conf" / "iris.toml", {"train.rehearsal_rows": 2}), ModelStore(tmp_path))
    assert smaller.rehearsal.x[:, 0].tolist() == [8, 9]
    assert len(TrainerState.open(load_config(ROOT / "conf" / "iris.toml", {"train.rehearsal_rows": 0}), ModelStore(tmp_path)).rehearsal) == 0
    off = TrainerState(load_config(ROOT / "conf" / "iris.toml", {"train.rehearsal_rows": 0}), None)
    off.apply(0, [Update(2, w, NormStats.of(x[:2]), 0)], recent=recent)
    assert len(off.rehearsal) == 0


def test_a_partition_trains_on_its_replay_rows_but_scores_only_its_new_rows() -> None:
    spec = training.TrainSpec(CFG, "adam", 0.01, 5.0, 0.0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60).astype(np.int32)
    x = rng.normal(size=(60, 4)) + 2.0 * y[:, None]
    w0, empty = init_weights(CFG), NormStats.empty(4)
    replay = Rehearsal(x[20:], y[20:])
    plain = training.train_partition(0, w0, empty, x[:20], y[:20], spec, epochs=3, batch_size=10, seed=1)
    rehearsed = training.train_partition(0, w0, empty, x[:20], y[:20], spec, epochs=3, batch_size=10, seed=1, replay=replay)
    again = training.train_partition(0, w0, empty, x[:20], y[:20], spec, epochs=3, batch_size=10, seed=1, replay=replay)
    assert rehearsed.rows == 20 and rehearsed.prequential == plain.prequential  # scored: the new rows only
    assert rehearsed.norm.count == 20  # the replayed rows were counted when they were new
    assert any(not np.array_equal(rehearsed.weights[k], plain.weights[k]) for k in w0)
    for k in w0:
        np.testing.assert_array_equal(rehearsed.weights[k], again.weights[k])
    # It is what training on both sets of rows, normalised with the new rows' statistics, gives.
    norm = empty.merge(NormStats.of(x[:20]))
    direct, _ = training.fit(w0, norm.transform(np.concatenate([x[:20], x[20:]])), np.concatenate([y[:20], y[20:]]), spec, epochs=3, batch_size=10, seed=1)
    for k in w0:
        np.testing.assert_array_equal(rehearsed.weights[k], direct[k])


def test_a_task_replays_its_keys_share_and_returns_its_newest_rows() -> None:
    cfg = load_config(ROOT / "conf" / "iris.toml", {"train.rehearsal_rows": 4, "stream.partitions": 2, "stream.aggregation": "trimmed_mean"})
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    feats = cfg.data.feature_columns()
    bx, by = rows(100, 4, len(feats))
    blob = executor.encode_model(init_weights(spec.model), NormStats.empty(spec.model.num_features), Rehearsal(bx, by))
    data = pd.DataFrame({"key": [0, 1, 0, 1, 0, 1], "_idx": list(range(6)), **{f: np.arange(6.0) for f in feats}, "label": [0, 1, 2, 0, 1, 2]})
    out = list(executor.train_frames(iter([data]), config_dict=cfg.to_dict(), batch_id=0, threads=1, epochs=1, model_blob=blob))
    results, _ = decode([r.iloc[0].to_dict() for r in out], spec.model)
    assert [r.key for r in results] == [0, 1] and [r.rows for r in results] == [3, 3]
    recent = [r.recent for r in results]
    assert all(isinstance(r, Rehearsal) for r in recent)
    assert [r.x[:, 0].tolist() for r in recent if r is not None] == [[2.0, 4.0], [3.0, 5.0]]  # each key's last 2 rows
    assert [r.y.tolist() for r in recent if r is not None] == [[2, 1], [0, 2]]
    # Without the buffer, the same task trains other weights (it replayed its share of 4 rows).
    plain = executor.encode_model(init_weights(spec.model), NormStats.empty(spec.model.num_features))
    out2 = list(executor.train_frames(iter([data]), config_dict=cfg.to_dict(), batch_id=0, threads=1, epochs=1, model_blob=plain))
    results2, _ = decode([r.iloc[0].to_dict() for r in out2], spec.model)
    assert any(not np.array_equal(results[0].weights[k], results2[0].weights[k]) for k in results[0].weights)
    assert isinstance(PartitionResult.from_row(out2[0].iloc[0].to_dict(), spec.model).recent, Rehearsal)


def test_scoring_in_the_training_steps_scores_only_the_new_rows_and_a_replayed_task_trains_the_same() -> None:
    """train.prequential = "step": the score counts the new rows, not the rehearsal's; the first
    epoch meets the new rows first, so the weights differ from "batch"'s, and a replay of the same
    task (same batch id, model and rows) trains them again bit for bit (the kill tests' equality)."""
    frames = []
    for mode in ("batch", "step", "step"):
        over = {"train.rehearsal_rows": 40, "stream.partitions": 2, "stream.aggregation": "median", "train.prequential": mode}
        cfg = load_config(ROOT / "conf" / "iris.toml", over)
        spec = training.TrainSpec.from_app(cfg, streaming=True)
        feats = cfg.data.feature_columns()
        bx, by = rows(100, 40, len(feats))
        blob = executor.encode_model(init_weights(spec.model), NormStats.empty(spec.model.num_features), Rehearsal(bx, by))
        data = pd.DataFrame({"key": [0, 1] * 15, "_idx": list(range(30)), **{f: np.arange(30.0) % 7 for f in feats}, "label": [0, 1, 2] * 10})
        out = list(executor.train_frames(iter([data]), config_dict=cfg.to_dict(), batch_id=3, threads=1, epochs=2, model_blob=blob))
        frames.append(decode([r.iloc[0].to_dict() for r in out], spec.model)[0])
    (batch, step, again) = frames
    assert [r.prequential.rows for r in step] == [r.prequential.rows for r in batch] == [15, 15]
    assert [r.prequential for r in step] != [r.prequential for r in batch]
    for a, b, c in zip(batch, step, again, strict=True):
        assert any(not np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
        assert all(np.array_equal(b.weights[k], c.weights[k]) for k in b.weights) and b.prequential == c.prequential


def run_batches(state: TrainerState, batches: range, seed: int = 0) -> list[bool]:
    """Apply batches of 20 rows (key 0 and 1): 10 % errors before batch 6, 90 % from it on (a
    drift ADWIN sees); returns the alarms. Each batch's rows and weights depend on its id only."""
    alarms = []
    for b in batches:
        rng = np.random.default_rng(seed + b)
        x, y = rng.normal(size=(20, state.lstm.num_features)), rng.integers(0, 3, 20).astype(np.int32)
        x[:, 0] = np.arange(20 * b, 20 * b + 20)  # the row's number: which rows the buffer holds is readable
        alarm, _ = state.watch_drift(20, 2.0 if b < 6 else 18.0)
        w = {k: v + 0.01 * b for k, v in init_weights(state.lstm).items()}
        ups = [Update(10, w, NormStats.of(x[:10]), 0), Update(10, w, NormStats.of(x[10:]), 1)]
        state.apply(b, ups, recent=[tail(x[:10], y[:10], 100, 2), tail(x[10:], y[10:], 100, 2)])
        alarms.append(alarm)
    return alarms


def test_a_drift_alarm_empties_the_buffer_and_a_replay_after_a_crash_decides_the_same(tmp_path: Path) -> None:
    over = {"train.rehearsal_rows": 100, "stream.drift_half_life_batches": 1.0, "stream.drift_batches": 2}
    cfg = load_config(ROOT / "conf" / "iris.toml", over)
    reference = TrainerState(cfg, ModelStore(tmp_path / "reference"))
    alarms = run_batches(reference, range(10))
    first = alarms.index(True)
    assert first >= 6, alarms
    # The buffer restarted at the alarm: it holds that batch's rows and later ones only.
    assert reference.rehearsal.x[:, 0].min() >= 20 * first, reference.rehearsal.x[:, 0]
    kept = TrainerState(load_config(ROOT / "conf" / "iris.toml", {**over, "stream.drift_forget_rehearsal": False}), None)
    run_batches(kept, range(10))
    assert kept.rehearsal.x[:, 0].min() < 20 * first  # without the lever the old concept's rows stay

    # A crash after saving the batch before the alarm, or the alarm's own batch (its raised policy
    # still to run one more batch): the restarted trainer reopens that version (detector window,
    # batches left, buffer) and replays the rest; it ends where the reference does.
    for crash in (first, first + 1):
        crashed = TrainerState(cfg, ModelStore(tmp_path / f"crashed-{crash}"))
        assert run_batches(crashed, range(crash)) == alarms[:crash]
        resumed = TrainerState.open(cfg, ModelStore(tmp_path / f"crashed-{crash}"))
        assert resumed.drift is not None and crashed.drift is not None
        assert [(b.rows, b.errors) for b in resumed.drift.window] == [(b.rows, b.errors) for b in crashed.drift.window]
        assert resumed.drift_left == crashed.drift_left
        assert run_batches(resumed, range(crash, 10)) == alarms[crash:]
        assert resumed.drift_left == reference.drift_left and resumed.decay == reference.decay
        np.testing.assert_array_equal(resumed.rehearsal.x, reference.rehearsal.x)
        for k in reference.weights:
            np.testing.assert_array_equal(resumed.weights[k], reference.weights[k])


def test_by_default_an_alarm_shortens_the_half_life_to_half_a_batch_for_the_drift_batches() -> None:
    cfg = load_config(ROOT / "conf" / "iris.toml")
    state = TrainerState(cfg, None)
    decays, alarms = [], []
    for b in range(14):
        alarm, _ = state.watch_drift(20, 2.0 if b < 6 else 18.0)
        alarms.append(alarm)
        decays.append(state.decay)
    first = alarms.index(True)
    raised = cfg.stream.drift_batches
    assert cfg.stream.drift_half_life_batches == 0.5 and decay_for_half_life(0.5) == pytest.approx(0.25)
    assert decays[:first] == [state.base_decay] * first
    assert decays[first : first + raised] == [decay_for_half_life(0.5)] * raised
    assert alarms.count(True) == 1  # one change, one alarm: then the usual half-life returns
    assert decays[first + raised :] == [state.base_decay] * (len(decays) - first - raised)
    assert state.base_decay != decay_for_half_life(0.5)
