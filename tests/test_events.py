"""Event mode: events parsed by Spark (RFC 4180 CSV), windows formed per entity in Spark state
(transformWithStateInPandas), on Spark's memory stream and the shared session."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.testing.event_synth import SINE_SETTINGS, sine_events, to_csv_lines

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parent.parent

EVENTS = SINE_SETTINGS


def event_config(**over: Any) -> AppConfig:
    return load_config(None, {**EVENTS, **over})


@contextmanager
def windows_of(spark: Any, cfg: AppConfig, checkpoint: Path) -> Iterator[tuple[list[dict[str, Any]], Callable[[list[str]], None], Any]]:
    """The window operator alone on a memory stream: every row it emits, per batch, collected."""
    from streaming_lstm.parse.events import observed_events
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.window_state import windowed

    source = MemorySource(spark)
    out: list[dict[str, Any]] = []

    def collect(df: Any, batch_id: int) -> None:
        out.extend({**r.asDict(), "batch_id": batch_id} for r in df.collect())

    plan = windowed(observed_events(source.df(), cfg.data), cfg)
    with state_partitions(spark, 2):
        query = plan.writeStream.foreachBatch(collect).option("checkpointLocation", str(checkpoint)).start()

    def feed(lines: list[str]) -> None:
        source.add(lines)
        query.processAllAvailable()

    try:
        yield out, feed, query
    finally:
        query.stop()


@contextmanager
def state_partitions(spark: Any, n: int) -> Iterator[None]:
    """The shared session's shuffle partitions while a stateful query starts (its state keeps them;
    each is a Python task per batch), as conf/solar.toml sets them; restored for the other tests."""
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(n))
    try:
        yield
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


def expected_windows(lines: list[str], L: int, stride: int = 1) -> dict[str, list[list[float]]]:
    """Each entity's windows of L consecutive events, from the whole stream at once."""
    by: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        e, t, v = line.split(",")
        by.setdefault(e, []).append((float(t), float(v)))
    out: dict[str, list[list[float]]] = {}
    for e, evs in by.items():
        vals = [v for _, v in sorted(evs)]
        out[e] = [vals[j - L + 1 : j + 1] for j in range(L - 1, len(vals)) if (j - (L - 1)) % stride == 0]
    return out


def test_windows_span_batches_once_each_with_entities_interleaved(spark: Any, tmp_path: Path) -> None:
    cfg = event_config()
    lines = to_csv_lines(sine_events(entities=3, events=20, seed=1), header=False)
    with windows_of(spark, cfg, tmp_path / "ck") as (rows, feed, _):
        for cut in range(0, len(lines), 10):  # batches that split every entity's windows
            feed(lines[cut : cut + 10])
    windows = [r for r in rows if r["reason"] is None]
    expected = expected_windows(lines, L=5)
    assert len(windows) == sum(len(w) for w in expected.values()) == 3 * 16
    for e, wins in expected.items():
        got = sorted((r["end_time"], [r["f0"], r["f1"], r["f2"], r["f3"], r["y0"]]) for r in windows if r["entity"] == e)
        np.testing.assert_allclose([g[1] for g in got], wins)
        assert all(r["n0"] == r["f3"] for r in windows)  # the naive forecast is the last input value
    tallies = [r for r in rows if r["reason"] == "events accepted"]
    assert sum(r["events"] for r in tallies) == len(lines)
    assert not [r for r in rows if r["reason"] not in (None, "events accepted")]


@contextmanager
def trainer_on(spark: Any, cfg: AppConfig, checkpoint: Path) -> Iterator[tuple[Any, Callable[[list[str]], None]]]:
    """The streaming trainer in event mode on a fresh memory stream."""
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    source = MemorySource(spark)
    trainer = StreamingTrainer(spark, cfg, checkpoint)
    with state_partitions(spark, 2):
        query = start_query(trainer, source.df())

    def feed(lines: list[str]) -> None:
        source.add(lines)
        query.processAllAvailable()

    try:
        yield trainer, feed
    finally:
        query.stop()


def test_forecasts_train_every_window_once_and_beat_the_naive_forecast(spark: Any, tmp_path: Path) -> None:
    cfg = event_config(**{"model.timesteps": 8, "model.hidden": [16], "train.local_epochs": 10, "train.batch_size": 16})
    lines = to_csv_lines(sine_events(entities=3, events=240, seed=2, noise=0.05, change_at=1.0), header=False)
    with trainer_on(spark, cfg, tmp_path / "ck") as (trainer, feed):
        for cut in range(0, len(lines), 90):
            feed(lines[cut : cut + 90])
        history = trainer.history
    assert sum(m["rows_valid"] for m in history) == 3 * (240 - 8)  # every window once
    assert sum(m["events_accepted"] for m in history) == len(lines)  # every event accounted for
    assert sum(m["rows_dead"] for m in history) == 0
    for m in history:
        assert m["forecast_values"] == m["rows_valid"]
        assert m["prequential_mae"] == pytest.approx(m["prequential_abs_sum"] / m["forecast_values"])
    from streaming_lstm.storage.metrics import forecast_last

    late = forecast_last(history, windows=len(lines) // 5)
    assert late["skill"] > 0.2, late
    assert history[-1]["prequential_mae"] < history[0]["prequential_mae"]

    # predict on an event stream: a forecast per entity per window of the last T events, tagged
    # with the model version, equal to the model's forecast of that window computed directly.
    import json

    from streaming_lstm.core import training
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.predictor import StreamPredictor

    out = io.StringIO()
    predictor = StreamPredictor(spark, tmp_path / "ck" / "model", out)
    source = MemorySource(spark)
    with state_partitions(spark, 2):
        query = predictor.start(source.df(), tmp_path / "predict-ck", "0 seconds")
    fresh = [*to_csv_lines(sine_events(entities=2, events=12, seed=9), header=False), "e0,notatime,1"]
    try:
        source.add(fresh[:13])
        query.processAllAvailable()
        source.add(fresh[13:])
        query.processAllAvailable()
    finally:
        query.stop()
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    errors = [r for r in records if "error" in r]
    assert [r["error"] for r in errors] == ["invalid time 'time'"]
    forecasts = [r for r in records if "forecast" in r]
    assert len(forecasts) == 2 * (12 - 8 + 1)  # windows of 8 events, one per new event from the 8th on
    saved = ModelStore(tmp_path / "ck" / "model").load_latest()
    assert saved is not None and {r["model_version"] for r in forecasts} == {saved.version}
    spec = training.TrainSpec.from_app(saved.config)
    for e in ("e0", "e1"):
        mine = sorted((r["time"], r["forecast"][0]) for r in forecasts if r["entity"] == e)
        values = [float(x.split(",")[2]) for x in fresh[:-1] if x.startswith(e + ",")]
        x = np.array([values[j - 8 : j] for j in range(8, 13)])
        np.testing.assert_allclose([m[1] for m in mine], training.forecast(saved.weights, saved.norm, x, spec)[:, 0], rtol=1e-4, atol=1e-5)

    # report: MAE against the naive forecast, and forecasts against actual values of an event file
    from streaming_lstm.commands.report import write_report

    (tmp_path / "events.csv").write_text("\n".join(to_csv_lines(sine_events(entities=3, events=60, seed=2, noise=0.05, change_at=1.0))) + "\n")
    rep = write_report(tmp_path / "ck", tmp_path / "report", str(tmp_path / "events.csv"))
    assert rep["skill_last_fifth"] == pytest.approx(forecast_last(history, sum(m["rows_valid"] for m in history) // 5)["skill"])
    assert sorted(rep["forecast_vs_actual"]) == ["e0", "e1", "e2"] and all(f["windows"] == 60 - 8 for f in rep["forecast_vs_actual"].values())
    assert all((tmp_path / "report" / n).stat().st_size > 10_000 for n in ("prequential.png", "forecast.png"))
    assert list((tmp_path / "ck" / "tensorboard").iterdir()), "TensorBoard events written"

    # export: the SavedModel takes a window (B, T, F) and gives the same forecasts.
    import tensorflow as tf

    from streaming_lstm.commands.export import export_saved_model

    info = export_saved_model(tmp_path / "ck" / "model", tmp_path / "sm")
    assert info["signature"] == "serving_default(window: float32[None, 8, 1]) -> forecast: float32[None, 1]" and info["targets"] == ["value"]
    windows = np.array([values[j - 8 : j] for j in range(8, 13)])  # e1's
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](window=tf.constant(windows[:, :, None], tf.float32))
    np.testing.assert_allclose(served["forecast"].numpy(), training.forecast(saved.weights, saved.norm, windows, spec), rtol=1e-4, atol=1e-5)


def test_a_column_known_ahead_is_read_at_the_forecast_step(spark: Any, tmp_path: Path) -> None:
    """value_t = price_t + noise, price drawn afresh each event: from past events the best forecast
    is a constant (skill ~0.25 against the last value); with ``data.known = ["price"]`` each window
    holds the forecast step's price and the model learns the change from it. predict answers
    forecast requests (the step's price, the value empty); report --data draws the model."""
    from streaming_lstm.storage.metrics import forecast_last

    rng = np.random.default_rng(4)
    lines = []
    for k in range(300):
        for e in ("e0", "e1"):
            price = rng.uniform(-1, 1)
            lines.append(f"{e},{60 * k},{price + rng.normal(0, 0.05):.6f},{price:.6f}")
    cfg = event_config(**{
        "data.columns": ["entity", "time", "value", "price"], "data.features": ["value", "price"], "data.known": ["price"],
        "data.forecast_change": True, "model.features_per_step": 2, "model.hidden": [16], "train.local_epochs": 5,
    })  # fmt: skip
    with trainer_on(spark, cfg, tmp_path / "ck") as (trainer, feed):
        for cut in range(0, len(lines), 150):
            feed(lines[cut : cut + 150])
        history = trainer.history
    assert sum(m["rows_valid"] for m in history) == 2 * (300 - 4)  # every window once, as without data.known
    late = forecast_last(history, windows=len(lines) // 4)
    assert late["skill"] > 0.5, late

    answer = predict_requests(spark, tmp_path)
    import dataclasses

    from streaming_lstm.core import training
    from streaming_lstm.core.windows import WindowSpec, window_arrays
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.trainer.predictor import refuse_known_ahead

    saved = ModelStore(tmp_path / "ck" / "model").load_latest()
    assert saved is not None and answer["model_version"] == saved.version
    window = np.array([[[0.1 * k, 0.1 * k, 0.1 * k] for k in range(4)] + [[np.nan, 0.9, np.nan]]])  # p0's events, the request: features, target
    x, _, _ = window_arrays(window, WindowSpec(4, 1, 1), 2, 1, [1])
    expected = training.forecast(saved.weights, saved.norm, x, training.TrainSpec.from_app(saved.config), gain=saved.served_gain())[0, 0]
    assert answer["forecast"][0] == pytest.approx(expected, abs=1e-4)
    assert abs(answer["forecast"][0] - 0.9) < 0.3, answer  # value ~ price: the request's price, not the last value 0.3
    two_steps = dataclasses.replace(saved.config, data=dataclasses.replace(saved.config.data, horizon=2))
    with pytest.raises(ConfigError, match="streaming predict serves such a model at horizon 1"):
        refuse_known_ahead(two_steps)

    from streaming_lstm.commands.report import write_report

    (tmp_path / "events.csv").write_text("entity,time,value,price\n" + "\n".join(lines[-200:]) + "\n")
    drawn = write_report(tmp_path / "ck", tmp_path / "report", str(tmp_path / "events.csv"))["forecast_vs_actual"]
    assert sorted(drawn) == ["e0", "e1"] and all(f["mae"] < 0.5 * f["naive_mae"] for f in drawn.values()), drawn

    from streaming_lstm.commands.export import export_saved_model

    info = export_saved_model(tmp_path / "ck" / "model", tmp_path / "sm")
    assert info["known_ahead"] == ["price"] and info["signature"].startswith("serving_default(window: float32[None, 4, 2])")


def predict_requests(spark: Any, tmp_path: Path) -> dict[str, Any]:
    """Streaming predict of the model in ``tmp_path/ck`` (value and price, price known ahead): four
    events of p0, then forecast requests for p0 (answered) and p1 (no events yet: an error
    record). The answer to p0's request."""
    import json

    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.predictor import StreamPredictor

    out = io.StringIO()
    predictor = StreamPredictor(spark, tmp_path / "ck" / "model", out)
    source = MemorySource(spark)
    with state_partitions(spark, 2):
        query = predictor.start(source.df(), tmp_path / "predict-ck", "0 seconds")
    try:
        source.add([*(f"p0,{60 * k},{0.1 * k:.6f},{0.1 * k:.6f}" for k in range(4)), "p0,240,,0.9"])
        query.processAllAvailable()
        source.add(["p1,240,,0.5"])
        query.processAllAvailable()
    finally:
        query.stop()
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["error"] for r in records if "error" in r] == ["forecast request before 4 events"], records
    (answer,) = [r for r in records if "forecast" in r]
    assert answer["entity"] == "p0" and answer["time"] == 240, answer
    return answer


def lines_of(events: list[tuple[str, float, float]]) -> list[str]:
    return [f"{e},{t:g},{v:g}" for e, t, v in events]


def test_late_and_out_of_order_events_are_dead_letters_and_disorder_within_a_batch_is_sorted(spark: Any, tmp_path: Path) -> None:
    """Lateness 10 min (600 s); the watermark of a batch is the largest earlier event time - 600 s."""
    cfg = event_config()
    first = [("a", 60.0 * k, float(k)) for k in range(10)]
    shuffled = [first[i] for i in np.random.default_rng(0).permutation(10)]
    with windows_of(spark, cfg, tmp_path / "ck") as (rows, feed, _):
        feed(lines_of(shuffled))  # arrives in any order: sorted into place
        feed(lines_of([("a", 600.0, 10.0), ("a", 300.0, 99.0), ("b", 600.0, 0.0)]))  # a@300: older than a's last accepted event
        feed(lines_of([("a", 1300.0, 11.0)]))  # the largest time is now 1300: watermark 700 from the next batch
        feed(lines_of([("b", 650.0, 1.0), ("a", 1360.0, 12.0)]))  # b@650 < 700: late
    dead = sorted((r["reason"], r["value"]) for r in rows if r["reason"] not in (None, "events accepted"))
    assert dead == [("late event", "b,650,1"), ("out of order", "a,300,99")]
    windows = sorted((r["end_time"], r["f0"], r["f1"], r["f2"], r["f3"], r["y0"]) for r in rows if r["reason"] is None)
    assert [w[1:] for w in windows] == [tuple(float(k + i) for i in range(5)) for k in range(9)]  # a's values 0..12 in time order
    assert sum(r["events"] for r in rows if r["reason"] == "events accepted") == 13 + 1  # a: 13, b: 1


def test_an_idle_entity_expires_after_its_ttl_of_event_time(spark: Any, tmp_path: Path) -> None:
    """a's 4 events (one short of a window) are dropped once the watermark passes its last event +
    ttl; its next 4 events then form no window. Without expiry they would form 4."""
    cfg = event_config(**{"data.entity_ttl": "5m"})
    with windows_of(spark, cfg, tmp_path / "ck") as (rows, feed, _):
        feed(lines_of([("a", 60.0 * k, float(k)) for k in range(4)] + [("b", 0.0, 0.0)]))
        feed(lines_of([("b", 2000.0, 1.0)]))  # watermark 1400 from the next batch: a's timer (180 + 300) is due
        feed(lines_of([("b", 2060.0, 2.0)]))
        feed(lines_of([("a", 2100.0 + 60 * k, float(k)) for k in range(4)]))
    assert [r for r in rows if r["reason"] is None and r["entity"] == "a"] == []
    assert sum(r["events"] for r in rows if r["reason"] == "events accepted") == 11


def test_events_are_read_per_rfc_4180_and_bad_ones_are_named(spark: Any) -> None:
    from streaming_lstm.parse.events import parse_events

    cfg = load_config(ROOT / "conf" / "solar.toml")
    lines = [
        "site,time,ghi,temp_air",
        '"Sand Point, AK",1990-03-01T00:00:00Z,"233",5.3',  # a quoted comma, a quoted number
        '"Say ""hi""",1990-03-01T01:00:00+01:00,0,1',  # doubled quotes; an offset
        "Miami,636249600,10,20",  # seconds since the epoch
        "Miami,yesterday,10,20",
        ",1990-03-01T00:00:00Z,10,20",
        "Miami,1990-03-01T00:00:00Z,bright,20",
        "Miami,1990-03-01T00:00:00Z,10",
        '"a,b",1990-03-01T00:00:00Z,10,20,30',
        "Miami,1990-03-01T00:00:00Z,NaN,20",
        "1," * 300_000 + "0",  # a hostile line: counted in linear time
        'Miami,1990-03-01T00:00:00Z,"10"x,20',  # a quoted section inside a field
        'Miami,1990-03-01T00:00:00Z,"10,20',  # an unbalanced quote
    ]
    got = parse_events(spark.createDataFrame([(x,) for x in lines], "value string"), cfg.data).collect()
    assert [r["reason"] for r in got] == [
        "header row",
        None,
        None,
        None,
        "invalid time 'time'",
        "missing entity 'site'",
        "non-numeric feature 'ghi'",
        "expected 4 fields, got 3",
        "expected 4 fields, got 5",
        "non-finite feature 'ghi'",
        "expected 4 fields, got 300001",
        "malformed quoting",
        "malformed quoting",
    ]
    assert (got[1]["entity"], got[1]["t"], got[1]["v0"], got[1]["v1"], got[1]["v2"]) == ("Sand Point, AK", 636249600.0, 233.0, 5.3, 233.0)
    assert (got[2]["entity"], got[2]["t"]) == ('Say "hi"', 636249600.0)  # 01:00+01:00 is 00:00Z
    assert got[3]["t"] == 636249600.0
