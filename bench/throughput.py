"""throughput: rows per second trained at large micro-batches, side by side in one run.

Synthetic Iris-like rows, layers 128,256, mini-batch 256, one local epoch. Compared:

* the streaming trainer as ``train`` runs it (file source -> foreachBatch, P partitions on
  local[2]; ``stream.train_in = auto``: this local master's driver trains every batch here), and
  the same with the Python workers training (``stream.train_in = workers``, as on a cluster);
* the single-process from-scratch trainer (training.fit on the same rows);
* ``tf.keras.layers.LSTM`` (two layers + dense head, ``model.fit``, one epoch);

and each in GFLOP/s against TensorFlow's measured float32 matmul rate on this machine (the median
of one measurement per run).
FLOPs per row (bench/common.py::lstm_flops_per_row): training ~ 3 x forward, forward =
sum_l T (2 F_l 4H_l + 2 H_l 4H_l) + 2 H_L C; the share of the peak is also given by the FLOPs
the hand-written step performs (``_performed``: no recurrent gradient products at the first
step, none for the data's own gradient), 0.88 of that count for this model.

The single process, Keras and the matmul peak each run in a fresh process (TensorFlow's thread
pools are set once per process: the streaming driver's are the trainer's own), and each
measurement of a stream starts its query and stops it after its batch (an idle query with a 0 s
trigger polls its source with ~0.3 of a core, which would slow whatever runs beside it).

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
BATCH = 256  # every side's mini-batch
OVERRIDES: dict[str, object] = {
    "model.hidden": "128,256",
    "train.batch_size": BATCH,
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
CHILD_KINDS = (*SMALL_KINDS, "peak")


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
        training.fit(init_weights(spec.model), xn[: 2 * batch], data.y[: 2 * batch], spec, epochs=1, batch_size=batch, seed=0)  # trace
        started = time.perf_counter()
        training.fit(init_weights(spec.model), xn, data.y, spec, epochs=1, batch_size=batch, seed=0)
        return len(xn) / (time.perf_counter() - started)
    if kind == "keras_same_threads":
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads(spec.model, batch))
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
    m = cfg.model
    return keras_rows_per_s(xn, data.y, m.timesteps, list(m.hidden), len(cfg.data.classes), batch)


def in_child(kind: str, rows: int = 0, batch: int = 0, seed: int = 0, xla: bool = False) -> float:
    """:func:`small_batch_child` (or, ``peak``, the matmul peak) in a fresh process, as a user's
    ``fit`` would run: TensorFlow's thread pools are set once per process."""
    argv = [sys.executable, "-m", "bench", "throughput", "--child", kind, "--small-rows", str(rows), "--small-batch", str(batch), "--child-seed", str(seed)]
    argv += ["--xla"] if xla else []
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def small_batch_rows_per_s(rows: int, batch: int, seed: int, xla: bool = False) -> dict[str, float]:
    """The seed's small mini-batches: the from-scratch trainer against Keras, each in a fresh process."""
    out = {f"{kind}_rows_per_s": in_child(kind, rows, batch, seed, xla) for kind in SMALL_KINDS}
    out["from_scratch_over_keras"] = out["from_scratch_rows_per_s"] / out["keras_rows_per_s"]
    out["from_scratch_over_keras_same_threads"] = out["from_scratch_rows_per_s"] / out["keras_same_threads_rows_per_s"]
    return out


class Stream:
    """The streaming trainer on its own input directory and checkpoint; :meth:`rows_per_s` starts
    its query, feeds a warm-up batch and then the measured one, and stops the query."""

    def __init__(self, spark: Any, cfg: Any, base: Path) -> None:
        from streaming_lstm.trainer.handler import StreamingTrainer

        self.spark, self.cfg = spark, cfg
        self.feed = FileFeed(base / "in")
        self.trainer = StreamingTrainer(spark, cfg, base / "ck")
        self.trainer.warm_up()

    def rows_per_s(self, rows: list[str]) -> float:
        from streaming_lstm.trainer.runner import start_query
        from streaming_lstm.trainer.sources import file_source

        query = start_query(self.trainer, file_source(self.spark, self.feed.dir, self.cfg))
        try:
            self.feed.batch(synthetic_rows(2000, seed=99 + self.feed.n))  # the query's first batch, not timed
            query.processAllAvailable()
            started = time.perf_counter()
            self.feed.batch(rows)
            query.processAllAvailable()
            return len(rows) / (time.perf_counter() - started)
        finally:
            query.stop()


SIDES = ("streaming", "streaming_workers", "single", "keras")


def measure(streams: dict[str, Stream], size: int, seed: int, xla: bool) -> dict[str, float]:
    """Rows/s of each side (:data:`SIDES`) on the same ``size`` rows, one after another (the
    single process with ``train.xla = xla``, as the streams have it)."""
    rows = synthetic_rows(size, seed=seed)
    out = {name: stream.rows_per_s(rows) for name, stream in streams.items()}
    out["single"] = in_child("from_scratch", size, BATCH, seed, xla)
    out["keras"] = in_child("keras", size, BATCH, seed)
    return out


def summary(size: int, runs: list[dict[str, float]], flops: dict[str, float], peak: float) -> dict[str, Any]:
    """One size's medians, ratios and shares of the peak, with each side's and ratio's spread."""
    med = {k: statistics.median(r[k] for r in runs) for k in SIDES}
    ratios = {
        "streaming_over_single": [r["streaming"] / r["single"] for r in runs],
        "streaming_over_keras": [r["streaming"] / r["keras"] for r in runs],
        "workers_over_single": [r["streaming_workers"] / r["single"] for r in runs],
    }
    return {
        "rows": size,
        "streaming_rows_per_s": med["streaming"],
        "streaming_workers_rows_per_s": med["streaming_workers"],
        "single_process_rows_per_s": med["single"],
        "keras_rows_per_s": med["keras"],
        "streaming_over_single": med["streaming"] / med["single"],
        "streaming_over_keras": med["streaming"] / med["keras"],
        "workers_over_single": med["streaming_workers"] / med["single"],
        "streaming_gflops": med["streaming"] * flops["train"] / 1e9,
        "streaming_share_of_peak": med["streaming"] * flops["train"] / 1e9 / peak,
        "streaming_share_of_peak_performed": med["streaming"] * flops["train_performed"] / 1e9 / peak,
        "workers_share_of_peak": med["streaming_workers"] * flops["train"] / 1e9 / peak,
        "single_gflops": med["single"] * flops["train"] / 1e9,
        "keras_gflops": med["keras"] * flops["train"] / 1e9,
        "runs": {k: spread([r[k] for r in runs]) for k in SIDES},
        "ratio_runs": {k: spread(v) for k, v in ratios.items()},
    }


def arguments(argv: list[str] | None) -> argparse.Namespace:
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
    p.add_argument("--child", choices=CHILD_KINDS, help=argparse.SUPPRESS)
    p.add_argument("--child-seed", type=int, default=7, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def print_size(r: dict[str, Any], runs: int) -> None:
    print(
        f"{r['rows']:>7} rows (median of {runs}): streaming {r['streaming_rows_per_s']:.0f} rows/s "
        f"({r['streaming_share_of_peak']:.0%} of peak; {r['streaming_share_of_peak_performed']:.0%} by the FLOPs performed) | "
        f"stream/single {r['streaming_over_single']:.2f} stream/keras {r['streaming_over_keras']:.2f} | "
        f"workers {r['streaming_workers_rows_per_s']:.0f} rows/s, /single {r['workers_over_single']:.2f}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = arguments(argv)
    if args.child == "peak":
        print(matmul_peak_gflops())
        return {}
    if args.child:
        print(small_batch_child(args.child, args.small_rows, args.small_batch, args.child_seed, args.xla))
        return {}

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.spark.session import get_session

    settings = {"stream.partitions": args.partitions, "train.prequential": args.prequential, "train.xla": args.xla}
    cfg = load_config(ROOT / "conf" / "iris.toml", {**OVERRIDES, **settings})
    m = cfg.model
    flops = lstm_flops_per_row(m.timesteps, m.features_per_step, list(m.hidden), len(cfg.data.classes))
    peaks: list[float] = []
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    small: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workers = load_config(ROOT / "conf" / "iris.toml", {**OVERRIDES, **settings, "stream.train_in": "workers"})
        streams = {"streaming": Stream(spark, cfg, Path(tmp) / "auto"), "streaming_workers": Stream(spark, workers, Path(tmp) / "workers")}
        for run in range(args.runs):
            peaks.append(in_child("peak"))  # once per run: the machine's speed drifts between hours
            for size in sizes:
                runs[size].append(measure(streams, size, size + run, args.xla))
                if not args.json:
                    print(f"run {run + 1} {size:>7} rows: " + " | ".join(f"{k} {runs[size][-1][k]:8.0f}" for k in SIDES) + " rows/s", flush=True)
            small.append(small_batch_rows_per_s(args.small_rows, args.small_batch, 7 + run, args.xla))
            if not args.json:
                ours, keras, same = (small[-1][f"{k}_rows_per_s"] for k in SMALL_KINDS)
                line = f"from scratch {ours:.0f} rows/s | keras {keras:.0f} | keras, same threads {same:.0f}"
                print(f"run {run + 1} mini-batch {args.small_batch}: {line}", flush=True)
    peak = statistics.median(peaks)
    results = [summary(size, runs[size], flops, peak) for size in sizes]
    if not args.json:
        for r in results:
            print_size(r, args.runs)
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
        "batch_size": BATCH,
        "epochs": 1,
        "runs": args.runs,
        "flops_per_row": flops,
        "matmul_peak_gflops": peak,
        "matmul_peak_runs": spread(peaks),
        "results": results,
        "small_mini_batch": small_row,
    }
    path = write(args.out, payload)
    print(json.dumps(payload) if args.json else f"mini-batch {args.small_batch}: from scratch / keras {small_row['from_scratch_over_keras']:.2f}\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
