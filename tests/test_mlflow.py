"""MLflow's model registry: ``export --mlflow-register NAME`` logs the model with MLflow's TensorFlow
flavour and registers a new version of NAME; ``mlflow.pyfunc`` predicts what ``evaluate`` does.
Tracking of training runs (one run per checkpoint, resumed after a kill, once per batch id) is in
test_faults.py's driver-kill test and test_kafka.py's demo test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streaming_lstm.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_export_registers_versions_that_pyfunc_loads_and_that_predict_as_evaluate_does(tmp_path: Path) -> None:
    import mlflow

    from streaming_lstm.commands.standalone import load_model, predict_rows
    from streaming_lstm.parse.data import load_csv

    model, data = tmp_path / "model", ROOT / "data" / "iris.csv"
    results = []
    for n in (1, 2):  # each fit adds a model version; each export registers a new version of the name
        fit = cli("fit", "--data", str(data), "--out", str(model), "--epochs", str(n))
        assert fit.returncode == 0, fit.stderr[-2000:]
        done = cli("export", "--checkpoint", str(model), "--out", str(tmp_path / f"sm{n}"), "--mlflow-register", "iris-lstm", "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [r["registered_version"] for r in results] == ["1", "2"] and [r["model_version"] for r in results] == [1, 2]
    assert results[1]["tracking_uri"] == f"sqlite:///{model}/mlflow/mlflow.db"

    mlflow.set_tracking_uri(results[1]["tracking_uri"])
    client = mlflow.MlflowClient()
    tags = client.get_model_version("iris-lstm", "2").tags
    assert tags["streaming_lstm.model_version"] == "2" and int(tags["streaming_lstm.rows_seen"]) > 0
    pyfunc = mlflow.pyfunc.load_model("models:/iris-lstm/2")
    saved = load_model(model)
    x = load_csv(data, saved.config.data).x
    np.testing.assert_allclose(pyfunc.predict(x.astype(np.float32)), predict_rows(saved, x), atol=1e-6)


def test_mlflow_flags_are_checked_with_a_clear_message(tmp_path: Path) -> None:
    done = cli("export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "sm"), "--mlflow", "local")
    assert done.returncode == 2 and "--mlflow URI goes with --mlflow-register NAME" in done.stderr
