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
        "8",
        "--trigger",
        "1s",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "idle for 8 s" in r.stdout
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
    r2 = subprocess.run([*cmd[:-4], "--idle-timeout", "5"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    metrics2 = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics2) == 600


def test_sigterm_finishes_the_batch_saves_and_exits_zero(iris_lines: list[str], tmp_path: Path) -> None:
    import signal
    import time

    incoming = tmp_path / "in"
    incoming.mkdir()
    for i in range(3):
        (incoming / f"p{i}.csv").write_text("\n".join(iris_lines) + "\n")
    ck = tmp_path / "ck"
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "train", "--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--trigger", "2s"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("batch ") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped (signal)" in out
    assert "SIGTERM received" in err
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    from streaming_lstm.store import ModelStore

    saved = ModelStore(ck / "model").load_latest()
    assert saved is not None and saved.meta["batch_id"] == metrics[-1]["batch_id"]
    assert saved.meta["rows_seen"] == sum(m["rows_valid"] for m in metrics)
    # What was not trained is trained on the next start, and nothing twice.
    r = subprocess.run([*cmd, "--idle-timeout", "6"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics) == 450
    assert len({m["batch_id"] for m in metrics}) == len(metrics)
