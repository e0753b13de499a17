"""A short soak: a few hundred micro-batches through the real trainer on the shared session, with
the bounds set small enough to be reached in that many batches. What grows with the number of
batches must stop growing after the warm-up; nothing dropped by a bound goes uncounted.

The long runs and their figures per 1 000 batches are ``python -m bench soak`` (README,
Benchmarks); this test states its bounds in the constants below.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

import pytest

from bench.soak import growth_per_1000, row_batches, series, soak
from streaming_lstm.core.config_load import load_config
from streaming_lstm.storage import deadletters
from streaming_lstm.testing.memory_source import MemorySource

pytestmark = [pytest.mark.spark, pytest.mark.soak]
ROOT = Path(__file__).resolve().parent.parent

BATCHES, EVERY, WARMUP = 300, 25, 100
ROWS, DEAD_EVERY = 20, 5
ROLL_MB, KEPT, DEAD_MB, RETAIN = 0.02, 1, 0.004, 20
# After the warm-up, per 1 000 batches (least-squares slopes over the samples):
DRIVER_MIB, WORKERS_MIB, JVM_HEAP_MIB, CHECKPOINT_MIB = 30.0, 30.0, 120.0, 0.2


@pytest.fixture(scope="module")
def run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    checkpoint = tmp_path_factory.mktemp("soak") / "ck"
    over = {
        "stream.trigger": "0s",
        "train.warmup_rows": 0,
        "train.warmup_epochs": 0,
        "train.rehearsal_rows": 2 * ROWS,  # the rehearsal buffer at its bound from batch 2 on, at the cost of 2 batches' rows a batch
        "stream.log_roll_mb": ROLL_MB,
        "stream.log_files_kept": KEPT,
        "stream.deadletter_max_mb": DEAD_MB,
    }
    cfg = load_config(ROOT / "conf" / "iris.toml", over)
    source = MemorySource(spark)  # its offsets live in the checkpoint; committed rows leave the JVM
    before = spark.conf.get("spark.sql.streaming.minBatchesToRetain")
    spark.conf.set("spark.sql.streaming.minBatchesToRetain", str(RETAIN))  # Spark's own metadata bound, reached early
    try:
        samples = soak(spark, cfg, checkpoint, source.df(), source.add, row_batches(ROWS, DEAD_EVERY), BATCHES, EVERY)
    finally:
        spark.conf.set("spark.sql.streaming.minBatchesToRetain", before)
    return samples, checkpoint


def slope(samples: list[dict[str, Any]], key: str) -> float:
    s = series(samples)
    return growth_per_1000(s["batches"], s[key], WARMUP)


def test_every_row_is_trained_or_accounted_for(run: tuple[list[dict[str, Any]], Path]) -> None:
    samples, checkpoint = run
    assert samples[-1]["rows_trained"] == BATCHES * ROWS
    sent_dead = len(range(0, BATCHES, DEAD_EVERY))
    assert samples[-1]["rows_dead"] == sent_dead
    d = str(checkpoint / "deadletter")
    kept = sum(deadletters.rows_in(f"{d}/{name}") for _, name in deadletters.batch_dirs(d))
    dropped = deadletters.dropped(d)
    assert dropped["rows"] > 0, "the dead-letter cap was never reached: the test does not test it"
    assert kept + dropped["rows"] == sent_dead


def test_the_files_a_run_writes_stay_within_their_settings(run: tuple[list[dict[str, Any]], Path]) -> None:
    samples, checkpoint = run
    roll = ROLL_MB * 2**20
    line = 2048  # one metrics line or one TensorBoard event of this model, at most
    assert sorted(p.name for p in checkpoint.glob("metrics.jsonl*")) == ["metrics.jsonl", "metrics.jsonl.1"]
    assert len(list((checkpoint / "tensorboard").iterdir())) == KEPT + 1
    for s in samples:
        parts = s["checkpoint_bytes"]
        assert parts["metrics"] <= roll * (KEPT + 1) + line, s
        assert parts["tensorboard"] <= (roll + line) * (KEPT + 1), s
        assert parts["deadletter"] <= DEAD_MB * 2**20 + 4 * line, s


def test_nothing_grows_after_the_warm_up(run: tuple[list[dict[str, Any]], Path]) -> None:
    samples, _ = run
    growth = {
        "driver_rss_mib": (slope(samples, "driver_rss_mib"), DRIVER_MIB),
        "workers_rss_max_mib": (slope(samples, "workers_rss_max_mib"), WORKERS_MIB),
        "jvm_heap_mib": (slope(samples, "jvm_heap_mib"), JVM_HEAP_MIB),
        "checkpoint_total_mib": (slope(samples, "checkpoint_total_mib"), CHECKPOINT_MIB),
    }
    assert all(g < bound for g, bound in growth.values()), growth
    late = [s["fds"] for s in samples if s["batches"] > WARMUP]
    for process in ("driver", "jvm"):
        counts = [f[process] for f in late]
        assert max(counts) - counts[0] <= 16, (process, counts)  # growth; descriptors an earlier test left may close meanwhile


def test_cost_per_batch_does_not_trend_upwards(run: tuple[list[dict[str, Any]], Path]) -> None:
    """The driver's and the JVM's CPU seconds per batch between samples, last third against first
    third after the warm-up: what a batch costs must not grow with the batches before it. CPU
    time, not wall time: the suite runs two workers side by side, and a neighbour's load doubled
    this run's wall latency over its last windows once (0.58 s against 0.28 s) while nothing in
    the run grew. The wall latencies per window are printed; ``python -m bench soak`` reports them."""
    samples, _ = run
    late = [s for s in samples if s["batches"] > WARMUP]
    per_batch = [(sum(b["cpu_s"].values()) - sum(a["cpu_s"].values())) / (b["batches"] - a["batches"]) for a, b in itertools.pairwise(late)]
    third = max(len(per_batch) // 3, 1)
    first, last = statistics.median(per_batch[:third]), statistics.median(per_batch[-third:])
    assert first > 0 and last <= 1.5 * first, (per_batch, [s["latency_median_s"] for s in late])  # a ratio within one run
