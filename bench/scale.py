"""scale: the same micro-batch at P = 2, 16 and 64 partition keys on ``local[2]``: batch time and
the driver's peak memory (its Python process and its JVM), side by side in one session.

What grows with P is the driver's side: one weight vector per key comes back (P x 1.8 MB at the
seed's 128,256 model), is decoded and summed. 3 000 rows, layers 128,256, one local epoch, mini-batch
10, no warm-up. The P values are run in turn, ``--reps`` times (the first round warms up and is not
counted); memory is sampled from /proc every 10 ms during each batch (growth = peak - before).
Target (#13): P = 64 <= 1.5x P = 2 in batch time.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import FileFeed, synthetic_rows, write
from bench.common import parser as bench_parser
from bench.memory import kind, status, tree

ROOT = Path(__file__).resolve().parent.parent


class Sampler:
    """Peak RSS of the driver's Python process and of its JVM while running."""

    def __init__(self) -> None:
        self.root = os.getpid()
        self.jvm = next((p for p in tree(self.root) if kind(p, self.root) == "driver (JVM)"), None)
        self.peak = {"python": 0, "jvm": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> dict[str, int]:
        return {"python": status(self.root).get("VmRSS", 0), "jvm": status(self.jvm).get("VmRSS", 0) if self.jvm else 0}

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for name, value in self.rss().items():
                self.peak[name] = max(self.peak[name], value)

    def __enter__(self) -> Sampler:
        self.before = self.rss()
        self.peak = dict(self.before)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("scale", __doc__)
    p.add_argument("--partitions", default="2,16,64")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.spark.session import get_session
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    ps = [int(x) for x in args.partitions.split(",")]
    runs: dict[int, dict[str, list[float]]] = {n: {"seconds": [], "python_growth_mb": [], "jvm_growth_mb": [], "python_peak_mb": []} for n in ps}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        queries = {}
        for n in ps:
            over = {"stream.partitions": n, "stream.trigger": "0s", "model.hidden": "128,256", "train.batch_size": 10}
            cfg = load_config(
                ROOT / "conf" / "iris.toml",
                {**over, "train.local_epochs": 1, "train.warmup_epochs": 0, "train.warmup_batch_size": 0, "train.rehearsal_rows": 0},
            )
            trainer = StreamingTrainer(spark, cfg, base / f"ck-{n}")
            trainer.warm_up()
            feed = FileFeed(base / f"in-{n}")
            queries[n] = (feed, start_query(trainer, file_source(spark, feed.dir, cfg)))
        try:
            for rep in range(args.reps + 1):  # round 0 warms up
                rows = synthetic_rows(args.rows, seed=rep)
                for n in ps:
                    feed, query = queries[n]
                    with Sampler() as mem:
                        started = time.perf_counter()
                        feed.batch(rows)
                        query.processAllAvailable()
                        seconds = time.perf_counter() - started
                    if rep:
                        r = runs[n]
                        r["seconds"].append(seconds)
                        r["python_growth_mb"].append((mem.peak["python"] - mem.before["python"]) / 2**20)
                        r["jvm_growth_mb"].append((mem.peak["jvm"] - mem.before["jvm"]) / 2**20)
                        r["python_peak_mb"].append(mem.peak["python"] / 2**20)
                        if not args.json:
                            grew = f"driver Python +{r['python_growth_mb'][-1]:.0f} MB, JVM +{r['jvm_growth_mb'][-1]:.0f} MB"
                            print(f"P = {n:>3}: {seconds:.2f} s, {grew}", flush=True)
        finally:
            for _, query in queries.values():
                query.stop()
    results: list[dict[str, Any]] = []
    base_s = statistics.median(runs[ps[0]]["seconds"])
    for n in ps:
        r = runs[n]
        med = statistics.median(r["seconds"])
        results.append(
            {
                "partitions": n,
                "seconds": {"min": min(r["seconds"]), "median": med, "max": max(r["seconds"])},
                "ratio_to_first": med / base_s,
                "python_growth_mb_max": max(r["python_growth_mb"]),
                "jvm_growth_mb_max": max(r["jvm_growth_mb"]),
                "python_peak_mb_max": max(r["python_peak_mb"]),
                "all": r,
            }
        )
    payload = {"rows": args.rows, "reps": args.reps, "model": "128,256", "local_epochs": 1, "results": results}
    path = write("scale", payload)
    lines = [f"P = {x['partitions']}: median {x['seconds']['median']:.2f} s ({x['ratio_to_first']:.2f}x)" for x in results]
    print(json.dumps(payload) if args.json else "\n".join([*lines, f"wrote {path}"]))
    return payload


if __name__ == "__main__":
    main()
