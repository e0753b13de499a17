"""pause: a micro-batch after a pause longer than Spark's idle minute, with and without the keep-alive.

Spark stops the Python workers that sat idle for a minute; a batch after such a pause runs in new
workers, which build and trace the model again (``stream.keep_workers``, trainer/keepwarm.py).
One Spark session, the Iris configuration with a 128,256 model: per variant (keep-alive at
``stream.keep_workers``'s default, and off) a fresh trainer and query on a file source, two warm
50-row batches, a pause of ``--pause`` seconds during which the keep-alive is checked as the run
loop does (every 0.2 s), then one more batch. Reports each variant's batch after the pause, its
warm batch and their ratio. Writes bench/results/pause.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FileFeed, synthetic_rows, write
from bench.common import parser as bench_parser

ROOT = Path(__file__).resolve().parent.parent


def batch_seconds(feed: FileFeed, query: Any, rows: list[str]) -> float:
    started = time.perf_counter()
    feed.batch(rows)
    query.processAllAvailable()
    return time.perf_counter() - started


def variant(spark: Any, keep_every: str, pause: float, base: Path) -> dict[str, float]:
    from streaming_lstm.core.config import parse_duration
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.keepwarm import WorkerKeepAlive
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    overrides = {"model.hidden": "128,256", "stream.trigger": "0s", "stream.keep_workers": keep_every}
    cfg = load_config(ROOT / "conf" / "iris.toml", overrides)
    feed = FileFeed(base / "in")
    trainer = StreamingTrainer(spark, cfg, base / "ck")
    trainer.warm_up()
    query = start_query(trainer, file_source(spark, feed.dir, cfg))
    try:
        batch_seconds(feed, query, synthetic_rows(50, seed=1))
        warm = batch_seconds(feed, query, synthetic_rows(50, seed=2))
        keep = WorkerKeepAlive(spark, parse_duration(cfg.stream.keep_workers, "stream.keep_workers"))  # as runner.run builds it
        started = time.monotonic()
        while time.monotonic() - started < pause:
            keep.check(lambda: False)  # nothing runs: the query has no data
            time.sleep(0.2)
        after = batch_seconds(feed, query, synthetic_rows(50, seed=3))
    finally:
        query.stop()
    return {"warm_s": warm, "after_pause_s": after, "ratio": after / warm, "keep_alive_tasks": keep.runs}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("pause", __doc__)
    p.add_argument("--pause", type=float, default=75.0, help="seconds without data between the warm batch and the next (default 75)")
    args = p.parse_args(argv)
    from streaming_lstm.core.config import SparkConfig, StreamConfig
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, every in (("keep-alive", StreamConfig().keep_workers), ("off", "0s")):
            results[name] = variant(spark, every, args.pause, Path(tmp) / name)
            if not args.json:
                r = results[name]
                print(f"{name}: warm batch {r['warm_s']:.2f} s, after {args.pause:g} s of pause {r['after_pause_s']:.2f} s ({r['ratio']:.2f}x)", flush=True)
    payload = {"pause_s": args.pause, "variants": results}
    path = write("pause", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
