"""`streaming-lstm train --source file` end to end, as a user runs it (its own Spark process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_file_source_trains_every_row_once_and_evaluates(iris_lines: list[str], tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    rng = np.random.default_rng(11)
    for copy in range(4):
        (incoming / f"iris-{copy}.csv").write_text("\n".join(iris_lines[i] for i in rng.permutation(150)) + "\n")
    ck = tmp_path / "ck"
    cmd = [
        sys.executable,
        "-m",
        "streaming_lstm.cli",
        "train",
        "--source",
        "file",
        "--path",
        str(incoming),
        "--checkpoint",
        str(ck),
        "--idle-timeout",
        "20",
        "--trigger",
        "1s",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "idle for 20 s" in r.stdout
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics) == 600
    assert sum(m["rows_dead"] for m in metrics) == 0
    assert len({m["batch_id"] for m in metrics}) == len(metrics)
    assert [line for line in r.stdout.splitlines() if line.startswith("batch ")], r.stdout
    e = subprocess.run(
        [sys.executable, "-m", "streaming_lstm.cli", "evaluate", "--model", str(ck), "--data", "data/iris.csv", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["accuracy"] >= 0.95

    # A restart over the same directory trains nothing twice.
    r2 = subprocess.run([*cmd[:-4], "--idle-timeout", "8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    metrics2 = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics2) == 600
