"""time-to-accuracy: Iris replayed through the embedded Kafka broker at a fixed rate; rows and seconds
from the first batch until the prequential accuracy over the last 150 rows first reaches 0.95.

Runs ``streaming-lstm demo`` and reads its metrics.jsonl. "The last 150 rows" is whole batches from
the end covering at least 150 rows (per-row scores are not kept). Seconds count from the start of
the first batch to the end of the batch that crosses the threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write

ROOT = Path(__file__).resolve().parent.parent


def crossing(metrics: list[dict[str, Any]], window: int = 150, target: float = 0.95) -> dict[str, Any] | None:
    start = metrics[0]["time"] - metrics[0]["latency_s"]
    seen = 0
    for i, m in enumerate(metrics):
        seen += m["rows_valid"]
        correct = rows = 0
        for prev in reversed(metrics[: i + 1]):
            if rows >= window:
                break
            correct += prev["prequential_correct"]
            rows += prev["rows_valid"]
        if rows >= window and correct / rows >= target:
            return {"rows": seen, "seconds": m["time"] - start, "batch_id": m["batch_id"], "window_rows": rows, "accuracy": correct / rows}
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("time-to-accuracy", __doc__)
    p.add_argument("--rate", type=float, default=50.0, help="rows per second (default 50)")
    p.add_argument("--rows", type=int, default=900)
    p.add_argument("--trigger", default="1s")
    p.add_argument("--runs", type=int, default=2, help="replay seeds (default 2)")
    args = p.parse_args(argv)
    runs = []
    for seed in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            ck = Path(tmp) / "demo"
            cmd = [
                sys.executable,
                "-m",
                "streaming_lstm.cli",
                "demo",
                "--json",
                "--checkpoint",
                str(ck),
                "--rows",
                str(args.rows),
                "--rate",
                str(args.rate),
                "--trigger",
                args.trigger,
                "--replay-seed",
                str(seed),
            ]
            r = subprocess.run(cmd, cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-3000:])
            metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
            c = crossing(metrics)
            run = {
                "seed": seed,
                "batches": len(metrics),
                "rows_per_batch": [m["rows_valid"] for m in metrics],
                "crossing": c,
                "summary": json.loads(r.stdout.strip().splitlines()[-1]),
            }
            runs.append(run)
            if not args.json:
                print(
                    f"seed {seed}: " + (f"0.95 after {c['rows']} rows and {c['seconds']:.1f} s (batch {c['batch_id']})" if c else "never reached 0.95"),
                    flush=True,
                )
    payload = {"rate": args.rate, "rows": args.rows, "trigger": args.trigger, "runs": runs}
    path = write("time-to-accuracy", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
