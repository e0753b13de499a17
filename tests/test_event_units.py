"""Event mode without Spark: its config rules, the event replay's order and disorder, and the
forecast task's training and metrics (prequential MAE/RMSE, the naive forecast, skill)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from producers.event_replay import event_schedule, event_time, read_events, replay_events
from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.storage.metrics import forecast_fields, forecast_last, format_line

ROOT = Path(__file__).resolve().parent.parent
SOLAR = ROOT / "conf" / "solar.toml"


def test_the_shipped_event_config_loads_and_shapes_a_forecaster() -> None:
    from streaming_lstm.core.weights import LSTMConfig

    cfg = load_config(SOLAR)
    lstm = LSTMConfig.from_app(cfg)
    assert (lstm.task, lstm.num_classes, lstm.num_features, lstm.num_stats) == ("forecast", 1, 48, 49)
    assert cfg.input_columns()[-1] == "f47" and cfg.data.target_columns() == ["y0"] and cfg.data.naive_columns() == ["n0"]
    h3 = load_config(SOLAR, {"data.horizon": 3, "data.targets": '["ghi", "temp_air"]'})
    assert h3.data.outputs() == 6 and h3.data.target_columns()[-1] == "y5"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.mode": "stream"}, "data.mode: must be one of rows, events, got 'stream'"),
        ({"data.task": "regress"}, "data.task: must be one of classify, forecast, got 'regress'"),
        ({"data.targets": "[]"}, "data.targets: forecasting needs at least one target column"),
        ({"data.targets": '["sun"]'}, "data.columns: must contain 'sun'"),
        ({"data.entity": "station"}, "data.columns: must contain 'station'"),  # optional, but a named entity must be a column
        ({"data.time": "when"}, "data.columns: must contain 'when'"),
        ({"data.horizon": 0}, "data.horizon: must be >= 1, got 0"),
        ({"data.stride": 0}, "data.stride: must be >= 1, got 0"),
        ({"data.allowed_lateness": "a while"}, "data.allowed_lateness: expected a duration"),
        ({"data.entity_ttl": "-1h"}, "data.entity_ttl: must be a non-negative duration"),
        ({"model.features_per_step": 1}, "model.features_per_step: in event mode each timestep is one event: must equal the 2 feature columns"),
        ({"data.mode": "rows"}, 'data.task: forecasting needs data.mode = "events"'),
    ],
)
def test_bad_event_settings_name_key_and_value(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(SOLAR, overrides)
    assert message in str(err.value)


def test_event_replay_sends_in_event_time_order_keyed_by_entity(tmp_path: Path) -> None:
    data = tmp_path / "ev.csv"
    data.write_text('site,time,ghi,temp_air\n"B, x",1990-03-01T02:00:00Z,1,2\n"A, y",1990-03-01T01:00:00+01:00,3,4\nC,636260400,5,6\n')
    events = read_events(data, load_config(SOLAR).data)
    assert [e.entity for e in events] == ["A, y", "B, x", "C"]  # 00:00Z, 02:00Z, 03:00Z
    assert event_time("1990-03-01T00:00:00Z") == event_time("636249600") == events[0].time

    sent: list[tuple[str, str]] = []

    class Sink:
        def send(self, line: str, key: str) -> None:
            sent.append((key, line))

    stats = replay_events(event_schedule(events), Sink())
    assert stats.events_sent == 3 and [k for k, _ in sent] == ["A, y", "B, x", "C"]
    assert sent[0][1] == '"A, y",1990-03-01T01:00:00+01:00,3,4'  # the line as it was
    data.write_text('site,time,ghi,temp_air\nC,636260400,5,6\n"B" x,1990-03-01T02:00:00Z,1,2\n')
    with pytest.raises(ValueError, match=r"ev.csv:3: malformed quoting"):
        read_events(data, load_config(SOLAR).data)


def test_jitter_is_bounded_and_late_events_are_counted() -> None:
    from producers.event_replay import Event

    events = [Event(float(t), "e", str(t)) for t in range(0, 10000, 10)]
    plan = event_schedule(events, seed=3, jitter=50.0)
    times = [e.time for e, _ in plan]
    assert sorted(times) == [e.time for e in events] and times != sorted(times)  # reordered, nothing lost
    assert all(later > t - 50.0 for i, t in enumerate(times) for later in times[i + 1 : i + 30])  # at most 50 s out of order
    late = event_schedule(events, seed=3, late_rate=0.05, late_by=500.0)
    flagged = [e for e, is_late in late if is_late]
    assert 20 < len(flagged) < 80
    position = {e.time: i for i, (e, _) in enumerate(late)}
    on_time = {e.time for e, is_late in late if not is_late}
    assert all(position[e.time] > position[e.time + 100] for e in flagged if e.time + 100 in on_time)  # sent after newer events
    assert event_schedule(events, seed=3, jitter=50.0) == plan  # seeded


def test_forecast_fields_skill_and_the_console_line() -> None:
    f = forecast_fields(4, abs_sum=2.0, sq_sum=2.0, naive_sum=4.0)
    assert (f["prequential_mae"], f["naive_mae"], f["skill"]) == (0.5, 1.0, 0.5)
    assert f["prequential_rmse"] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(forecast_fields(0, 0.0, 0.0, 0.0)["skill"])
    history = [{**forecast_fields(10, 10.0, 10.0, 10.0), "rows_valid": 10}, {**forecast_fields(10, 1.0, 1.0, 4.0), "rows_valid": 10}]
    assert forecast_last(history, 10)["skill"] == 0.75 and forecast_last(history, 20)["skill"] == pytest.approx(1 - 11 / 14)
    line = format_line({"batch_id": 3, "rows_in": 30, "events_accepted": 28, "rows_valid": 20, "rows_dead": 2, "train_loss": 0.1,
                        "rows_per_s": 10.0, "latency_s": 2.0, "version": 4, **f})  # fmt: skip
    assert "events    28" in line and "preq mae 0.5 naive 1 skill +0.500" in line


def test_a_forecast_partition_scores_before_training_against_the_naive_forecast() -> None:
    from streaming_lstm.core import training
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import LSTMConfig, init_weights

    lstm = LSTMConfig(timesteps=5, features_per_step=1, hidden=(8,), num_classes=1, seed=1, task="forecast")
    spec = training.TrainSpec(lstm, "adam", 0.01, 5.0, 0.0)
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 6.3, size=(256, 1))
    t = np.arange(6)
    series = 3.0 + 2.0 * np.sin(phase + 0.7 * t)  # (N, 6): 5 inputs, the next value
    x, y, naive = series[:, :5], series[:, 5:], series[:, 4:5]
    w0 = init_weights(lstm)
    first = training.train_partition(0, w0, NormStats.empty(lstm.num_stats), x, y, spec, epochs=30, batch_size=16, seed=0, naive=naive)
    assert first.prequential.naive_sum == pytest.approx(float(np.abs(naive - y).sum()))
    assert first.norm.count == 256 and first.norm.mean.shape == (6,)  # features and the target
    # Scoring uses the incoming weights and statistics: with them, the figures equal a direct forecast.
    pred = training.forecast(w0, NormStats.empty(lstm.num_stats), x, spec)
    assert first.prequential.abs_sum == pytest.approx(float(np.abs(pred - y).sum()), rel=1e-5)
    after, _ = training.score_forecast(first.weights, first.norm, x, y, naive, spec)
    assert after.abs_sum < 0.5 * after.naive_sum, (after.abs_sum, after.naive_sum)  # it learnt the sines' next step


def test_one_process_commands_refuse_an_event_config_and_say_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_lstm.cli import main

    assert main(["fit", "--conf", str(SOLAR), "--data", str(ROOT / "data" / "solar-hourly.csv"), "--out", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err
    assert 'data.mode = "events"' in err and "demo --events" in err


CHANGE_CONF = {
    "data.mode": "events",
    "data.task": "forecast",
    "data.columns": ["site", "time", "temp", "ghi"],
    "data.entity": "site",
    "data.time": "time",
    "data.features": ["temp", "ghi"],
    "data.targets": ["ghi"],
    "data.horizon": 2,
    "data.forecast_change": True,
    "model.timesteps": 3,
    "model.features_per_step": 2,
    "model.hidden": [8],
}


def test_forecast_change_reads_each_targets_last_value_and_is_refused_where_it_cannot() -> None:
    cfg = load_config(None, CHANGE_CONF)
    # Inputs are time-major (t0: temp, ghi; t1: ...; t2: temp, ghi): ghi's last value is column 5,
    # once per horizon step.
    assert cfg.change_columns() == (5, 5)
    assert load_config(None, {**CHANGE_CONF, "data.forecast_change": False}).change_columns() == ()
    with pytest.raises(ConfigError, match=r"data.forecast_change.*needs every target among data.features \(not: ghi\)"):
        load_config(None, {**CHANGE_CONF, "data.features": ["temp"], "model.features_per_step": 1})
    with pytest.raises(ConfigError, match=r"data.forecast_change.*forecast"):
        load_config(SOLAR.parent / "iris.toml", {"data.forecast_change": True})


def test_forecast_change_learns_changes_starts_at_the_naive_forecast_and_exports_the_same() -> None:
    """With the lever on, the network learns each target's change from its last value: a
    forecast is that last value plus the network's output, so zero weights forecast the last value
    plus the mean change seen; training on a rising series beats the naive forecast, and the
    exported SavedModel forecasts what the trainer does."""
    import tensorflow as tf

    from streaming_lstm.commands.export import serving_module
    from streaming_lstm.core import training
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import init_weights
    from streaming_lstm.storage.store import SavedModel

    cfg = load_config(None, {**CHANGE_CONF, "data.horizon": 1})
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    rng = np.random.default_rng(3)
    start = rng.uniform(0, 500, size=(200, 1))
    ghi = start + 40.0 * np.arange(4)  # (N, 4): rises by 40 a step; the 4th value is the target
    temp = rng.normal(20, 2, size=(200, 4))
    x = np.stack([temp[:, :3], ghi[:, :3]], axis=2).reshape(200, 6)  # time-major (N, T*F)
    y, naive = ghi[:, 3:], ghi[:, 2:3]
    zero = {k: np.zeros_like(v) for k, v in init_weights(spec.model).items()}
    norm = NormStats.of(np.concatenate([x, y - naive], axis=1))  # the changes' statistics: mean 40
    np.testing.assert_allclose(training.forecast(zero, norm, x, spec), naive + 40.0, rtol=1e-9)

    empty = NormStats.empty(spec.model.num_stats)
    result = training.train_partition(0, init_weights(spec.model), empty, x, y, spec, epochs=20, batch_size=16, seed=0, naive=naive)
    assert result.norm.mean[-1] == pytest.approx(40.0)  # what the head learns: the change, not the level
    after, _ = training.score_forecast(result.weights, result.norm, x, y, naive, spec)
    assert after.abs_sum < 0.2 * after.naive_sum, (after.abs_sum, after.naive_sum)

    saved = SavedModel(1, cfg, result.weights, None, result.norm, {})
    module, _info = serving_module(saved)
    served = module.serve(tf.constant(x.reshape(200, 3, 2), tf.float32))["forecast"].numpy()
    np.testing.assert_allclose(served, training.forecast(result.weights, result.norm, x, spec), rtol=1e-4, atol=1e-2)
