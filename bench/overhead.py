"""overhead: the trainer's per-micro-batch latency against (a) a no-op foreachBatch over the same
stream and (b) the same training done in one plain TensorFlow process, side by side in one run.

ratio = trainer / (a + b). Small (50 rows) and large (20 000 rows) batches, Iris config, P = 2.
Latency is the wall time from a file landing in the watched directory to the batch being done.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import FileFeed, synthetic_rows, write

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="50,20000")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from streaming_lstm import training
    from streaming_lstm.config import SparkConfig, load_config
    from streaming_lstm.data import load_csv
    from streaming_lstm.runner import start_query
    from streaming_lstm.sources import file_source
    from streaming_lstm.spark_session import get_session
    from streaming_lstm.stream_trainer import StreamingTrainer

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.partitions": args.partitions, "stream.trigger": "0s", "train.warmup_epochs": 0})
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        noop_feed, train_feed = FileFeed(base / "noop"), FileFeed(base / "train")
        noop_q = (
            file_source(spark, noop_feed.dir, cfg)
            .writeStream.foreachBatch(lambda df, bid: None)
            .option("checkpointLocation", str(base / "ck-noop"))
            .trigger(processingTime="0 seconds")
            .start()
        )
        trainer = StreamingTrainer(spark, cfg, base / "ck-train", echo=False)
        trainer.warm_up()
        train_q = start_query(trainer, file_source(spark, train_feed.dir, cfg))
        spec = training.TrainSpec.from_app(cfg, streaming=True)
        try:
            for size in [int(s) for s in args.sizes.split(",")]:
                times: dict[str, list[float]] = {"noop": [], "trainer": [], "plain_tf": []}
                for rep in range(args.reps + 1):  # the first rep warms up, not counted
                    rows = synthetic_rows(size, seed=rep)
                    for name, feed, q in (("noop", noop_feed, noop_q), ("trainer", train_feed, train_q)):
                        started = time.perf_counter()
                        feed.batch(rows)
                        q.processAllAvailable()
                        if rep:
                            times[name].append(time.perf_counter() - started)
                    f = base / "plain.csv"
                    f.write_text("\n".join(rows) + "\n")
                    started = time.perf_counter()
                    data = load_csv(f, cfg.data)
                    state_w, norm = trainer.state.training_weights(), trainer.state.norm
                    for key in range(args.partitions):
                        sel = np.arange(len(data.y)) % args.partitions == key
                        training.train_partition(
                            key, state_w, norm, data.x[sel], data.y[sel], spec, epochs=cfg.train.local_epochs, batch_size=cfg.train.batch_size, seed=key
                        )
                    if rep:
                        times["plain_tf"].append(time.perf_counter() - started)
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {"rows": size, **{f"{k}_s": v for k, v in med.items()}, "ratio": med["trainer"] / (med["noop"] + med["plain_tf"]), "all": times}
                results.append(row)
                if not args.json:
                    print(
                        f"{size:>6} rows: trainer {med['trainer']:.3f} s, no-op {med['noop']:.3f} s, "
                        f"plain TF {med['plain_tf']:.3f} s -> ratio {row['ratio']:.2f}",
                        flush=True,
                    )
        finally:
            noop_q.stop()
            train_q.stop()
    payload = {"partitions": args.partitions, "reps": args.reps, "config": "conf/iris.toml", "results": results}
    path = write("overhead", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
