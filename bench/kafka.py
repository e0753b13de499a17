"""kafka: the demo on Apache Kafka vs Tansu (wall time, peak memory), and rows/s through each reader.

Part 1 runs ``streaming-lstm demo --json`` alternately on ``--broker apache-kafka`` and
``--broker tansu`` (``--runs`` times each; Spark's connector reads both).

Part 2 produces ``--rows`` CSV rows into a 3-partition topic of a local Apache Kafka broker, then
reads the whole topic once per reader with a query whose ``foreachBatch`` only counts (Spark's
connector and the Python data source, alternating, ``--runs`` times each, one shared session,
``maxOffsetsPerTrigger`` = ``--batch``): rows/s = rows / (time of the first batch's start to the last
batch's end), so session start-up and query planning are left out.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import synthetic_rows, write
from bench.memory import measure_demo

ROOT = Path(__file__).resolve().parent.parent


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def demo_part(runs: int, rows: int, rate: float) -> dict[str, Any]:
    out: dict[str, dict[str, list[float]]] = {b: {"wall_s": [], "peak_total_rss_mib": [], "broker_peak_mib": []} for b in ("apache-kafka", "tansu")}
    for _ in range(runs):
        for broker in out:
            r = measure_demo(rows, rate, ["--broker", broker])
            assert r["demo"] and r["demo"]["rows_trained"] == rows, r["demo"]
            out[broker]["wall_s"].append(r["wall_s"])
            out[broker]["peak_total_rss_mib"].append(r["peak_total_rss_mib"])
            kinds = r["per_kind_peak_mib"]
            out[broker]["broker_peak_mib"].append(sum(kinds.get("Kafka broker (JVM)", []) + kinds.get("Tansu broker", [])))
            print(f"demo on {broker}: {r['wall_s']:.1f} s, peak {r['peak_total_rss_mib']:.0f} MiB", flush=True)
    return {b: {k: spread(v) for k, v in m.items()} for b, m in out.items()}


def reader_part(runs: int, rows: int, batch: int) -> dict[str, Any]:
    from producers.replay import KafkaSink, replay
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.local.kafka_broker import ApacheKafkaBroker
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    results: dict[str, list[float]] = {"spark-connector": [], "python-source": []}
    with ApacheKafkaBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        sink = KafkaSink(broker.bootstrap, topic, 3, {})
        replay(synthetic_rows(rows), sink, rate=0, loops=1, progress_every=1e9)
        sink.close()
        for run in range(runs):
            for reader, setting in (("spark-connector", "spark"), ("python-source", "python")):
                cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.kafka_reader": setting, "stream.max_offsets_per_trigger": batch})
                spans: list[tuple[float, float, int]] = []

                def count(df: Any, _batch_id: int, spans: list[tuple[float, float, int]] = spans) -> None:
                    started = time.perf_counter()
                    n = df.count()
                    spans.append((started, time.perf_counter(), n))

                source = read_kafka(spark, cfg, broker.bootstrap, topic, {})
                query = source.writeStream.foreachBatch(count).option("checkpointLocation", f"{tmp}/{reader}-{run}").trigger(processingTime="0 seconds").start()
                deadline = time.monotonic() + 600
                while sum(n for _, _, n in spans) < rows and time.monotonic() < deadline:
                    query.processAllAvailable()
                query.stop()
                total = sum(n for _, _, n in spans)
                assert total == rows, f"{reader} read {total} of {rows}"
                seconds = spans[-1][1] - spans[0][0]
                results[reader].append(rows / seconds)
                print(f"{reader}: {rows} rows in {len(spans)} batches, {rows / seconds:.0f} rows/s", flush=True)
    spark.stop()
    return {r: spread(v) for r, v in results.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("kafka", __doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--demo-rows", type=int, default=900)
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--rows", type=int, default=100_000, help="rows in the topic the readers read")
    p.add_argument("--batch", type=int, default=20_000, help="maxOffsetsPerTrigger of the reader runs")
    p.add_argument("--skip-demo", action="store_true")
    args = p.parse_args(argv)
    payload: dict[str, Any] = {"runs": args.runs}
    payload["reader_rows_per_s"] = reader_part(args.runs, args.rows, args.batch)
    payload["reader_rows"], payload["reader_batch"] = args.rows, args.batch
    if not args.skip_demo:
        payload["demo"] = demo_part(args.runs, args.demo_rows, args.rate)
        payload["demo_rows"], payload["demo_rate"] = args.demo_rows, args.rate
    path = write("kafka", payload)
    print(json.dumps(payload) if args.json else f"{json.dumps(payload, indent=1)}\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
