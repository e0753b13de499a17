"""river: prequential accuracy of streaming-lstm next to River's online learners, on the same streams.

Data sets: ImageSegments, Phishing and Bananas as River's wheel ships them, plus River's SEA and
Agrawal generators with an abrupt concept drift in the middle (one concept, then another).
Every learner sees the rows in the same order. Prequential accuracy = rows predicted right before
the learner learned from them / rows, over the whole stream.

* streaming-lstm runs through the real trainer (a local[2] Spark session, a memory stream, one
  ``--batch``-row micro-batch at a time, ``processAllAvailable``), with the configuration
  ``streaming-lstm init-config`` proposes for the data set's CSV and the defaults, plus each
  ``--variant`` (``NAME=key=value,key=value``: config overrides, e.g. a server optimiser).
* River's models learn row by row (``predict_one`` then ``learn_one``: River's own progressive
  validation, ``row`` below) and, for the same granularity as ours, at our batch boundaries: every
  row of a batch is predicted by the model as it was before the batch (``batch``).

For the drift streams, ``recovery_rows``: rows from streaming-lstm's first ADWIN alarm after the
drift until the accuracy over the last 500 rows is back within 0.02 of its accuracy over the 1 000
rows before the drift (None if it never is). Drift streams: 6 000 rows, the drift at row 3 000. Writes bench/results/river.json.

``--river-from bench/results/river.json`` takes River's figures from an earlier run instead of
running River again (its learners are seeded and see the same rows: the figures are the same), to
measure a change of the trainer in a third of the time; the results name the file they came from.
"""

from __future__ import annotations

import itertools
import json
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, panels, write
from bench.common import parser as bench_parser

DRIFT_AT = 3_000
DRIFT_ROWS = 6_000
# deep-river's LSTM classifier as deep-river's documentation publishes it (its own protocol, quoted
# as a reference, not re-run here): prequential accuracy.
DEEP_RIVER_LSTM = {"Phishing": 0.870, "Bananas": 0.607}


def river_streams() -> dict[str, Callable[[], Iterator[tuple[dict[str, Any], Any]]]]:
    from river import datasets
    from river.datasets import synth

    def drift(first: Any, second: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        # Abrupt: DRIFT_AT rows of the first concept, then the second. (River's ConceptDriftStream
        # with width 1 overflows math.exp in 0.26.1, so the switch is made here.)
        return itertools.chain(itertools.islice(iter(first), DRIFT_AT), itertools.islice(iter(second), DRIFT_ROWS - DRIFT_AT))

    return {
        "ImageSegments": lambda: iter(datasets.ImageSegments()),
        "Phishing": lambda: iter(datasets.Phishing()),
        "Bananas": lambda: iter(datasets.Bananas()),
        "SEA-drift": lambda: drift(synth.SEA(variant=0, seed=1), synth.SEA(variant=3, seed=2)),
        "Agrawal-drift": lambda: drift(synth.Agrawal(classification_function=0, seed=1), synth.Agrawal(classification_function=4, seed=2)),
    }


def river_models(n_features: int) -> dict[str, Callable[[], Any]]:
    from river import dummy, ensemble, forest, linear_model, multiclass, preprocessing

    return {
        "ARF": lambda: forest.ARFClassifier(seed=42),
        "AMF": lambda: forest.AMFClassifier(seed=42),
        "SRP": lambda: ensemble.SRPClassifier(seed=42),
        "LogisticRegression": lambda: preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression()),
        "last-class": lambda: dummy.NoChangeClassifier(),
    }


def to_csv(rows: list[tuple[dict[str, Any], Any]], path: Path) -> list[str]:
    """The stream as CSV (columns c0.. and label, missing values empty); returns the data lines."""
    names = list(rows[0][0])
    lines = [",".join("" if x.get(n) is None else repr(float(x[n])) for n in names) + f",{y}" for x, y in rows]
    path.write_text(",".join([*(f"c{i}" for i in range(len(names))), "label"]) + "\n" + "\n".join(lines) + "\n")
    return lines


def run_river(make: Callable[[], Any], rows: list[tuple[dict[str, Any], Any]], batch: int) -> dict[str, Any]:
    """Row-by-row and batch-boundary prequential accuracy, seconds and traced peak memory."""
    out: dict[str, Any] = {}
    for mode in ("row", "batch"):
        model = make()
        tracemalloc.start()
        started = time.perf_counter()
        correct: list[int] = []
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            if mode == "batch":
                preds = [model.predict_one(x) for x, _ in chunk]
                for x, y in chunk:
                    model.learn_one(x, y)
            else:
                preds = []
                for x, y in chunk:
                    preds.append(model.predict_one(x))
                    model.learn_one(x, y)
            correct.append(sum(int(p == y) for p, (_, y) in zip(preds, chunk, strict=True)))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[mode] = {"accuracy": sum(correct) / len(rows), "seconds": time.perf_counter() - started, "peak_mib": peak / 2**20, "correct": correct}
    return out


def run_lstm(spark: Any, csv: Path, lines: list[str], batch: int, overrides: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The real trainer over the stream, ``batch`` rows per micro-batch, in order."""
    from streaming_lstm.commands.init_config import propose, to_toml
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    proposed = propose(csv)
    conf = workdir / "conf.toml"
    conf.write_text(to_toml(proposed, str(csv)))
    if "model.timesteps" in overrides:  # the variant reshapes the window: keep all features in it
        overrides = {"model.features_per_step": len(proposed["data"]["features"]) // int(overrides["model.timesteps"]), **overrides}
    cfg = load_config(conf, {"stream.trigger": "0s", "stream.tensorboard": False, **overrides})
    source = MemorySource(spark)
    trainer = StreamingTrainer(spark, cfg, workdir / "ck")
    trainer.warm_up()
    started = time.perf_counter()
    query = start_query(trainer, source.df())
    try:
        for i in range(0, len(lines), batch):
            source.add(lines[i : i + batch])
            query.processAllAvailable()
    finally:
        query.stop()
    seconds = time.perf_counter() - started
    hist = trainer.history
    assert sum(m["rows_valid"] for m in hist) + sum(m["rows_dead"] for m in hist) == len(lines), "every row trained or dead-lettered"
    return {
        "accuracy": sum(m["prequential_correct"] for m in hist) / len(lines),
        "seconds": seconds,
        "driver_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "correct": [m["prequential_correct"] for m in hist],
        "rows": [m["rows_valid"] + m["rows_dead"] for m in hist],
        "drift_batches": [i for i, m in enumerate(hist) if m.get("drift")],
        "rows_dead": sum(m["rows_dead"] for m in hist),
    }


def recovery_rows(correct: list[int], rows: list[int], alarms: list[int]) -> int | None:
    """Rows from the first alarm after the drift until the last-500-row accuracy is back within
    0.02 of the accuracy over the 1 000 rows before the drift."""
    ends = np.cumsum(rows)
    starts = ends - np.array(rows)
    per_row_c, per_row_n = np.array(correct, float), np.array(rows, float)
    before = (starts >= DRIFT_AT - 1000) & (ends <= DRIFT_AT)
    target = per_row_c[before].sum() / per_row_n[before].sum() - 0.02
    after = [a for a in alarms if ends[a] > DRIFT_AT]
    if not after:
        return None
    alarm = after[0]
    for j in range(alarm, len(rows)):
        window = (starts >= ends[j] - 500) & (ends <= ends[j])
        if ends[j] - ends[alarm] >= 500 and per_row_c[window].sum() / per_row_n[window].sum() >= target:
            return int(ends[j] - ends[alarm])
    return None


def plot(payload: dict[str, Any], out: Path) -> Path:
    """Learning curves: accuracy per batch (smoothed over 5 batches) against rows seen, per data set."""
    sets = payload["datasets"]
    plt, fig, axes = panels(len(sets), 2.6)
    for ax, (name, entry) in zip(axes[:, 0], sets.items(), strict=True):
        rows = np.array(entry["curves"]["batch_rows"], float)
        seen = np.cumsum(rows)
        for label, correct in entry["curves"].items():
            if label == "batch_rows":
                continue
            c = np.array(correct, float)
            if label.startswith("river:"):  # per batch of the same boundaries
                c = c[: len(rows)]
            k = np.ones(5)
            ax.plot(seen[: len(c)], np.convolve(c, k, "same") / np.convolve(rows[: len(c)], k, "same"), label=label, lw=1.2)
        if name.endswith("-drift"):
            ax.axvline(DRIFT_AT, color="gray", ls="--", lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("rows seen")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def river_of(reused: dict[str, Any], name: str, entry: dict[str, Any], batch: int) -> dict[str, Any]:
    """River's results for ``name`` from an earlier results file (``--river-from``): River's learners
    are seeded and see the same rows in the same order, so a re-run gives the same figures."""
    old = reused["datasets"].get(name)
    if old is None or "river_best" not in old or reused.get("batch_rows") != batch or old["rows"] != entry["rows"]:
        raise SystemExit(f"--river-from: no River results for {name} at {batch}-row batches and {entry['rows']} rows there")
    keys = ("river", "river_best", "river_best_model", "river_best_at_batches")
    return {**{k: old[k] for k in keys}, "curves": {**entry["curves"], **{k: v for k, v in old["curves"].items() if k.startswith("river:")}}}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, body = text.partition("=")
    if not body:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value[,key=value]")
    over = {}
    for item in body.split(","):
        key, _, value = item.partition("=")
        over[key.strip()] = value.strip()
    return name, over


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("river", __doc__)
    p.add_argument("--datasets", default="ImageSegments,Phishing,Bananas,SEA-drift,Agrawal-drift")
    p.add_argument("--batch", type=int, default=50, help="rows per micro-batch (default 50)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=key=value,...", help="also run the trainer with these overrides")
    p.add_argument("--river-models", default="ARF,AMF,SRP,LogisticRegression,last-class")
    p.add_argument("--river-from", metavar="JSON", help="take River's results from an earlier results file instead of running River")
    p.add_argument("--out", default="river", help="results file name under bench/results (default river)")
    p.add_argument("--plot-only", action="store_true", help="only draw bench/results/OUT.png from OUT.json")
    args = p.parse_args(argv)
    if args.plot_only:
        path = RESULTS / f"{args.out}.json"
        print(f"wrote {plot(json.loads(path.read_text()), path.with_suffix('.png'))}")
        return {}

    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    spark = get_session(SparkConfig(master="local[2]", conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}))
    variants = [("defaults", {}), *(parse_variant(v) for v in args.variant)]
    reused = json.loads(Path(args.river_from).read_text()) if args.river_from else None
    streams = river_streams()
    results: dict[str, Any] = {}
    for name in args.datasets.split(","):
        rows = list(streams[name]())
        entry: dict[str, Any] = {"rows": len(rows), "features": len(rows[0][0]), "classes": len({y for _, y in rows})}
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / f"{name}.csv"
            lines = to_csv(rows, csv)
            lstm: dict[str, Any] = {}
            for vname, over in variants:
                work = Path(tmp) / vname
                work.mkdir()
                lstm[vname] = run_lstm(spark, csv, lines, args.batch, over, work)
                print(f"{name}: streaming-lstm[{vname}] {lstm[vname]['accuracy']:.3f} in {lstm[vname]['seconds']:.1f} s", flush=True)
        curves = {"batch_rows": lstm["defaults"]["rows"], **{f"lstm:{v}": r["correct"] for v, r in lstm.items()}}
        entry.update(
            streaming_lstm=lstm["defaults"]["accuracy"],
            streaming_lstm_seconds=lstm["defaults"]["seconds"],
            streaming_lstm_variants={v: r["accuracy"] for v, r in lstm.items()},
            curves=curves,
        )
        if name in DEEP_RIVER_LSTM:
            entry["deep_river_lstm_published"] = DEEP_RIVER_LSTM[name]
        if reused is not None:
            entry.update(river_of(reused, name, entry, args.batch), river_reused_from=f"{args.river_from} ({reused.get('date')})")
        else:
            river = {}
            for mname, make in river_models(entry["features"]).items():
                if mname in args.river_models.split(","):
                    river[mname] = run_river(make, rows, args.batch)
                    print(f"{name}: river {mname} row {river[mname]['row']['accuracy']:.3f} batch {river[mname]['batch']['accuracy']:.3f}", flush=True)
            learners = [m for m in river if m != "last-class"]
            if learners:  # none when --river-models names only last-class: the trainer's figures alone
                best = max(learners, key=lambda m: river[m]["row"]["accuracy"])
                entry.update(
                    river_best=river[best]["row"]["accuracy"],
                    river_best_model=best,
                    river_best_at_batches=river[best]["batch"]["accuracy"],
                    river={m: {g: {k: v for k, v in r[g].items() if k != "correct"} for g in r} for m, r in river.items()},
                )
                curves[f"river:{best}"] = river[best]["row"]["correct"]
        if name.endswith("-drift"):
            entry["recovery_rows"] = {v: recovery_rows(r["correct"], r["rows"], r["drift_batches"]) for v, r in lstm.items()}
            entry["alarm_batches"] = {v: r["drift_batches"] for v, r in lstm.items()}
        results[name] = entry
        write(args.out, {"batch_rows": args.batch, "variants": dict(variants), "datasets": results})  # so far
    spark.stop()
    payload = {"batch_rows": args.batch, "variants": dict(variants), "datasets": results}
    written = f"wrote {write(args.out, payload)} and {plot(payload, RESULTS / f'{args.out}.png')}"
    keys = ("streaming_lstm", "river_best", "river_best_model", "river_best_at_batches", "deep_river_lstm_published", "streaming_lstm_variants")
    summary = {k: {x: v[x] for x in keys if x in v} for k, v in results.items()}
    print(json.dumps(summary) if args.json else "\n".join([*(f"{k}: {v}" for k, v in summary.items()), written]))
    return payload
