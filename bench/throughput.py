"""throughput: rows per second trained at large micro-batches, side by side in one run.

Synthetic Iris-like rows, layers 128,256, mini-batch 256, one local epoch. Compared:

* the streaming path (file source -> foreachBatch -> mapInPandas, P partitions on local[2]);
* the single-process from-scratch trainer (training.fit on the same rows);
* ``tf.keras.layers.LSTM`` (two layers + dense head, ``model.fit``, one epoch) in one process;

and each in GFLOP/s against TensorFlow's measured float32 matmul rate on this machine.
FLOPs per row (bench/common.py::lstm_flops_per_row): training ~ 3 x forward, forward =
sum_l T (2 F_l 4H_l + 2 H_l 4H_l) + 2 H_L C.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import FileFeed, lstm_flops_per_row, matmul_peak_gflops, synthetic_rows, write

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = {"model.hidden": "128,256", "training.batch_size": 256, "training.local_epochs": 1, "training.epochs": 1, "stream.trigger": "0s"}


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="20000,100000")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from streaming_lstm import training
    from streaming_lstm.config import SparkConfig, load_config
    from streaming_lstm.data import load_csv
    from streaming_lstm.normalizer import NormStats
    from streaming_lstm.runner import start_query
    from streaming_lstm.sources import file_source
    from streaming_lstm.spark_session import get_session
    from streaming_lstm.stream_trainer import StreamingTrainer
    from streaming_lstm.weights import init_weights

    cfg = load_config(ROOT / "conf" / "iris.toml", {**OVERRIDES, "stream.partitions": args.partitions})
    m = cfg.model
    flops = lstm_flops_per_row(m.timesteps, m.features_per_step, list(m.hidden), len(cfg.data.classes))
    peak = matmul_peak_gflops()
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    spec = training.TrainSpec.from_app(cfg)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        feed = FileFeed(base / "in")
        trainer = StreamingTrainer(spark, cfg, base / "ck", echo=False)
        trainer.warm_up()
        query = start_query(trainer, file_source(spark, feed.dir, cfg))
        try:
            feed.batch(synthetic_rows(2000, seed=99))  # warm the stream path itself
            query.processAllAvailable()
            for size in [int(s) for s in args.sizes.split(",")]:
                rows = synthetic_rows(size, seed=size)
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
                keras_rps = keras_rows_per_s(xn, data.y, m.timesteps, list(m.hidden), len(cfg.data.classes), 256)
                row = {
                    "rows": size,
                    "streaming_rows_per_s": stream_rps,
                    "single_process_rows_per_s": single_rps,
                    "keras_rows_per_s": keras_rps,
                    "streaming_over_single": stream_rps / single_rps,
                    "streaming_over_keras": stream_rps / keras_rps,
                    "streaming_gflops": stream_rps * flops["train"] / 1e9,
                    "single_gflops": single_rps * flops["train"] / 1e9,
                    "keras_gflops": keras_rps * flops["train"] / 1e9,
                }
                row["streaming_share_of_peak"] = row["streaming_gflops"] / peak
                results.append(row)
                if not args.json:
                    print(
                        f"{size:>7} rows: streaming {stream_rps:8.0f} rows/s ({row['streaming_gflops']:.1f} GFLOP/s, "
                        f"{row['streaming_share_of_peak']:.0%} of peak) | single {single_rps:8.0f} | keras {keras_rps:8.0f} | "
                        f"stream/single {row['streaming_over_single']:.2f} stream/keras {row['streaming_over_keras']:.2f}",
                        flush=True,
                    )
        finally:
            query.stop()
    payload = {
        "partitions": args.partitions,
        "hidden": list(m.hidden),
        "batch_size": 256,
        "epochs": 1,
        "flops_per_row": flops,
        "matmul_peak_gflops": peak,
        "results": results,
    }
    path = write("throughput", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
