"""predict-lag: from a model version being written by the trainer to the stream predictor scoring
rows with it (p50/p95), with trainer and predictor running side by side in one Spark session.

Lag = (time the predictor first scored a row with version v) - (mtime of v's metadata file, the
moment the version exists). Target: p95 within one trigger interval of the predictor.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench predict-lag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--trigger", type=float, default=1.0, help="predictor trigger interval, seconds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from streaming_lstm.config import SparkConfig, load_config
    from streaming_lstm.predictor import StreamPredictor
    from streaming_lstm.runner import start_query
    from streaming_lstm.sources import MemorySource
    from streaming_lstm.spark_session import get_session
    from streaming_lstm.trainer import StreamingTrainer

    lines = (ROOT / "data" / "iris.csv").read_text().splitlines()[1:]
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", "stream.keep_versions": 100})
    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck"
        train_src, pred_src = MemorySource(spark), MemorySource(spark)
        trainer = StreamingTrainer(spark, cfg, ck, echo=False)
        trainer.warm_up()
        tq = start_query(trainer, train_src.df())
        train_src.add(lines[:50])
        tq.processAllAvailable()
        predictor = StreamPredictor(spark, ck, io.StringIO())
        pq = (
            pred_src.df()
            .writeStream.foreachBatch(predictor.handle)
            .option("checkpointLocation", str(Path(tmp) / "pck"))
            .trigger(processingTime=f"{int(args.trigger * 1000)} milliseconds")
            .start()
        )
        stop = threading.Event()

        def feed_predictor() -> None:
            while not stop.is_set():
                pred_src.add([lines[i] for i in rng.integers(0, 150, 20)])
                stop.wait(args.trigger / 4)

        feeder = threading.Thread(target=feed_predictor, daemon=True)
        feeder.start()
        try:
            for _ in range(args.batches):
                train_src.add([lines[i] for i in rng.integers(0, 150, 50)])
                tq.processAllAvailable()
                time.sleep(args.trigger * 1.5)
            time.sleep(args.trigger * 3)
        finally:
            stop.set()
            pq.stop()
            tq.stop()
        written = {int(f.stem[1:]): os.stat(f).st_mtime for f in (ck / "model").glob("v*.json")}
        lags = [predictor.first_use[v] - written[v] for v in sorted(predictor.first_use) if v in written and v > min(written)]
    payload = {
        "trigger_s": args.trigger,
        "versions_observed": len(lags),
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p95_s": float(np.percentile(lags, 95)) if lags else None,
        "lags_s": lags,
    }
    if not args.json:
        print(f"{len(lags)} versions: lag p50 {payload['lag_p50_s']:.2f} s, p95 {payload['lag_p95_s']:.2f} s (predictor trigger {args.trigger:g} s)")
    path = write("predict-lag", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
