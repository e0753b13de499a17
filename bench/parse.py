"""parse: Spark's per-batch parse and validation time against the number of features per row.

For F in ``--features`` (default 4, 64, 600), a batch of ``--rows`` CSV rows with F features is
parsed by the stream's rules (spark_parse.parse) and counted by reason, as the trainer's first
step does; median of ``--runs`` timed runs after one warm-up, side by side in one session.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("parse", __doc__)
    p.add_argument("--features", default="4,64,600")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)

    from pyspark.sql import functions as F

    from streaming_lstm.core.config import DataConfig, SparkConfig
    from streaming_lstm.parse.spark_parse import parse
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    rng = random.Random(0)
    out: dict[str, Any] = {}
    for n in [int(x) for x in args.features.split(",")]:
        names = tuple(f"x{i}" for i in range(n))
        data = DataConfig(features=names, label="y", classes=("0", "1"))
        lines = [",".join([*(f"{rng.random():.4f}" for _ in names), str(i % 2)]) for i in range(args.rows)]
        df = spark.createDataFrame([(x,) for x in lines], "value string").repartition(2).cache()
        df.count()
        times = []
        for run in range(args.runs + 1):
            started = time.perf_counter()
            parse(df, data).groupBy(F.spark_partition_id(), "reason").count().collect()
            if run:
                times.append(time.perf_counter() - started)
        df.unpersist()
        out[str(n)] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
        print(f"{n:>5} features: parse + count of {args.rows} rows {statistics.median(times):.3f} s (median of {args.runs})", flush=True)
    spark.stop()
    payload = {"rows": args.rows, "runs": args.runs, "by_features": out}
    path = write("parse", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
