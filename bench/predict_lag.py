"""predict-lag: from a model version being written by the trainer to the stream predictor scoring
rows with it (p50/p95), trainer and predictor running side by side in one Spark session.

The trainer runs on its configured trigger (conf/iris.toml: 2 s), fed 50 rows/s; the predictor is
fed 80 rows/s. Lag = (when the predictor first scored a row with version v) - (mtime of v's
metadata file, the moment the version exists). Each predictor trigger in ``--triggers`` is measured
in turn in the same run, so the figures compare side by side.

What bounds the lag: a version written just after a predictor batch started waits for the next
trigger (uniform over one interval), then for that batch's own time. Target: p95 within one
trigger interval.
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


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def measure(spark: Any, lines: list[str], pred_trigger: float, versions: int, rng: np.random.Generator, tmp: Path) -> dict[str, Any]:
    from streaming_lstm.config import load_config, parse_duration
    from streaming_lstm.predictor import StreamPredictor
    from streaming_lstm.runner import start_query
    from streaming_lstm.sources import MemorySource
    from streaming_lstm.trainer import StreamingTrainer

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.keep_versions": versions + 10})
    ck = tmp / "ck"
    train_src, pred_src = MemorySource(spark), MemorySource(spark)
    trainer = StreamingTrainer(spark, cfg, ck, echo=False)
    trainer.warm_up()
    tq = start_query(trainer, train_src.df())
    train_src.add([lines[i] for i in rng.integers(0, len(lines), 50)])
    tq.processAllAvailable()
    predictor = StreamPredictor(spark, ck, io.StringIO())
    predictor.warm_up()
    pq = predictor.start(pred_src.df(), tmp / "pck", f"{int(pred_trigger * 1000)} milliseconds")
    stop = threading.Event()

    def feed(source: MemorySource, rows: int, every: float) -> None:
        while not stop.is_set():
            source.add([lines[i] for i in rng.integers(0, len(lines), rows)])
            stop.wait(every)

    feeders = [threading.Thread(target=feed, args=(train_src, 25, 0.5), daemon=True), threading.Thread(target=feed, args=(pred_src, 20, 0.25), daemon=True)]
    for t in feeders:
        t.start()
    first = trainer.state.version
    try:
        deadline = time.monotonic() + versions * parse_duration(cfg.stream.trigger, "stream.trigger") * 3 + 30
        while trainer.state.version < first + versions and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(pred_trigger + 2)  # let the predictor pick up the last version
    finally:
        stop.set()
        pq.stop()
        tq.stop()
    written = {int(f.stem[1:]): os.stat(f).st_mtime for f in (ck / "model").glob("v*.json")}
    seen = [v for v in sorted(predictor.first_use) if v in written and v > first]
    lags = [predictor.first_use[v] - written[v] for v in seen]
    waits = [predictor.first_batch_start[v] - written[v] for v in seen]  # until a batch began that saw v
    batch = predictor.batch_seconds[1:]  # the first batch holds the rows queued during start-up
    return {
        "predictor_trigger_s": pred_trigger,
        "trainer_trigger": cfg.stream.trigger,
        "versions_observed": len(lags),
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p95_s": pct(lags, 95),
        "lag_max_s": max(lags) if lags else None,
        "wait_for_batch_p50_s": statistics.median(waits) if waits else None,
        "wait_for_batch_p95_s": pct(waits, 95),
        "predictor_batch_p50_s": statistics.median(batch) if batch else None,
        "predictor_batch_p95_s": pct(batch, 95),
        "predictor_batches": len(predictor.batch_seconds),
        "rows_scored": predictor.rows_scored,
        "lags_s": [round(x, 3) for x in lags],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench predict-lag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--versions", type=int, default=15, help="model versions to observe per predictor trigger")
    p.add_argument("--triggers", default="2,1,0.5", help="predictor trigger intervals to measure, seconds, comma-separated")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from streaming_lstm.config import SparkConfig
    from streaming_lstm.spark_session import get_session

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
                f"predictor trigger {trigger:g} s: {r['versions_observed']} versions, lag p50 {r['lag_p50_s']:.2f} s, "
                f"p95 {r['lag_p95_s']:.2f} s, max {r['lag_max_s']:.2f} s; of which waiting for a batch to begin p50 "
                f"{r['wait_for_batch_p50_s']:.2f} s, p95 {r['wait_for_batch_p95_s']:.2f} s; predictor batch p50 {r['predictor_batch_p50_s']:.2f} s, "
                f"p95 {r['predictor_batch_p95_s']:.2f} s",
                flush=True,
            )
    payload = {"runs": runs, "lag_p95_within_trigger": {str(r["predictor_trigger_s"]): (r["lag_p95_s"] or 1e9) <= r["predictor_trigger_s"] for r in runs}}
    path = write("predict-lag", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
