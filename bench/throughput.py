"""throughput: rows per second trained at large micro-batches, side by side in one run.

Synthetic Iris-like rows, layers 128,256, mini-batch 256, one local epoch. Compared:

* the streaming path (file source -> foreachBatch -> mapInPandas, P partitions on local[2]);
* the single-process from-scratch trainer (training.fit on the same rows);
* ``tf.keras.layers.LSTM`` (two layers + dense head, ``model.fit``, one epoch) in one process;

and each in GFLOP/s against TensorFlow's measured float32 matmul rate on this machine.
FLOPs per row (bench/common.py::lstm_flops_per_row): training ~ 3 x forward, forward =
sum_l T (2 F_l 4H_l + 2 H_l 4H_l) + 2 H_L C; the share of the peak is also given by the FLOPs
the hand-written step performs (``_performed``: no recurrent gradient products at the first
step, none for the data's own gradient), 0.88 of that count for this model.

The small-mini-batch row (the 2016 experiment's mini-batch of 10) trains ``--small-rows`` rows
in fresh processes, one each for the from-scratch trainer, Keras with TensorFlow's default
threads, and Keras with the from-scratch trainer's threads (``streaming_lstm.core.threads``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import FileFeed, lstm_flops_per_row, matmul_peak_gflops, synthetic_rows, write
from bench.common import parser as bench_parser

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = {
    "model.hidden": "128,256",
    "train.batch_size": 256,
    "train.local_epochs": 1,
    "train.warmup_epochs": 0,
    "train.warmup_batch_size": 0,  # every side trains in mini-batches of 256
    "train.rehearsal_rows": 0,  # every side trains the same rows once
    "train.epochs": 1,
    "stream.trigger": "0s",
}


def keras_rows_per_s(x: np.ndarray, y: np.ndarray, timesteps: int, hidden: list[int], classes: int, batch: int) -> float:
    import tensorflow as tf

    # The from-scratch trainer turned on TF op determinism in this process; Keras's initialisers
    # then need a seed.
    tf.random.set_seed(0)
    layers: list[Any] = [tf.keras.Input((timesteps, x.shape[1] // timesteps))]
    for i, h in enumerate(hidden):
        layers.append(tf.keras.layers.LSTM(h, return_sequences=i < len(hidden) - 1))
    layers.append(tf.keras.layers.Dense(classes))
    model = tf.keras.Sequential(layers)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001), loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seq = x.reshape(len(x), timesteps, -1)
    model.fit(seq[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace first
    started = time.perf_counter()
    model.fit(seq, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    return len(x) / (time.perf_counter() - started)


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


SMALL_KINDS = ("from_scratch", "keras", "keras_same_threads")


def small_batch_child(kind: str, rows: int, batch: int, seed: int, xla: bool = False) -> float:
    """Rows/s of one epoch at mini-batch ``batch`` in this (fresh) process: the from-scratch
    ``training.fit`` with its own thread choice, Keras ``fit`` with TensorFlow's defaults, or Keras
    with the from-scratch trainer's thread choice (so that the threads are not the difference)."""
    import tensorflow as tf

    from streaming_lstm.core import training
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.threads import INTER_OP_THREADS, intra_op_threads
    from streaming_lstm.core.weights import init_weights
    from streaming_lstm.parse.data import load_csv

    cfg = load_config(ROOT / "conf" / "iris.toml", {**OVERRIDES, "train.batch_size": batch, "train.xla": xla})
    spec = training.TrainSpec.from_app(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "small.csv"
        f.write_text("\n".join(synthetic_rows(rows, seed=seed)) + "\n")
        data = load_csv(f, cfg.data)
    xn = NormStats.of(data.x).transform(data.x)
    if kind == "from_scratch":
        training.fit(init_weights(spec.model), xn[:64], data.y[:64], spec, epochs=1, batch_size=batch, seed=0)  # trace
        started = time.perf_counter()
        training.fit(init_weights(spec.model), xn, data.y, spec, epochs=1, batch_size=batch, seed=0)
        return len(xn) / (time.perf_counter() - started)
    if kind == "keras_same_threads":
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads(spec.model, batch))
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
    m = cfg.model
    return keras_rows_per_s(xn, data.y, m.timesteps, list(m.hidden), len(cfg.data.classes), batch)


def small_batch_rows_per_s(rows: int, batch: int, seed: int, xla: bool = False) -> dict[str, float]:
    """The seed's small mini-batches: the from-scratch trainer against Keras, each in a fresh
    process as a user's ``fit`` would run (TensorFlow's thread pools are set once per process)."""
    out: dict[str, float] = {}
    for kind in SMALL_KINDS:
        argv = [sys.executable, "-m", "bench", "throughput", "--child", kind, "--small-rows", str(rows), "--small-batch", str(batch), "--child-seed", str(seed)]
        argv += ["--xla"] if xla else []
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
        out[f"{kind}_rows_per_s"] = float(done.stdout.strip().splitlines()[-1])
    out["from_scratch_over_keras"] = out["from_scratch_rows_per_s"] / out["keras_rows_per_s"]
    out["from_scratch_over_keras_same_threads"] = out["from_scratch_rows_per_s"] / out["keras_same_threads_rows_per_s"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("throughput", __doc__)
    p.add_argument("--sizes", default="20000,100000")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="measurements of each row; min/median/max reported (default 3)")
    p.add_argument("--small-rows", type=int, default=3000, help="rows for the small mini-batch row (default 3000)")
    p.add_argument("--small-batch", type=int, default=10, help="the small mini-batch size (default 10, the seed's)")
    p.add_argument("--out", default="throughput", help="results file name under bench/results (default throughput)")
    p.add_argument(
        "--prequential",
        choices=("auto", "batch", "step"),
        default="auto",
        help="the streaming side's train.prequential: auto (the default: step, for this classifier), "
        "batch (a forward pass scores each row first) or step (scored in the training pass)",
    )
    p.add_argument("--xla", action="store_true", help="the from-scratch sides with train.xla = true (each step compiled by XLA)")
    p.add_argument("--child", choices=SMALL_KINDS, help=argparse.SUPPRESS)
    p.add_argument("--child-seed", type=int, default=7, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(small_batch_child(args.child, args.small_rows, args.small_batch, args.child_seed, args.xla))
        return {}

    from streaming_lstm.core import training
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import init_weights
    from streaming_lstm.parse.data import load_csv
    from streaming_lstm.spark.session import get_session
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    settings = {"stream.partitions": args.partitions, "train.prequential": args.prequential, "train.xla": args.xla}
    cfg = load_config(ROOT / "conf" / "iris.toml", {**OVERRIDES, **settings})
    m = cfg.model
    classes = len(cfg.data.classes)
    flops = lstm_flops_per_row(m.timesteps, m.features_per_step, list(m.hidden), classes)
    peak = matmul_peak_gflops()
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    spec = training.TrainSpec.from_app(cfg)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    small: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        feed = FileFeed(base / "in")
        trainer = StreamingTrainer(spark, cfg, base / "ck")
        trainer.warm_up()
        query = start_query(trainer, file_source(spark, feed.dir, cfg))
        try:
            feed.batch(synthetic_rows(2000, seed=99))  # warm the stream path itself
            query.processAllAvailable()
            for run in range(args.runs):
                for size in sizes:
                    rows = synthetic_rows(size, seed=size + run)
                    started = time.perf_counter()
                    feed.batch(rows)
                    query.processAllAvailable()
                    stream_rps = size / (time.perf_counter() - started)
                    f = base / "plain.csv"
                    f.write_text("\n".join(rows) + "\n")
                    data = load_csv(f, cfg.data)
                    xn = NormStats.of(data.x).transform(data.x)
                    training.fit(init_weights(spec.model), xn[:512], data.y[:512], spec, epochs=1, batch_size=256, seed=0)  # trace
                    started = time.perf_counter()
                    training.fit(init_weights(spec.model), xn, data.y, spec, epochs=1, batch_size=256, seed=0)
                    single_rps = size / (time.perf_counter() - started)
                    keras_rps = keras_rows_per_s(xn, data.y, m.timesteps, list(m.hidden), classes, 256)
                    runs[size].append({"streaming": stream_rps, "single": single_rps, "keras": keras_rps})
                    if not args.json:
                        line = f"streaming {stream_rps:8.0f} rows/s | single {single_rps:8.0f} | keras {keras_rps:8.0f}"
                        print(f"run {run + 1} {size:>7} rows: {line}", flush=True)
                small.append(small_batch_rows_per_s(args.small_rows, args.small_batch, 7 + run, args.xla))
                if not args.json:
                    ours, keras, same = (small[-1][f"{k}_rows_per_s"] for k in SMALL_KINDS)
                    line = f"from scratch {ours:.0f} rows/s | keras {keras:.0f} | keras, same threads {same:.0f}"
                    print(f"run {run + 1} mini-batch {args.small_batch}: {line}", flush=True)
        finally:
            query.stop()
    results = []
    for size in sizes:
        med = {k: statistics.median(r[k] for r in runs[size]) for k in ("streaming", "single", "keras")}
        results.append(
            {
                "rows": size,
                "streaming_rows_per_s": med["streaming"],
                "single_process_rows_per_s": med["single"],
                "keras_rows_per_s": med["keras"],
                "streaming_over_single": med["streaming"] / med["single"],
                "streaming_over_keras": med["streaming"] / med["keras"],
                "streaming_gflops": med["streaming"] * flops["train"] / 1e9,
                "streaming_share_of_peak": med["streaming"] * flops["train"] / 1e9 / peak,
                "streaming_share_of_peak_performed": med["streaming"] * flops["train_performed"] / 1e9 / peak,
                "single_gflops": med["single"] * flops["train"] / 1e9,
                "keras_gflops": med["keras"] * flops["train"] / 1e9,
                "runs": {k: spread([r[k] for r in runs[size]]) for k in ("streaming", "single", "keras")},
                "ratio_runs": {
                    "streaming_over_single": spread([r["streaming"] / r["single"] for r in runs[size]]),
                    "streaming_over_keras": spread([r["streaming"] / r["keras"] for r in runs[size]]),
                },
            }
        )
        if not args.json:
            r = results[-1]
            print(
                f"{size:>7} rows (median of {args.runs}): streaming {r['streaming_rows_per_s']:.0f} rows/s "
                f"({r['streaming_share_of_peak']:.0%} of peak; {r['streaming_share_of_peak_performed']:.0%} by the FLOPs performed) | "
                f"stream/single {r['streaming_over_single']:.2f} stream/keras {r['streaming_over_keras']:.2f}"
            )
    small_row = {
        "rows": args.small_rows,
        "batch_size": args.small_batch,
        **{k: statistics.median(r[k] for r in small) for k in small[0]},
        "runs": {k: spread([r[k] for r in small]) for k in small[0]},
    }
    payload = {
        "partitions": args.partitions,
        "prequential": args.prequential,
        "xla": args.xla,
        "hidden": list(m.hidden),
        "batch_size": 256,
        "epochs": 1,
        "runs": args.runs,
        "flops_per_row": flops,
        "matmul_peak_gflops": peak,
        "results": results,
        "small_mini_batch": small_row,
    }
    path = write(args.out, payload)
    print(json.dumps(payload) if args.json else f"mini-batch {args.small_batch}: from scratch / keras {small_row['from_scratch_over_keras']:.2f}\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
