"""coldstart: process start to the first applied batch, against one-process ``fit`` of the same rows.

Each run starts two fresh processes, alternating: ``streaming-lstm train --source file`` on a
directory holding one CSV of ``--rows`` Iris rows (a seeded shuffle of ``data/iris.csv``) with
``--max-batches 1``, timed from the process's start to the first line of its ``metrics.jsonl``
(the batch is applied: its model version saved), and ``streaming-lstm fit --data`` on the same
file, timed to its exit. Every line either process writes is stamped with the seconds
since its start, so the JSON holds the phases of each cold start (session, worker warm-up, query
start, first batch) as the trainer logs them.

Each run also starts ``train`` in five variants, so each start-up lever's share is measured side
by side: without the JVM's class-data-sharing archive (``no_cds``: ``STREAMING_LSTM_CDS=0``;
``streaming_lstm/spark/cds.py``), with Spark's own Python daemon instead of the one that forks the
workers with TensorFlow imported (``spark_daemon``; ``streaming_lstm/spark/daemon.py``), with
the JVM's C1 compiler only (``c1``: ``STREAMING_LSTM_JAVA_OPTIONS=-XX:TieredStopAtLevel=1``), and
with that daemon importing only once Spark launches it instead of in a zygote started beside the
JVM (``no_zygote``: ``STREAMING_LSTM_ZYGOTE=0``; ``streaming_lstm/spark/zygote.py``), and with the
JVM's own C2 thresholds instead of the driver's 100 times later ones (``c2_early``;
``streaming_lstm/local/jvm_deps.py``'s ``LATE_C2``), and with the Python workers training the
batch instead of the driver (``workers``: ``stream.train_in = "workers"``; trainer/planned.py).
``--json`` prints ``train_first_batch_s``, ``fit_s`` and ``ratio`` (medians, with each run's
figures and min/max under ``runs``) and ``train_<variant>_first_batch_s`` for each variant.
"""

from __future__ import annotations

import json
import os
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
from streaming_lstm.spark.cds import archive_path

ROOT = Path(__file__).resolve().parent.parent
# The JVM's own C2 thresholds (the driver's are LATE_C2's, 100 times later).
JVM_C2_THRESHOLDS = {"Tier4InvocationThreshold": 5000, "Tier4MinInvocationThreshold": 600, "Tier4CompileThreshold": 15000, "Tier4BackEdgeThreshold": 40000}
# name -> (environment, extra train arguments): each changes one start-up lever from the default
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "no_cds": ({"STREAMING_LSTM_CDS": "0"}, []),
    "spark_daemon": ({}, ["--set", 'spark.conf={"spark.python.daemon.module" = "pyspark.daemon"}']),
    "c1": ({"STREAMING_LSTM_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1"}, []),
    "no_zygote": ({"STREAMING_LSTM_ZYGOTE": "0"}, []),
    "c2_early": ({"STREAMING_LSTM_JAVA_OPTIONS": " ".join(f"-XX:{k}={v}" for k, v in JVM_C2_THRESHOLDS.items())}, []),
    "workers": ({}, ["--set", "stream.train_in=workers"]),
}
FIGURES = ("train_first_batch_s", *(f"train_{v}_first_batch_s" for v in VARIANTS), "fit_s", "ratio")
CLI = [str(Path(sys.executable).with_name("streaming-lstm"))]  # the console script, as a user starts it


def sample(rows: int, into: Path, seed: int = 0) -> Path:
    """A CSV of ``rows`` Iris rows in a seeded order (every class present), header first."""
    header, *lines = (ROOT / "data" / "iris.csv").read_text().splitlines()
    order = np.random.default_rng(seed).permutation(len(lines))[:rows]
    into.mkdir(parents=True, exist_ok=True)
    path = into / "rows.csv"
    path.write_text("\n".join([header, *(lines[i] for i in order)]) + "\n")
    return path


def stamped(proc: subprocess.Popen[str], started: float, out: list[tuple[float, str]]) -> threading.Thread:
    """Collect the process's output lines with the seconds since ``started`` at which each arrived."""

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append((round(time.perf_counter() - started, 3), line.rstrip()[:200]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def run_train(data: Path, checkpoint: Path, timeout: float, variant: str | None = None) -> dict[str, Any]:
    """Seconds from process start to the first applied batch (the first metrics.jsonl line), as
    the defaults start or with one of :data:`VARIANTS`."""
    changed, extra = VARIANTS[variant] if variant else ({}, [])
    argv = [*CLI, "train", "--source", "file", "--path", str(data.parent), "--checkpoint", str(checkpoint), "--max-batches", "1", *extra]
    env = {**{k: v for k, v in os.environ.items() if k != "STREAMING_LSTM_ZYGOTE"}, "STREAMING_LSTM_CDS": "1", "STREAMING_LSTM_JAVA_OPTIONS": "", **changed}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    reader = stamped(proc, started, lines)
    metrics, first = checkpoint / "metrics.jsonl", None
    while first is None and time.perf_counter() - started < timeout and proc.poll() is None:
        if metrics.exists() and metrics.stat().st_size > 0:
            first = time.perf_counter() - started
        time.sleep(0.02)
    if first is None and metrics.exists() and metrics.stat().st_size > 0:
        first = time.perf_counter() - started  # the process exited between two polls
    proc.wait(timeout=timeout)
    reader.join(timeout=5)
    if first is None:
        raise SystemExit(f"train applied no batch within {timeout:.0f} s (exit {proc.returncode}); its last lines: {lines[-5:]}")
    return {"first_batch_s": first, "exit_s": time.perf_counter() - started, "output": lines}


def run_fit(data: Path, out: Path, timeout: float) -> dict[str, Any]:
    """Seconds from process start to the exit of ``fit`` on the same rows (model saved)."""
    started = time.perf_counter()
    proc = subprocess.Popen([*CLI, "fit", "--data", str(data), "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    reader = stamped(proc, started, lines)
    if proc.wait(timeout=timeout) != 0:
        raise SystemExit(f"fit exited {proc.returncode}: {lines[-5:]}")
    reader.join(timeout=5)
    return {"exit_s": time.perf_counter() - started, "output": lines}


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("coldstart", __doc__)
    p.add_argument("--rows", type=int, default=50, help="Iris rows in the one batch (default 50)")
    p.add_argument("--runs", type=int, default=3, help="alternations of train and fit (default 3)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a process may take (default 300)")
    args = p.parse_args(argv)
    say = (lambda *_a, **_k: None) if args.json else print
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            base = Path(tmp) / f"run{run}"
            data = sample(args.rows, base / "in", seed=run)
            train = run_train(data, base / "ck", args.timeout)
            fit = run_fit(data, base / "model", args.timeout)
            ratio = train["first_batch_s"] / fit["exit_s"]
            runs.append({"train_first_batch_s": train["first_batch_s"], "train_exit_s": train["exit_s"], "fit_s": fit["exit_s"], "ratio": ratio})
            runs[-1]["train_output"] = train["output"]
            for variant in VARIANTS:
                other = run_train(data, base / f"ck-{variant}", args.timeout, variant)
                runs[-1].update({f"train_{variant}_first_batch_s": other["first_batch_s"], f"train_{variant}_output": other["output"]})
            others = ", ".join(f"{v} {runs[-1][f'train_{v}_first_batch_s']:.1f} s" for v in VARIANTS)
            say(f"run {run + 1}: train's first applied batch {train['first_batch_s']:.1f} s ({others}), fit {fit['exit_s']:.1f} s: {ratio:.2f}x", flush=True)
    payload: dict[str, Any] = {
        "rows": args.rows,
        "cds_archive": str(archive_path()) if archive_path().exists() else None,
        **{k: statistics.median(r[k] for r in runs) for k in FIGURES},
        "runs": {k: spread([r[k] for r in runs]) for k in (*FIGURES, "train_exit_s")},
        "per_run": runs,
    }
    path = write("coldstart", payload)
    if args.json:
        print(json.dumps({k: v for k, v in payload.items() if k != "per_run"}))
    else:
        print(f"median: train {payload['train_first_batch_s']:.1f} s, fit {payload['fit_s']:.1f} s, ratio {payload['ratio']:.2f}\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
