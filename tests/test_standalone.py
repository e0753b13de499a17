"""The standalone commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streaming_lstm.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_fit_iris_reaches_095_on_the_seeded_holdout_and_evaluate_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "model"
    r = cli("fit", "--data", "data/iris.csv", "--out", str(out), "--holdout", "0.3", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["holdout_rows"] == 45 and result["rows_trained"] == 105
    assert result["holdout_accuracy"] >= 0.95
    e = cli("evaluate", "--model", str(out), "--data", "data/iris.csv", "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    assert ev["rows"] == 150 and ev["accuracy"] >= 0.95
    assert sum(map(sum, ev["confusion"])) == 150
    text = cli("evaluate", "--model", str(out), "--data", "data/iris.csv")
    assert "confusion" in text.stdout and "setosa" in text.stdout


def test_fit_needs_only_data() -> None:
    from streaming_lstm.cli import build_parser

    args = build_parser().parse_args(["fit", "--data", "data/iris.csv", "--holdout", "0.3", "--json"])
    assert args.out == "runs/model" and args.holdout == 0.3 and args.json


def test_help_explains_and_config_errors_are_one_line(tmp_path: Path) -> None:
    r = cli("--help")
    assert r.returncode == 0 and "fit" in r.stdout and "train" in r.stdout and "configuration" in r.stdout
    r = cli("train", "--help")
    assert "--checkpoint" in r.stdout and "--idle-timeout" in r.stdout
    r = cli("fit", "--data", "data/iris.csv", "--out", str(tmp_path / "m"), "--set", "model.timesteps=3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "streaming-lstm: configuration error: model.timesteps: timesteps x features_per_step (3 x 1) must equal the 4 feature columns, got 3"
    ]
    r = cli("evaluate", "--model", str(tmp_path / "nothing"), "--data", "data/iris.csv")
    assert r.returncode == 1 and "no model found" in r.stderr


def test_bad_rows_in_a_csv_are_counted_not_fatal(tmp_path: Path, iris_cfg) -> None:  # type: ignore[no-untyped-def]
    from streaming_lstm.parse.data import load_csv

    f = tmp_path / "rows.csv"
    f.write_text(
        "sepal_length,sepal_width,petal_length,petal_width,species\n5.1,3.5,1.4,0.2,0\nx,1,1,1,0\n1,1,1,nan,1\n1,1,1,1,9\n1,1,1,1e300,1\n6,3,4,1.3,1\n"
    )
    d = load_csv(f, iris_cfg.data)
    assert d.x.shape == (2, 4) and list(d.y) == [0, 1]
    assert sum(d.rejected.values()) == 4 and d.headers_skipped == 1
    # The stream's wording (rows.py), for the same rows.
    assert d.rejected == {
        "non-numeric feature 'sepal_length'": 1,
        "non-finite feature 'petal_width'": 1,
        "unknown label": 1,
        "feature 'petal_width' out of range (|x| > 1e+09)": 1,
    }
