"""seed-table: the 2016 seed's experiment, next to its published times.

One micro-batch holding all 150 Iris rows; layers 128,256; mini-batch 10; learning rate 1e-3;
P = 3, 5 and 15 partitions, and the standalone (non-distributed) trainer. Each configuration runs in
a fresh process:

* cold: from process start to a trained model (Python, Spark, TF start-up and tracing included);
* warm: the same batch again once the workers are up (median of 3).

Every task trains ``--epochs`` local epochs (default 5). The seed did not publish its epoch count;
its per-partition times grew with the rows per partition, so it ran many. Speed-up = seed / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write

ROOT = Path(__file__).resolve().parent.parent
SEED = {3: 1704.81, 5: 1023.43, 15: 510.89, "standalone": 4335.66}  # seconds, 12 cores (slides 19-22)


def overrides(epochs: int, partitions: int) -> dict[str, Any]:
    return {
        "model.hidden": "128,256",
        "train.batch_size": 10,
        "train.learning_rate": 0.001,
        "train.local_learning_rate": 0.001,
        "train.local_epochs": epochs,
        "train.warmup_epochs": 0,  # the seed's fixed epoch count
        "train.warmup_batch_size": 0,  # ... and mini-batch
        "train.rehearsal_rows": 0,  # ... over the batch's own rows only
        "train.epochs": epochs,
        "stream.partitions": partitions,
        "stream.trigger": "0s",
    }


def child_stream(partitions: int, epochs: int, started: float) -> dict[str, Any]:
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.spark.session import get_session
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    cfg = load_config(ROOT / "conf" / "iris.toml", overrides(epochs, partitions))
    rows = (ROOT / "data" / "iris.csv").read_text().splitlines()[1:]
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    source = MemorySource(spark)
    with tempfile.TemporaryDirectory() as ck:
        trainer = StreamingTrainer(spark, cfg, ck)
        query = start_query(trainer, source.df())
        try:
            source.add(rows)
            query.processAllAvailable()
            cold = time.time() - started
            warm = []
            for _ in range(3):
                source.add(rows)
                query.processAllAvailable()
                warm.append(trainer.history[-1]["latency_s"])
        finally:
            query.stop()
    return {"cold_s": cold, "warm_s": statistics.median(warm), "warm_all_s": warm, "rows_per_batch": trainer.history[0]["rows_valid"]}


def child_standalone(epochs: int, started: float) -> dict[str, Any]:
    from streaming_lstm.commands import standalone
    from streaming_lstm.core.config_load import load_config

    cfg = load_config(ROOT / "conf" / "iris.toml", overrides(epochs, 1))
    with tempfile.TemporaryDirectory() as out:
        standalone.fit(cfg, ROOT / "data" / "iris.csv", out)
        cold = time.time() - started
        warm = []
        for _ in range(3):
            t = time.perf_counter()
            standalone.fit(cfg, ROOT / "data" / "iris.csv", out)
            warm.append(time.perf_counter() - t)
    return {"cold_s": cold, "warm_s": statistics.median(warm), "warm_all_s": warm, "rows_per_batch": 150}


def run_child(kind: str, epochs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "bench.seed_table", "--child", kind, "--epochs", str(epochs), "--started", repr(started)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        raise RuntimeError(f"seed-table child {kind} failed:\n{r.stderr[-3000:]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("seed-table", __doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        started = args.started or time.time()
        result = child_standalone(args.epochs, started) if args.child == "standalone" else child_stream(int(args.child), args.epochs, started)
        print(json.dumps(result))
        return result
    rows = []
    for kind in ("3", "5", "15", "standalone"):
        r = run_child(kind, args.epochs)
        seed = SEED[int(kind)] if kind != "standalone" else SEED["standalone"]
        row = {
            "config": f"P = {kind}" if kind != "standalone" else "standalone",
            "seed_s": seed,
            **r,
            "speedup_cold": seed / r["cold_s"],
            "speedup_warm": seed / r["warm_s"],
        }
        rows.append(row)
        if not args.json:
            print(
                f"{row['config']:<11} cold {r['cold_s']:6.1f} s   warm {r['warm_s']:6.3f} s   seed {seed:8.1f} s   "
                f"speed-up warm {row['speedup_warm']:8.0f}x  cold {row['speedup_cold']:6.0f}x",
                flush=True,
            )
    payload = {"epochs": args.epochs, "hidden": [128, 256], "batch_size": 10, "learning_rate": 0.001, "master": "local[2]", "results": rows}
    path = write("seed-table", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
