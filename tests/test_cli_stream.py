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


def planned(ck: Path) -> list[int]:
    """Batch ids in Spark's offset log (a batch is written there before it runs)."""
    return sorted(int(f.name) for f in (ck / "spark" / "offsets").iterdir() if f.name.isdigit())


def committed(ck: Path) -> list[int]:
    """Batch ids in Spark's commit log (written after the handler returned)."""
    return sorted(int(f.name) for f in (ck / "spark" / "commits").iterdir() if f.name.isdigit())


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
        "5",
        "--trigger",
        "1s",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "idle for 5 s" in r.stdout
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics) == 600
    assert sum(m["rows_dead"] for m in metrics) == 0
    assert len({m["batch_id"] for m in metrics}) == len(metrics)
    assert [line for line in r.stdout.splitlines() if line.startswith("batch ")], r.stdout
    # A normal stop waits for Spark to commit the last batch: nothing to replay, no interrupted write.
    assert committed(ck) == planned(ck) and planned(ck)
    assert "InterruptedException" not in r.stderr
    # Suite time: evaluated in this process (the evaluate command has its own tests), and no restart
    # here (test_sigterm_finishes_the_batch_saves_and_exits_zero restarts over a stopped run).
    from streaming_lstm.commands.standalone import evaluate

    _, ev = evaluate(ck, ROOT / "data" / "iris.csv")
    assert ev.accuracy >= 0.95


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
    assert "InterruptedException" not in err
    assert "SIGTERM received" in err
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    # The last trained batch is committed too; a batch Spark planned after the signal is refused,
    # left uncommitted, and trained on the next start.
    assert committed(ck)[-1] == metrics[-1]["batch_id"] and planned(ck)[-1] <= metrics[-1]["batch_id"] + 1
    from streaming_lstm.storage.store import ModelStore

    saved = ModelStore(ck / "model").load_latest()
    assert saved is not None and saved.meta["batch_id"] == metrics[-1]["batch_id"]
    assert saved.meta["rows_seen"] == sum(m["rows_valid"] for m in metrics)
    # What was not trained is trained on the next start, and nothing twice.
    r = subprocess.run([*cmd, "--idle-timeout", "6"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in metrics) == 450
    assert len({m["batch_id"] for m in metrics}) == len(metrics)


JVM_NOTICE = "WARNING: Using incubator modules"  # the JVM's own line at start, from Spark's launcher options


def noise(stderr: str) -> list[str]:
    """What a stop should not print: ERROR lines, tracebacks, Java exceptions."""
    return [line for line in stderr.splitlines() if "ERROR" in line or "Traceback" in line or "Exception" in line]


def test_a_stop_is_quiet_and_says_what_is_replayed(iris_lines: list[str], tmp_path: Path) -> None:
    """Ctrl-C during start-up: exit 130 and one line. --max-batches with files still waiting, and
    Ctrl-C to the process group mid-stream (as a terminal sends it): exit 0, no ERROR line and no
    stack trace, and the closing lines say which batch was the last applied."""
    import os
    import signal
    import time

    incoming = tmp_path / "in"
    incoming.mkdir()
    for i in range(3):
        (incoming / f"p{i}.csv").write_text("\n".join(iris_lines[i * 50 : (i + 1) * 50]) + "\n")

    def train(ck: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "streaming_lstm.cli", "train", "--source", "file", "--path", str(incoming), "--checkpoint", ck, *extra]

    def start(ck: str, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(train(ck, *extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def interrupt_after(proc: subprocess.Popen[str], prefix: str) -> tuple[str, str]:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(prefix) or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        return "".join(seen) + out, err

    out, err = interrupt_after(start(str(tmp_path / "early")), "streaming-lstm: starting Spark")
    assert [line for line in err.splitlines() if not line.startswith(JVM_NOTICE)] == ["streaming-lstm: interrupted during start-up"], err[-3000:]

    r = subprocess.run(train(str(tmp_path / "capped"), "--max-batches", "1", "--trigger", "0s"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not noise(r.stderr), r.stderr[-3000:]
    assert "stopped (max batches (1))" in r.stdout and "last applied batch 0" in r.stdout, r.stdout

    proc = start(str(tmp_path / "ctrl-c"), "--trigger", "1s")
    out, err = interrupt_after(proc, "batch ")
    assert proc.returncode == 0 and not noise(err), err[-3000:]
    assert "stopped (signal)" in out and "last applied batch" in out, out


@pytest.mark.parametrize("mode", ["classic", pytest.param("connect", marks=pytest.mark.connect)])
def test_predict_scores_a_live_socket_stream_and_picks_up_a_new_version(
    iris_lines: list[str], tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    """`streaming-lstm predict --source socket` as its own process: rows in, JSON lines out, and a
    version written while it runs scores the rows that arrive after it. Under Spark Connect
    (`--remote`, a thin client of conftest's server) the same, the server writing --out."""
    import shutil
    import signal
    import socket
    import threading
    import time

    from streaming_lstm.commands import standalone
    from streaming_lstm.core.config_load import load_config

    staging, model = tmp_path / "staging", tmp_path / "model"
    cfg = load_config(ROOT / "conf" / "iris.toml", {"train.epochs": 3})
    standalone.fit(cfg, ROOT / "data" / "iris.csv", staging)  # v1
    standalone.fit(cfg, ROOT / "data" / "iris.csv", staging)  # v2
    model.mkdir(mode=0o700)
    for f in staging.glob("v0000000001.*"):
        shutil.copy(f, model / f.name)

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    second_part, done = threading.Event(), threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(("\n".join([*iris_lines[:60], "1.0,2.0,oops,4.0,0"]) + "\n").encode())
            second_part.wait(120)
            conn.sendall(("\n".join(iris_lines[60:]) + "\n").encode())
            done.wait(120)

    threading.Thread(target=serve, daemon=True).start()
    out = tmp_path / "scored.jsonl"
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "predict", "--model", str(model), "--source", "socket", "--port", str(port)]
    # No idle timeout: the test waits for the lines it expects, then stops the predictor (events, not margins).
    cmd += ["--out", str(out), "--checkpoint", str(tmp_path / "pck"), "--trigger", "500 milliseconds"]
    if mode == "connect":
        cmd += ["--remote", request.getfixturevalue("connect_url")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def lines() -> list[dict[str, object]]:
            # Complete lines only: the predictor may be writing a batch while this reads.
            return [json.loads(x) for x in out.read_text().split("\n")[:-1]] if out.exists() else []

        deadline = time.monotonic() + 180
        while len(lines()) < 61 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(lines()) == 61, proc.stderr.read() if proc.poll() is not None else "timed out"  # type: ignore[union-attr]
        npz = next(staging.glob("v0000000002.npz"))  # the data first, then the metadata that makes it a version
        shutil.copy(npz, model / npz.name)
        shutil.copy(staging / "v0000000002.json", model / "v0000000002.json")
        second_part.set()
        while len(lines()) < 151 and proc.poll() is None and time.monotonic() < deadline + 180:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a stop, as a user's service manager sends it
        _, err = proc.communicate(timeout=180)
    finally:
        done.set()
        server.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    records = lines()
    # Each row once; the first part (sent before v2 existed) scored with v1, the rest with v2.
    # (Order only within a Spark partition: the socket source deals rows round-robin.)
    assert sorted(str(r["value"]) for r in records) == sorted([*iris_lines, "1.0,2.0,oops,4.0,0"])
    assert [r["model_version"] for r in records] == [1] * 61 + [2] * 90
    assert {str(r["value"]) for r in records[:61]} == {*iris_lines[:60], "1.0,2.0,oops,4.0,0"}
    assert [r["error"] for r in records if "error" in r] == ["non-numeric feature 'petal_length'"]
    scored = [r for r in records if "class" in r]
    assert len(scored) == 150
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in scored)  # type: ignore[arg-type]
    assert "scored 150 rows, 1 rejected" in err
