"""checkpoint-io: Spark's per-batch checkpoint writes with its default (FileContext) checkpoint file
manager vs the FileSystem manager that local mode now uses (spark_session.py), side by side.

Both managers run in one session, alternating, on the same memory stream of tiny batches and a
no-op ``foreachBatch``, so the difference is the checkpoint I/O alone: ``walCommit`` (the offsets
file) and ``commitOffsets`` (the commits file) from each batch's progress report.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write

MANAGERS = {
    "filecontext (Spark default)": "org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager",
    "filesystem (local mode)": "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("checkpoint-io", __doc__)
    p.add_argument("--batches", type=int, default=20, help="micro-batches per manager and round")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import CHECKPOINT_MANAGER, get_session
    from streaming_lstm.testing.memory_source import MemorySource

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    samples: dict[str, list[float]] = {name: [] for name in MANAGERS}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for m, (name, cls) in enumerate(MANAGERS.items()):
                spark.conf.set(CHECKPOINT_MANAGER, cls)  # read when a query starts
                source = MemorySource(spark)
                q = source.df().writeStream.foreachBatch(lambda df, i: None).option("checkpointLocation", str(Path(tmp) / f"round{rnd}-manager{m}")).start()
                try:
                    for i in range(args.batches):
                        source.add([f"row {i}"])
                        q.processAllAvailable()
                    for prog in q.recentProgress:
                        # Batches that ran (a no-op sink reads no rows, so numInputRows stays 0); batch 0
                        # also writes the query's metadata file and is left out.
                        if "walCommit" in prog["durationMs"] and prog["batchId"] > 0:
                            d = prog["durationMs"]
                            samples[name].append(float(d.get("walCommit", 0) + d.get("commitOffsets", 0)))
                finally:
                    q.stop()
    result = {name: {"batches": len(v), "checkpoint_ms_p50": statistics.median(v), "checkpoint_ms_mean": statistics.fmean(v)} for name, v in samples.items()}
    default, ours = (result[n]["checkpoint_ms_p50"] for n in MANAGERS)
    payload = {"managers": result, "saved_ms_per_batch_p50": default - ours, "ratio_p50": ours / default if default else None}
    if not args.json:
        for name, r in result.items():
            ms = f"p50 {r['checkpoint_ms_p50']:.0f} ms, mean {r['checkpoint_ms_mean']:.0f} ms"
            print(f"{name:<28} walCommit + commitOffsets per batch: {ms} ({r['batches']} batches)")
    path = write("checkpoint-io", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
