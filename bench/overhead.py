"""overhead: the trainer's per-micro-batch latency against (a) a no-op foreachBatch over the same
stream and (b) the same training done in one plain TensorFlow process, side by side in one run.

ratio = trainer / (a + b). Small (50 rows) and large (20 000 rows) batches, Iris config, P = 2.
Latency is the wall time from a file landing in the watched directory to the batch being done.
The trainer runs with its defaults (``stream.train_in`` auto: a local master's driver trains
batches of up to ``stream.driver_rows`` rows; trainer/planned.py) and, beside it in the same
session, with the Python workers training in the query's plan (``train_in = workers``):
``ratio_workers``; and with each batch planned in Python (``stream.plan = batch``): ``ratio_batch``.
A fourth query's foreachBatch only counts its rows (``df.count()``, one Spark job): ``ratio_count``,
the same ratio for the least a foreachBatch that reads its batch does, the floor under ``ratio``.

``--remote local`` (or ``sc://HOST:PORT``) measures the same no-op and trainer over Spark Connect
too (``local``: a server started for the run), in a second process after the classic one (PySpark
cannot hold a classic and a Connect session in one process), with the same batches:
``connect_ratio`` = trainer over Connect / classic trainer, ``connect_noop_ratio`` the same for the
no-op.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import FileFeed, synthetic_rows, write
from bench.common import parser as bench_parser

ROOT = Path(__file__).resolve().parent.parent


def noop(df: Any, batch_id: int) -> None:
    """The no-op foreachBatch (a module function, so Spark Connect sends it by reference)."""


def count_rows(df: Any, batch_id: int) -> None:
    """The least a foreachBatch that reads its rows does: count them (one Spark job)."""
    df.count()


def measure(args: argparse.Namespace, remote: str | None) -> dict[int, dict[str, list[float]]]:
    """Latencies per batch size: no-op, trainer and (classic only) plain TF; ``remote`` set: over Connect."""
    from streaming_lstm.core import training
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.parse.data import load_csv
    from streaming_lstm.spark import connect
    from streaming_lstm.trainer.remote import make_trainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    # the batch's own rows, local_epochs times, in full mini-batches, as plain TF
    same_work = {"train.warmup_epochs": 0, "train.warmup_batch_size": 0, "train.rehearsal_rows": 0}
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.partitions": args.partitions, "stream.trigger": "0s", **same_work})
    out: dict[int, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        session = connect.open_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}), remote, server_log=str(base / "server.log"))
        spark = session.spark
        noop_feed, train_feed = FileFeed(base / "noop"), FileFeed(base / "train")
        noop_q = file_source(spark, noop_feed.dir, cfg).writeStream.foreachBatch(noop).option("checkpointLocation", str(base / "ck-noop")).start()
        count_feed = FileFeed(base / "count")
        count_q = file_source(spark, count_feed.dir, cfg).writeStream.foreachBatch(count_rows).option("checkpointLocation", str(base / "ck-count")).start()
        trainer = make_trainer(spark, cfg, str(base / "ck-train"))
        trainer.warm_up()
        train_q = start_query(trainer, file_source(spark, train_feed.dir, cfg))
        per_batch_cfg = replace(cfg, stream=replace(cfg.stream, plan="batch"))
        batch_feed = FileFeed(base / "train-batch")
        batch_q = start_query(make_trainer(spark, per_batch_cfg, str(base / "ck-batch")), file_source(spark, batch_feed.dir, cfg))
        workers_cfg = replace(cfg, stream=replace(cfg.stream, train_in="workers"))
        workers_feed, workers = FileFeed(base / "train-workers"), make_trainer(spark, workers_cfg, str(base / "ck-workers"))
        workers.warm_up()
        workers_q = start_query(workers, file_source(spark, workers_feed.dir, cfg))
        queries = [("noop", noop_feed, noop_q), ("trainer", train_feed, train_q), ("trainer_workers", workers_feed, workers_q)]
        queries += [("trainer_batch", batch_feed, batch_q), ("count", count_feed, count_q)]
        spec = training.TrainSpec.from_app(cfg, streaming=True)
        try:
            for size in [int(s) for s in args.sizes.split(",")]:
                names = [name for name, _, _ in queries] + ([] if remote else ["plain_tf"])
                times = out.setdefault(size, {name: [] for name in names})
                # The first two reps warm up, not counted: with stream.train_in = auto the first batch of
                # a larger size trains in the driver (the batch before was small), the second in the
                # workers, whose first batch traces the model.
                for rep in range(args.reps + 2):
                    rows = synthetic_rows(size, seed=rep)
                    for name, feed, q in queries:
                        started = time.perf_counter()
                        feed.batch(rows)
                        q.processAllAvailable()
                        if rep >= 2:
                            times[name].append(time.perf_counter() - started)
                    if remote:
                        continue
                    f = base / "plain.csv"
                    f.write_text("\n".join(rows) + "\n")
                    started = time.perf_counter()
                    data = load_csv(f, cfg.data)
                    state = trainer.state  # classic: the trainer's own state, in this process
                    state_w, norm = state.training_weights(), state.norm  # type: ignore[union-attr]
                    for key in range(args.partitions):
                        sel = np.arange(len(data.y)) % args.partitions == key
                        epochs, steps = cfg.train.local_epochs, cfg.scores_in_steps()
                        x, y = data.x[sel], data.y[sel]
                        training.train_partition(key, state_w, norm, x, y, spec, epochs=epochs, batch_size=cfg.train.batch_size, seed=key, score_steps=steps)
                    if rep >= 2:
                        times["plain_tf"].append(time.perf_counter() - started)
        finally:
            for _, _, q in queries:
                q.stop()
            session.stop()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("overhead", __doc__)
    p.add_argument("--sizes", default="50,20000")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--remote", metavar="URL", help="also measure over Spark Connect: 'local' (start a server) or sc://HOST:PORT")
    p.add_argument("--connect-only", action="store_true", help=argparse.SUPPRESS)  # the second process of --remote
    args = p.parse_args(argv)
    if args.connect_only:
        print(json.dumps(measure(args, args.remote)))
        return {}
    classic = measure(args, None)
    over_connect: dict[str, dict[str, list[float]]] = {}
    if args.remote:
        cmd = [sys.executable, "-m", "bench", "overhead", "--connect-only", "--remote", args.remote, "--sizes", args.sizes]
        cmd += ["--reps", str(args.reps), "--partitions", str(args.partitions)]
        child = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"the Connect measurement failed:\n{child.stderr[-3000:]}")
        over_connect = json.loads(child.stdout.strip().splitlines()[-1])
    results = []
    for size, times in classic.items():
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["noop"] + med["plain_tf"]
        row: dict[str, Any] = {"rows": size, **{f"{k}_s": v for k, v in med.items()}}
        row |= {"ratio": med["trainer"] / base, "ratio_workers": med["trainer_workers"] / base, "ratio_batch": med["trainer_batch"] / base}
        row["ratio_count"] = med["count"] / base  # the same ratio for a foreachBatch that only counts its rows
        row["all"] = times
        line = f"{size:>6} rows: trainer {med['trainer']:.3f} s (workers {med['trainer_workers']:.3f} s, planned per batch {med['trainer_batch']:.3f} s), "
        line += f"no-op {med['noop']:.3f} s, plain TF {med['plain_tf']:.3f} s -> ratio {row['ratio']:.2f} "
        line += f"(workers {row['ratio_workers']:.2f}, per batch {row['ratio_batch']:.2f}); a count only {med['count']:.3f} s, {row['ratio_count']:.2f}"
        remote = over_connect.get(str(size))
        if remote:
            cmed = {k: statistics.median(v) for k, v in remote.items()}
            row |= {"connect_trainer_s": cmed["trainer"], "connect_noop_s": cmed["noop"], "connect_all": remote}
            row |= {"connect_ratio": cmed["trainer"] / med["trainer"], "connect_noop_ratio": cmed["noop"] / med["noop"]}
            line += (
                f"; over Connect: trainer {cmed['trainer']:.3f} s ({row['connect_ratio']:.2f}x), no-op {cmed['noop']:.3f} s ({row['connect_noop_ratio']:.2f}x)"
            )
        results.append(row)
        if not args.json:
            print(line, flush=True)
    payload = {"partitions": args.partitions, "reps": args.reps, "config": "conf/iris.toml", "remote": args.remote, "results": results}
    path = write("overhead-connect" if args.remote else "overhead", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
