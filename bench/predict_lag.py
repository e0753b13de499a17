"""predict-lag: from a model version being written by the trainer to the stream predictor scoring
rows with it (p50/p95), on one machine, the way a team runs them: the trainer in one Spark
application, ``streaming-lstm predict --source socket`` in another.

The trainer (this process) runs on its configured trigger (conf/iris.toml: 2 s), fed 50 rows/s;
the predictor reads 80 rows/s from a socket this process serves. Lag = (the ``scored_at`` of the
first output line with version v) - (mtime of v's metadata file, the moment the version exists).
Each predictor trigger in ``--triggers`` is measured in turn in the same run, so the figures compare
side by side.

What bounds the lag: a version written while a predictor batch is being scored has that batch
scored again with it; one written after waits for the next trigger, then for that batch. Target:
p95 within one trigger interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parser as bench_parser
from bench.common import write

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def serve_rows(server: socket.socket, lines: list[str], rng: np.random.Generator, stop: threading.Event) -> None:
    """The predictor's input: 20 rows every 0.25 s to whoever connects (Spark's socket source)."""
    server.settimeout(1.0)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        with conn:
            while not stop.is_set():
                try:
                    conn.sendall(("\n".join(lines[i] for i in rng.integers(0, len(lines), 20)) + "\n").encode())
                except OSError:
                    break
                stop.wait(0.25)


def read_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                out.append(json.loads(line))
    return out


def measure(spark: Any, lines: list[str], pred_trigger: float, versions: int, rng: np.random.Generator, tmp: Path) -> dict[str, Any]:
    from streaming_lstm.core.config import parse_duration
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.keep_versions": versions + 10})
    ck = tmp / "ck"
    train_src = MemorySource(spark)
    trainer = StreamingTrainer(spark, cfg, ck)
    trainer.warm_up()
    tq = start_query(trainer, train_src.df())
    train_src.add([lines[i] for i in rng.integers(0, len(lines), 50)])
    tq.processAllAvailable()

    stop, stop_training = threading.Event(), threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve_rows, args=(server, lines, rng, stop), daemon=True).start()
    out = tmp / "scored.jsonl"
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "predict", "--model", str(ck), "--source", "socket", "--port", str(server.getsockname()[1])]
    cmd += ["--trigger", f"{int(pred_trigger * 1000)} milliseconds", "--out", str(out), "--checkpoint", str(tmp / "pck")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def feed_trainer() -> None:
        while not stop_training.is_set():
            train_src.add([lines[i] for i in rng.integers(0, len(lines), 25)])
            stop_training.wait(0.5)

    try:
        deadline = time.monotonic() + 180
        while not read_lines(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the predictor is up once it has scored rows
        if proc.poll() is not None or not read_lines(out):
            raise RuntimeError(f"the predictor did not start: {proc.stderr.read() if proc.stderr else ''}")
        first = trainer.state.version
        threading.Thread(target=feed_trainer, daemon=True).start()
        deadline = time.monotonic() + versions * parse_duration(cfg.stream.trigger, "stream.trigger") * 3 + 30
        while trainer.state.version < first + versions and time.monotonic() < deadline:
            time.sleep(0.2)
        stop_training.set()
        tq.processAllAvailable()  # the rows already fed make their version now
        time.sleep(pred_trigger + 2)  # let the predictor pick up the last version
    finally:
        stop_training.set()
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        tq.stop()
        server.close()
    written = {int(f.stem[1:]): os.stat(f).st_mtime for f in (ck / "model").glob("v*.json")}
    first_use: dict[int, float] = {}
    for r in read_lines(out):
        if "class" in r:
            first_use.setdefault(int(r["model_version"]), float(r["scored_at"]))
    seen = [v for v in sorted(first_use) if v in written and v > first]
    lags = [first_use[v] - written[v] for v in seen]
    return {
        "predictor_trigger_s": pred_trigger,
        "trainer_trigger": cfg.stream.trigger,
        "versions_written": len([v for v in written if v > first]),
        "versions_observed": len(lags),
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p95_s": pct(lags, 95),
        "lag_max_s": max(lags) if lags else None,
        "lags_s": [round(x, 3) for x in lags],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("predict-lag", __doc__)
    p.add_argument("--versions", type=int, default=20, help="model versions to observe per predictor trigger")
    p.add_argument("--triggers", default="2,1,0.5", help="predictor trigger intervals to measure, seconds, comma-separated")
    args = p.parse_args(argv)

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    lines = (ROOT / "data" / "iris.csv").read_text().splitlines()[1:]
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    rng = np.random.default_rng(0)
    runs = []
    for trigger in [float(x) for x in args.triggers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(spark, lines, trigger, args.versions, rng, Path(tmp))
        runs.append(r)
        if not args.json:
            print(
                f"predictor trigger {trigger:g} s: {r['versions_observed']} of {r['versions_written']} versions used, lag p50 "
                f"{r['lag_p50_s']:.2f} s, p95 {r['lag_p95_s']:.2f} s, max {r['lag_max_s']:.2f} s",
                flush=True,
            )
    payload = {"runs": runs, "lag_p95_within_trigger": {str(r["predictor_trigger_s"]): (r["lag_p95_s"] or 1e9) <= r["predictor_trigger_s"] for r in runs}}
    path = write("predict-lag", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
