"""soak: what grows with the number of micro-batches in a long run of the real trainer.

Small batches at trigger 0 through the in-process trainer (Kafka or file source, row mode; then the
same in event mode), recording every ``--every`` batches: the driver's Python memory, the JVM's
heap after a full GC, each Python worker's memory (RSS, and PSS: the forked workers share pages
with their daemon, so PSS splits what they share), open file descriptors of each process, the checkpoint directory's size by part, and the
median wall time of the batches since the last sample. One row in ``--dead-every`` carries a
malformed row, so dead letters grow as they would in production.

Result: ``bench/results/soak.json`` (every sample, and each series' growth per 1 000 batches after
the warm-up, a least-squares slope) and ``soak.png`` (each series against batches).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import FileFeed, panels, setting, synthetic_rows, write
from bench.common import parser as bench_parser
from bench.memory import kind, tree

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20

# The checkpoint's parts, by the first path components that name them (the rest is "other").
PARTS = {
    "spark_offsets": ("spark", "offsets"),
    "spark_commits": ("spark", "commits"),
    "spark_state": ("spark", "state"),
    "spark_sources": ("spark", "sources"),
    "model": ("model",),
    "tensorboard": ("tensorboard",),
    "deadletter": ("deadletter",),
}


def part_of(relative: Path) -> str:
    parts = relative.parts
    if parts and parts[0].startswith("metrics.jsonl"):
        return "metrics"
    for name, prefix in PARTS.items():
        if parts[: len(prefix)] == prefix:
            return name
    return "spark_other" if parts and parts[0] == "spark" else "other"


def checkpoint_sizes(checkpoint: Path) -> dict[str, int]:
    """Bytes under ``checkpoint`` by part (PARTS), plus ``total``."""
    sizes = dict.fromkeys([*PARTS, "metrics", "spark_other", "other"], 0)
    for dirpath, _dirs, files in os.walk(checkpoint):
        for name in files:
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):  # removed while walking (a pruned version, a rolled file)
                sizes[part_of(path.relative_to(checkpoint))] += path.stat().st_size
    sizes["total"] = sum(sizes.values())
    return sizes


def proc_kib(pid: int, field: str, file: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, seconds) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def jvm_heap_after_gc(spark: Any) -> int:
    """The driver JVM's used heap (bytes) right after a full collection."""
    jvm = spark._jvm
    jvm.java.lang.System.gc()
    return int(jvm.java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed())


def processes(spark: Any) -> dict[str, list[int]]:
    """The session's processes: this driver (Python), its own JVM, and that JVM's Python workers.

    By the JVM's own pid, not by a process's kind: a test process may also run other JVMs (an HDFS
    minicluster, a Connect server with its workers), whose steady CPU would otherwise be counted as
    each batch's cost, and grow with a slower batch's wall time."""
    jvm = int(spark._jvm.java.lang.ProcessHandle.current().pid())
    return {"driver (JVM)": [jvm], "Python worker": [p for p in tree(jvm) if kind(p, os.getpid()) == "Python worker"]}


def sample(spark: Any, checkpoint: Path, batches: int, walls: list[float]) -> dict[str, Any]:
    procs = processes(spark)
    workers = procs.get("Python worker", [])
    jvms = procs.get("driver (JVM)", [])
    driver = os.getpid()
    cpu = {"driver": cpu_seconds(driver), "jvm": sum(cpu_seconds(p) for p in jvms)}  # before this sample's own GC
    return {
        "batches": batches,
        "latency_median_s": statistics.median(walls) if walls else None,
        "cpu_s": cpu,
        "driver_rss_mib": proc_kib(driver, "VmRSS") / 1024,
        "jvm_heap_mib": jvm_heap_after_gc(spark) / MIB,
        "jvm_rss_mib": sum(proc_kib(p, "VmRSS") for p in jvms) / 1024,
        "workers_pss_mib": sorted((proc_kib(p, "Pss", "smaps_rollup") / 1024 for p in workers), reverse=True),
        "workers_rss_mib": sorted((proc_kib(p, "VmRSS") / 1024 for p in workers), reverse=True),
        "fds": {"driver": open_fds(driver), "jvm": sum(open_fds(p) for p in jvms), "workers": sum(open_fds(p) for p in workers)},
        "checkpoint_bytes": checkpoint_sizes(checkpoint),
    }


def row_batches(rows: int, dead_every: int) -> Callable[[int], list[str]]:
    """Batch ``n``'s CSV lines: Iris-like rows, and a malformed one every ``dead_every`` batches."""

    def lines(n: int) -> list[str]:
        out = synthetic_rows(rows, seed=n)
        return [*out, "not,a,row"] if dead_every and n % dead_every == 0 else out

    return lines


def event_batches(events: int, entities: int, batches: int, dead_every: int) -> Callable[[int], list[str]]:
    """Batch ``n``'s event lines: ``events`` per entity of a sine stream that goes on in time."""
    from streaming_lstm.testing.event_synth import sine_events, to_csv_lines

    stream = to_csv_lines(sine_events(entities=entities, events=events * (batches + 1), seed=7, change_at=1.0), header=False)
    per = events * entities

    def lines(n: int) -> list[str]:
        out = stream[n * per : (n + 1) * per]
        return [*out, "e0,not-a-time,1.0"] if dead_every and n % dead_every == 0 else out

    return lines


@contextmanager
def kafka_feed(bootstrap: str | None) -> Iterator[tuple[Callable[[list[str]], None], str, str]]:
    """A fresh topic on ``bootstrap`` (or on a local Apache Kafka broker started here): (send lines, bootstrap, topic)."""
    from producers.replay import KafkaSink
    from streaming_lstm.local.kafka_broker import ApacheKafkaBroker

    topic = f"soak-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        address = bootstrap or stack.enter_context(ApacheKafkaBroker()).bootstrap
        sink = KafkaSink(address, topic, 1, {})
        stack.callback(sink.close)

        def send(lines: list[str]) -> None:
            for i, line in enumerate(lines):
                sink.send(line, line.split(",", 1)[0] if "," in line else i)
            sink.producer.flush()

        yield send, address, topic


def file_feed(directory: Path) -> Callable[[list[str]], None]:
    return FileFeed(directory).batch


Send = Callable[[list[str]], None]


def soak(spark: Any, cfg: Any, checkpoint: Path, source: Any, send: Send, lines: Callable[[int], list[str]], batches: int, every: int) -> list[dict[str, Any]]:
    """Feed ``batches`` batches one at a time through the trainer; a sample every ``every`` batches (and at 0)."""
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    trainer = StreamingTrainer(spark, cfg, checkpoint)
    trainer.warm_up()
    query = start_query(trainer, source)
    samples: list[dict[str, Any]] = []
    walls: list[float] = []
    try:
        for n in range(batches):
            started = time.perf_counter()
            send(lines(n))
            query.processAllAvailable()
            walls.append(time.perf_counter() - started)
            if n == 0 or (n + 1) % every == 0:
                samples.append(sample(spark, checkpoint, n + 1, walls))
                walls = []
                s = samples[-1]
                print(
                    f"{s['batches']:>6} batches: driver {s['driver_rss_mib']:.0f} MiB, JVM heap {s['jvm_heap_mib']:.0f} MiB, "
                    f"workers {sum(s['workers_pss_mib']):.0f} MiB, checkpoint {s['checkpoint_bytes']['total'] / MIB:.2f} MiB, "
                    f"median batch {s['latency_median_s']:.3f} s",
                    flush=True,
                )
        if query.exception() is not None:
            raise RuntimeError(f"the trainer's query failed: {query.exception()}")
    finally:
        query.stop()
    samples[-1]["rows_trained"] = trainer.state.rows_seen
    samples[-1]["rows_dead"] = trainer.history.rows_dead
    return samples


def series(samples: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each figure as one list over the samples (checkpoint parts as ``checkpoint_<part>_mib``)."""
    out: dict[str, list[float]] = {"batches": [s["batches"] for s in samples]}
    for key in ("driver_rss_mib", "jvm_heap_mib", "jvm_rss_mib", "latency_median_s"):
        out[key] = [float(s[key]) for s in samples]
    out["workers_pss_mib"] = [float(sum(s["workers_pss_mib"])) for s in samples]
    out["workers_rss_max_mib"] = [float(max(s.get("workers_rss_mib") or [0.0])) for s in samples]  # the largest worker
    out["fds"] = [float(sum(s["fds"].values())) for s in samples]
    for part in samples[0]["checkpoint_bytes"]:
        out[f"checkpoint_{part}_mib"] = [s["checkpoint_bytes"][part] / MIB for s in samples]
    return out


def growth_per_1000(xs: list[float], ys: list[float], warmup: int) -> float:
    """Least-squares slope of ``ys`` against ``xs`` (batches) after ``warmup`` batches, per 1 000 batches."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x > warmup]
    if len(pts) < 2:
        return float("nan")
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return 1000 * sum((x - mx) * (y - my) for x, y in pts) / var if var else float("nan")


def summarize(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    s = series(samples)
    xs = s["batches"]
    return {"series": s, "growth_per_1000_batches": {k: growth_per_1000(xs, v, warmup) for k, v in s.items() if k != "batches"}}


def plot(results: dict[str, Any], path: Path) -> Path:
    keys = [k for k in next(iter(results.values()))["series"] if k != "batches"]
    cols = 4
    plt, fig, axes = panels((len(keys) + cols - 1) // cols, 2.6, cols, 4.0 * cols)
    for ax, key in zip(axes.flat, keys, strict=False):
        for mode, run in results.items():
            ax.plot(run["series"]["batches"], run["series"][key], marker=".", label=mode)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("batches", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_mode(spark: Any, mode: str, args: Any, base: Path) -> list[dict[str, Any]]:
    """One soak of ``mode`` (rows or events) on the chosen source, in a fresh checkpoint under ``base``."""
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.testing.event_synth import SINE_SETTINGS
    from streaming_lstm.trainer.sources import file_source

    common = {"stream.trigger": "0s", "train.warmup_rows": 0, "stream.partitions": 2}
    if mode == "rows":
        cfg = load_config(ROOT / "conf" / "iris.toml", {**common, "train.warmup_epochs": 0, **args.set})
        lines = row_batches(args.rows, args.dead_every)
    else:
        cfg = load_config(None, {**SINE_SETTINGS, **common, **args.set})
        lines = event_batches(max(1, args.rows // 4), 4, args.batches, args.dead_every)
    checkpoint = base / f"ck-{mode}"
    if args.source == "file":
        feed = base / f"in-{mode}"
        send = file_feed(feed)
        return soak(spark, cfg, checkpoint, file_source(spark, feed, cfg), send, lines, args.batches, args.every)
    with kafka_feed(args.bootstrap) as (send, bootstrap, topic):
        return soak(spark, cfg, checkpoint, read_kafka(spark, cfg, bootstrap, topic, {}), send, lines, args.batches, args.every)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("soak", __doc__)
    p.add_argument("--batches", type=int, default=3000, help="micro-batches per run (default 3000)")
    p.add_argument("--every", type=int, default=100, help="a sample every N batches (default 100)")
    p.add_argument("--rows", type=int, default=20, help="rows (events in event mode) per batch (default 20)")
    p.add_argument("--dead-every", type=int, default=10, help="one malformed row every N batches (0: none)")
    p.add_argument("--warmup", type=int, default=0, help="batches left out of the growth figures (default: a fifth of --batches)")
    p.add_argument("--source", choices=("kafka", "file"), default="kafka", help="kafka (default; a local broker, or --bootstrap) or file (one file per batch)")
    p.add_argument("--bootstrap", help="--source kafka: this broker instead of a local Apache Kafka one started for the run")
    p.add_argument("--modes", default="rows,events", help="comma-separated: rows, events (default both)")
    p.add_argument("--out", default="soak", help="result name: bench/results/OUT.json and OUT.png (default soak)")
    p.add_argument("--set", action="append", default=[], type=setting, metavar="KEY=VALUE", help="a configuration override, e.g. stream.log_roll_mb=1")
    args = p.parse_args(argv)
    args.set = dict(args.set)
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]"))  # the UI on, as `train` runs
    warmup = args.warmup or args.batches // 5
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in args.modes.split(","):
                samples = run_mode(spark, mode, args, Path(tmp))
                results[mode] = {"samples": samples, **summarize(samples, warmup)}
    finally:
        spark.stop()
    payload = {"batches": args.batches, "every": args.every, "rows": args.rows, "source": args.source, "warmup": warmup, "settings": args.set, "runs": results}
    path = write(args.out, payload)
    png = plot(results, path.with_suffix(".png"))
    for mode, run in results.items():
        print(f"{mode}: growth per 1000 batches after {warmup}: " + ", ".join(f"{k} {v:+.3g}" for k, v in run["growth_per_1000_batches"].items()))
    print(json.dumps(payload) if args.json else f"wrote {path} and {png}")
    return payload


if __name__ == "__main__":
    main()
