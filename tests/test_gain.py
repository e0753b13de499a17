"""The forecast gain (core/gain.py) and the relative window inputs of ``data.forecast_change``
(core/change.py): the gain's arithmetic, that a partition scores with the incoming gain
and returns its windows' sums measured before it trains, that the driver's state keeps, saves and
reopens them, and that predict and export serve what the trainer scores. Replay exactness under a
killed driver is test_events_e2e.py's (a forecast_change run: its gains are compared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming_lstm.core import change, training
from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.weights import init_weights
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer import executor
from streaming_lstm.trainer.state import TrainerState, Update

SERIES = {
    "data.mode": "events",
    "data.task": "forecast",
    "data.columns": ["time", "value"],
    "data.time": "time",
    "data.features": ["value"],
    "data.targets": ["value"],
    "data.forecast_change": True,
    "model.timesteps": 5,
    "model.features_per_step": 1,
    "model.hidden": [8],
}


def rising(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (N, 5) of series that rise by 3 a step plus noise, their next values and last values."""
    rng = np.random.default_rng(seed)
    series = rng.uniform(0, 100, size=(n, 1)) + 3.0 * np.arange(6) + rng.normal(0, 0.5, size=(n, 6))
    return series[:, :5], series[:, 5:], series[:, 4:5]


def test_the_gain_is_the_least_squares_weight_of_the_change_clipped_to_0_1() -> None:
    a = np.array([[1.0, 2.0], [-2.0, 1.0], [0.5, -1.0]])
    assert ForecastGain.empty(2).value().tolist() == [0.0, 0.0]  # nothing scored: the naive forecast
    np.testing.assert_allclose(ForecastGain.of(a, a).value(), [1.0, 1.0])  # right changes: all of them
    np.testing.assert_allclose(ForecastGain.of(2 * a, a).value(), [0.5, 0.5])  # twice too large: half
    np.testing.assert_allclose(ForecastGain.of(-a, a).value(), [0.0, 0.0])  # wrong sign: none
    act = a[:, 0]
    predicted = act + np.array([0.3, -0.2, 0.1])
    g = float(ForecastGain.of(predicted[:, None], act[:, None]).value()[0])
    best = min(np.linspace(0, 1, 1001), key=lambda c: float(((c * predicted - act) ** 2).sum()))
    assert 0 < g < 1 and g == pytest.approx(best, abs=1e-3)  # the weight that minimises the squared error


def test_a_batch_decays_the_sums_by_its_windows_and_adds_the_keys_sums() -> None:
    old = ForecastGain(np.array([4.0]), np.array([8.0]), 100.0)
    k0, k1 = ForecastGain.of(np.ones((30, 1)), np.ones((30, 1))), ForecastGain.of(np.ones((20, 1)), np.zeros((20, 1)))
    new = old.updated([k0, k1], memory=50)
    keep = np.exp(-50 / 50)
    np.testing.assert_allclose(new.cross, 4.0 * keep + 30)
    np.testing.assert_allclose(new.power, 8.0 * keep + 50)
    assert new.windows == pytest.approx(100 * keep + 50)
    back = ForecastGain.from_arrays(new.to_arrays())
    assert back is not None and back.windows == new.windows and back.cross.tolist() == new.cross.tolist()
    assert ForecastGain.from_arrays({}) is None
    with pytest.raises(ValueError, match="gain sums"):
        ForecastGain.from_arrays({"gain/cross": np.zeros(2), "gain/power": np.zeros(3)})


def test_window_inputs_are_the_earlier_steps_relative_to_the_last() -> None:
    two = {"data.columns": ["time", "a", "b"], "data.features": ["a", "b"], "data.targets": ["b"], "model.features_per_step": 2, "model.timesteps": 3}
    cfg = load_config(None, {**SERIES, **two})
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    x = np.array([[1.0, 10.0, 2.0, 20.0, 4.0, 25.0]])  # time-major: (a, b) at steps 0, 1, 2
    np.testing.assert_array_equal(change.window_inputs(spec, x), [[-3.0, -15.0, -2.0, -5.0, 4.0, 25.0]])
    levels = training.TrainSpec.from_app(load_config(None, {**SERIES, "data.forecast_change": False}), streaming=True)
    np.testing.assert_array_equal(change.window_inputs(levels, x[:, :5]), x[:, :5])  # no lever: the window itself


def test_a_partition_scores_with_the_incoming_gain_and_returns_out_of_sample_sums() -> None:
    cfg = load_config(None, SERIES)
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    x, y, naive = rising(64, 0)
    w0, empty = init_weights(spec.model), NormStats.empty(spec.model.num_stats)
    zero = training.train_partition(0, w0, empty, x, y, spec, epochs=2, batch_size=16, seed=0, naive=naive, gain=np.zeros(1))
    assert zero.prequential.abs_sum == pytest.approx(zero.prequential.naive_sum)  # gain 0: the last value
    change = training.network_forecast(w0, empty, x, spec)  # what the incoming model predicted
    assert zero.gain is not None and zero.gain.windows == 64
    np.testing.assert_allclose(zero.gain.cross, (change * (y - naive)).sum(axis=0))
    np.testing.assert_allclose(zero.gain.power, (change**2).sum(axis=0))
    half = training.train_partition(0, w0, empty, x, y, spec, epochs=2, batch_size=16, seed=0, naive=naive, gain=np.array([0.5]))
    assert half.prequential.abs_sum == pytest.approx(float(np.abs(naive + 0.5 * change - y).sum()))
    for k in w0:  # the gain changes what is served, never what is trained
        np.testing.assert_array_equal(half.weights[k], zero.weights[k])
    # Through the result row and the broadcast model, as the tasks and the driver see them.
    decoded = executor.decode_model(executor.encode_model(w0, empty, gain=zero.gain), spec.model)
    assert decoded.gain is not None and decoded.served_gain() == pytest.approx(zero.gain.value())


def test_the_state_keeps_saves_and_reopens_the_gain_and_0_turns_it_off(tmp_path: Path) -> None:
    cfg = load_config(None, {**SERIES, "data.forecast_gain_windows": 100})
    state = TrainerState(cfg, ModelStore(tmp_path))
    assert state.gain is not None and state.gain.value().tolist() == [0.0]
    x, y, _ = rising(40, 1)
    w = init_weights(state.lstm)
    norm = NormStats.of(change.forecast_columns(training.TrainSpec.from_app(cfg, streaming=True), x, y))
    parts = [ForecastGain.of(np.full((20, 1), 2.0), np.full((20, 1), 3.0)), ForecastGain.of(np.full((20, 1), 1.0), np.full((20, 1), 1.0))]
    state.apply(0, [Update(20, w, norm, 0), Update(20, w, norm, 1)], gains=parts)
    state.apply(1, [Update(20, w, norm, 0)], gains=[parts[0]])
    expected = ForecastGain.empty(1).updated(parts, 100).updated([parts[0]], 100)
    np.testing.assert_allclose(state.gain.cross, expected.cross)
    reopened = TrainerState.open(cfg, ModelStore(tmp_path))
    assert reopened.gain is not None and reopened.gain.cross.tolist() == state.gain.cross.tolist()
    saved = ModelStore(tmp_path).load_latest()
    assert saved is not None and saved.served_gain() == pytest.approx(state.gain.value())
    off = TrainerState.open(load_config(None, {**SERIES, "data.forecast_gain_windows": 0}), ModelStore(tmp_path / "off"))
    assert off.gain is None
    with pytest.raises(ConfigError, match=r"data.forecast_gain_windows.*-1"):
        load_config(None, {**SERIES, "data.forecast_gain_windows": -1})


def test_export_serves_the_relative_inputs_and_the_gain_as_the_trainer_scores() -> None:
    import tensorflow as tf

    from streaming_lstm.commands.export import serving_module
    from streaming_lstm.storage.store import SavedModel

    cfg = load_config(None, SERIES)
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    x, y, naive = rising(50, 2)
    empty = NormStats.empty(spec.model.num_stats)
    result = training.train_partition(0, init_weights(spec.model), empty, x, y, spec, epochs=5, batch_size=10, seed=0, naive=naive)
    gain = ForecastGain(np.array([3.0]), np.array([10.0]))  # g = 0.3
    saved = SavedModel(1, cfg, result.weights, None, empty.merge(result.norm), {}, gain=gain)
    module, _ = serving_module(saved)
    served = module.serve(tf.constant(x.reshape(50, 5, 1), tf.float32))["forecast"].numpy()
    trainer = training.forecast(saved.weights, saved.norm, x, spec, gain=saved.served_gain())
    np.testing.assert_allclose(served, trainer, rtol=1e-4, atol=1e-3)
    ungained = training.forecast(saved.weights, saved.norm, x, spec)
    np.testing.assert_allclose(trainer - naive, 0.3 * (ungained - naive), rtol=1e-9)
