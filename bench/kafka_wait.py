"""kafka-wait: the trainer's per-batch time on a Kafka source with the consumer's fetch wait at
Kafka's default (``kafka.fetch.max.wait.ms=500``) against the project's (10 ms, kafka/reader.py),
side by side in one run, for each reader.

Small batches (``--rows``, default 20) at trigger 0 through the in-process trainer on a local Apache
Kafka broker; per setting ``--batches`` batches (the first ``--skip`` not counted): the median wall
time from the rows being sent to the batch being committed, and the handler's own ``latency_s``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write
from bench.soak import kafka_feed, row_batches

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"kafka default (500 ms)": {"kafka.fetch.max.wait.ms": "500"}, "project default (10 ms)": {}}


def measure(spark: Any, reader: str, opts: dict[str, str], args: Any, send: Any, bootstrap: str, topic: str, checkpoint: Path) -> dict[str, float]:
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    over = {"stream.trigger": "0s", "train.warmup_rows": 0, "train.warmup_epochs": 0, "stream.kafka_reader": reader, "stream.starting_offsets": "latest"}
    cfg = load_config(ROOT / "conf" / "iris.toml", over)
    trainer = StreamingTrainer(spark, cfg, checkpoint)
    trainer.warm_up()
    query = start_query(trainer, read_kafka(spark, cfg, bootstrap, topic, opts))
    lines = row_batches(args.rows, 0)
    walls = []
    try:
        query.processAllAvailable()
        for n in range(args.batches):
            started = time.perf_counter()
            send(lines(n))
            query.processAllAvailable()
            walls.append(time.perf_counter() - started)
    finally:
        query.stop()
    handler = [float(m["latency_s"]) for m in trainer.history][args.skip :]
    return {"wall_median_s": statistics.median(walls[args.skip :]), "handler_median_s": statistics.median(handler) if handler else float("nan")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("kafka-wait", __doc__)
    p.add_argument("--batches", type=int, default=25)
    p.add_argument("--skip", type=int, default=5)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--readers", default="spark,python", help="comma-separated: spark (the connector), python")
    args = p.parse_args(argv)
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        with kafka_feed(None) as (send, bootstrap, topic), tempfile.TemporaryDirectory() as tmp:
            for reader in args.readers.split(","):
                for label, opts in SETTINGS.items():
                    got = measure(spark, reader, opts, args, send, bootstrap, topic, Path(tmp) / f"{reader}-{len(results.get(reader, {}))}")
                    results.setdefault(reader, {})[label] = got
                    print(f"{reader:<7} {label:<24} wall {got['wall_median_s']:.3f} s, handler {got['handler_median_s']:.3f} s", flush=True)
    finally:
        spark.stop()
    payload = {"rows": args.rows, "batches": args.batches, "skip": args.skip, "results": results}
    path = write("kafka-wait", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
