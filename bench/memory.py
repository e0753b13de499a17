"""memory: peak resident memory of the driver (Python and JVM), each Spark Python worker and the
local broker during ``streaming-lstm demo``, and the peak of their sum.

Samples /proc every 0.2 s over the demo's process tree (RSS); per process the kernel's own peak
(VmHWM) is reported too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import parser as bench_parser
from bench.common import write

ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def kind(pid: int, root: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if pid == root:
        return "driver (Python)"
    if "kafka.Kafka" in cmd or "kafka.tools.StorageTool" in cmd:
        return "Kafka broker (JVM)"
    if "java" in cmd.split(" ")[0]:
        return "driver (JVM)"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "Python worker"
    if "tansu" in cmd:
        return "Tansu broker"
    return "other: " + cmd[:60]


def measure_demo(rows: int, rate: float, extra: list[str] | None = None) -> dict[str, Any]:
    """Run ``streaming-lstm demo --json`` once; its summary, wall time and memory peaks."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "streaming_lstm.cli", "demo", "--json", "--checkpoint", str(Path(tmp) / "demo"), "--rows", str(rows), "--rate", str(rate)]
        started = time.monotonic()
        err_path = Path(tmp) / "stderr.txt"
        err_file = err_path.open("w")
        proc = subprocess.Popen([*cmd, *(extra or [])], cwd=ROOT, stdout=subprocess.PIPE, stderr=err_file, text=True)
        peaks: dict[int, dict[str, Any]] = {}
        peak_total = 0
        while proc.poll() is None:
            total = 0
            for pid in tree(proc.pid):
                st = status(pid)
                if not st:
                    continue
                rec = peaks.setdefault(pid, {"kind": "", "rss_peak": 0, "hwm": 0})
                # Re-read every time: spark-class is a bash script that exec()s the JVM in the same pid.
                rec["kind"] = kind(pid, proc.pid)
                rec["rss_peak"] = max(rec["rss_peak"], st.get("VmRSS", 0))
                rec["hwm"] = max(rec["hwm"], st.get("VmHWM", 0))
                total += st.get("VmRSS", 0)
            peak_total = max(peak_total, total)
            time.sleep(0.2)
        wall = time.monotonic() - started
        out = proc.stdout.read() if proc.stdout else ""
        err_file.close()
        if proc.returncode != 0:
            raise RuntimeError(f"demo failed with exit code {proc.returncode}: {err_path.read_text()[-2000:]}")
    # pyspark.daemon forks the workers: the forked children share pages with it, so RSS adds up to
    # more than is really used. The sum is reported as is (an upper bound).
    by_kind: dict[str, list[float]] = {}
    for rec in peaks.values():
        by_kind.setdefault(rec["kind"], []).append(rec["hwm"] / 2**20)
    return {
        "rows": rows,
        "rate": rate,
        "wall_s": wall,
        "peak_total_rss_mib": peak_total / 2**20,
        "per_kind_peak_mib": {k: sorted(v, reverse=True) for k, v in by_kind.items()},
        "demo": json.loads(out.strip().splitlines()[-1]) if out.strip() else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("memory", __doc__)
    p.add_argument("--rows", type=int, default=900)
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--broker", choices=("apache-kafka", "tansu"), default="apache-kafka")
    args = p.parse_args(argv)
    payload = measure_demo(args.rows, args.rate, ["--broker", args.broker])
    payload["broker"] = args.broker
    if not args.json:
        print(f"peak total RSS {payload['peak_total_rss_mib']:.0f} MiB")
        for k, v in payload["per_kind_peak_mib"].items():
            print(f"  {k:<18} " + ", ".join(f"{x:.0f}" for x in v) + " MiB")
    path = write("memory", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
