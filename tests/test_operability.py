"""Watching it learn and using the model: drift, TensorBoard, report, export, predict."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.drift import Adwin

ROOT = Path(__file__).resolve().parent.parent


def test_adwin_raises_on_a_change_and_stays_quiet_without_one() -> None:
    rng = np.random.default_rng(0)
    quiet = Adwin(delta=0.002)
    assert not any(quiet.update(50, int(rng.binomial(50, 0.05))) for _ in range(200))
    loud = Adwin(delta=0.002)
    for _ in range(20):
        loud.update(50, int(rng.binomial(50, 0.05)))
    detected_at = next(i for i in range(20) if loud.update(50, int(rng.binomial(50, 0.6))))
    assert detected_at <= 2
    assert loud.error_rate > 0.4  # the window dropped the old regime
    learning = Adwin(delta=0.002)  # the error falling is adaptation, not drift: no alarm
    assert not any(learning.update(50, e) for e in [33, 30, 5, 3, 2, 2, 1, 2, 1, 1])
    assert learning.error_rate < 0.2
    with pytest.raises(ValueError, match="delta"):
        Adwin(delta=0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from streaming_lstm.commands import standalone
    from streaming_lstm.core.config_load import load_config

    out = tmp_path_factory.mktemp("model")
    standalone.fit(load_config(ROOT / "conf" / "iris.toml", {"train.epochs": 10}), ROOT / "data" / "iris.csv", out)
    return out


def test_exported_saved_model_reproduces_evaluate(fitted: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    from streaming_lstm.commands.export import export_saved_model
    from streaming_lstm.commands.standalone import load_model, predict_rows
    from streaming_lstm.parse.data import load_csv

    info = export_saved_model(fitted, tmp_path / "sm")
    assert info["classes"] == ["setosa", "versicolor", "virginica"]
    saved = load_model(fitted)
    data = load_csv(ROOT / "data" / "iris.csv", saved.config.data)
    expected = predict_rows(saved, data.x)
    reloaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = reloaded.signatures["serving_default"](features=tf.constant(data.x, tf.float32))["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert json.loads((tmp_path / "sm" / "streaming_lstm.json").read_text())["model_version"] == saved.version


def test_predict_a_csv_file(fitted: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streaming_lstm.cli", "predict", "--model", str(fitted), "--data", "data/iris.csv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(records) == 150
    assert all(abs(sum(x["probabilities"]) - 1) < 1e-4 and x["model_version"] == 1 for x in records)
    assert sum(x["class"] == x["label"] for x in records) >= 120


def test_report_writes_charts_and_summary(tmp_path: Path) -> None:
    from streaming_lstm.commands.report import write_report

    ck = tmp_path / "ck"
    ck.mkdir()
    rows = []
    for b in range(6):
        rows.append(
            {
                "batch_id": b,
                "version": b + 1,
                "rows_valid": 50,
                "rows_dead": b % 2,
                "prequential_correct": 20 + 5 * b,
                "prequential_accuracy": (20 + 5 * b) / 50,
                "prequential_loss": 1.0 / (b + 1),
                "latency_s": 0.5,
                "drift": int(b == 4),
            }
        )
    (ck / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{torn")
    r = write_report(ck)
    assert r["batches"] == 6 and r["rows_trained"] == 300 and r["rows_dead_lettered"] == 3 and r["drift_alarms"] == 1
    for chart in r["charts"]:
        data = Path(chart).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    text = (ck / "report" / "summary.md").read_text()
    assert "| rows trained | 300 |" in text and "prequential.png" in text


@pytest.mark.spark
def test_tensorboard_events_and_stream_prediction_pick_up_new_versions(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    import tensorflow as tf

    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.predictor import StreamPredictor
    from tests.test_streaming import config, streaming

    ck = tmp_path / "ck"
    with streaming(spark, config(), ck) as (trainer, feed):
        feed(iris_lines[::3])
        out = io.StringIO()
        predictor = StreamPredictor(spark, ck, out)
        assert predictor.warm_up() > 0
        source = MemorySource(spark)
        query = predictor.start(source.df(), tmp_path / "pck", "0 seconds")
        try:
            source.add([*iris_lines[:5], "not,a,row", *iris_lines[5:10]])
            query.processAllAvailable()
            feed(iris_lines[1::3])  # the trainer writes version 2
            unlabelled = [",".join(line.split(",")[:4]) for line in iris_lines[20:25]]  # features only: what scoring is for
            source.add([*iris_lines[10:20], *unlabelled])
            query.processAllAvailable()
            observed = [p["observedMetrics"]["streaming_lstm"] for p in query.recentProgress if p["numInputRows"] > 0]
        finally:
            query.stop()
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["model_version"] for r in records if "class" in r] == [1] * 10 + [2] * 15
    # One line per row, the rejected row in its place (a memory stream batch is one partition).
    assert [r["value"] for r in records] == [*iris_lines[:5], "not,a,row", *iris_lines[5:20], *unlabelled]
    assert records[5]["error"] == "expected 4 fields (or 5 with the label), got 3" and "class" not in records[5]
    assert (predictor.rows_scored, predictor.rows_rejected) == (25, 1)
    # Rows that carried a label say so (and count towards the accuracy); rows without one are scored all the same.
    assert [("label" in r) for r in records if "class" in r] == [True] * 20 + [False] * 5
    assert predictor.rows_labelled == 20 and 0 <= predictor.rows_correct <= 20
    assert [(o["rows_in"], o["rows_valid"], o["rows_dead"]) for o in observed] == [(11, 10, 1), (15, 15, 0)]
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 and r["class"] in ("setosa", "versicolor", "virginica") for r in records if "class" in r)
    tags = set()
    for f in (ck / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags.update(v.tag for v in event.summary.value)
    assert {"prequential/accuracy", "train/loss", "latency/batch_s", "weights/head/kernel"} <= tags
    assert trainer.history[-1]["drift_detections"] >= 0


@pytest.mark.spark
def test_a_version_written_while_a_batch_is_scored_scores_that_batch(spark: Any, fitted: Path, iris_lines: list[str], tmp_path: Path) -> None:
    """The predictor looks again after scoring: a version that appeared meanwhile re-scores the
    batch (once), instead of waiting for the next trigger."""
    import shutil

    from streaming_lstm.commands import standalone
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.trainer.predictor import StreamPredictor

    model = tmp_path / "model"
    shutil.copytree(fitted, model)
    out = io.StringIO()
    predictor = StreamPredictor(spark, model, out)
    real_scorer = predictor._scorer
    calls = []

    def scorer_that_sees_a_new_version_land() -> Any:
        calls.append(predictor.saved.version if predictor.saved else None)
        if len(calls) == 1:  # the trainer writes v2 while batch 0 is being scored with v1
            standalone.fit(load_config(ROOT / "conf" / "iris.toml", {"train.epochs": 1}), ROOT / "data" / "iris.csv", model)
        return real_scorer()

    predictor._scorer = scorer_that_sees_a_new_version_land  # type: ignore[method-assign]
    df = spark.createDataFrame([(v,) for v in iris_lines[:30]], "value string")
    predictor.handle(df, 0)
    predictor.handle(df, 1)  # no new version: scored once
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert calls == [1, 2, 2]
    assert [r["model_version"] for r in records] == [2] * 60
    assert predictor.rescored_batches == 1 and predictor.rows_scored == 60
