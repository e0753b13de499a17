"""Hostile input and poisoned updates: no crash, every bad row dead-lettered with its reason, every
valid row trained, the model finite."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.config_load import load_config

pytestmark = [pytest.mark.spark, pytest.mark.faults]
ROOT = Path(__file__).resolve().parent.parent


def config(**over: Any) -> AppConfig:
    return load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", **over})


def hostile_rows(rng: random.Random, valid: list[str], n: int) -> list[tuple[bytes, str]]:
    """``n`` malformed rows as (bytes, expected reason prefix)."""
    header = b"sepal_length,sepal_width,petal_length,petal_width,species"
    out: list[tuple[bytes, str]] = []
    for _ in range(n):
        base = rng.choice(valid).split(",")
        kind = rng.randrange(11)
        if kind == 0:
            k = rng.choice([1, 2, 3, 4, 6, 7, 9])
            fields = (base * 2)[:k]
            out.append((",".join(fields).encode(), "expected 5 fields"))
        elif kind == 1:
            base[rng.randrange(4)] = rng.choice(["abc", "1.2.3", "--", "0x1G", "five"])
            out.append((",".join(base).encode(), "non-numeric feature"))
        elif kind == 2:
            base[rng.randrange(4)] = rng.choice(["NaN", "nan", "-NaN"])
            out.append((",".join(base).encode(), "non-finite feature"))
        elif kind == 3:
            base[rng.randrange(4)] = rng.choice(["Infinity", "-Infinity", "inf", "-inf"])
            out.append((",".join(base).encode(), "non-finite feature"))
        elif kind == 4:
            base[rng.randrange(4)] = rng.choice(["1e308", "-1e308", "1e10"])
            out.append((",".join(base).encode(), "feature '"))
        elif kind == 5:
            out.append((rng.choice([b"", b"   ", b"\t"]), "empty row"))
        elif kind == 6:
            base[4] = rng.choice(["3", "-1", "setosa", "", "0.0", "1 1"])
            out.append((",".join(base).encode(), "unknown label"))
        elif kind == 7:
            out.append((header, "header row"))
        elif kind == 8:
            out.append((b"\xff\xfe\xfd," + ",".join(base[1:]).encode(), "non-numeric feature"))
        elif kind == 9:
            out.append((",".join(base[:4]).encode() + b",\xc3\x28", "unknown label"))
        else:
            out.append((b" , , , , ", "non-numeric feature"))
    out.append((b"x" * 1_000_000, "expected 5 fields"))  # a 1 MB line
    return out


def test_fuzz_ten_thousand_hostile_rows(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    rng = random.Random(1234)
    bad = hostile_rows(rng, iris_lines, 10_000)
    valid = [line.encode() for line in iris_lines * 4]
    rows = [(b, None) for b in valid] + [(b, reason) for b, reason in bad]
    rng.shuffle(rows)
    incoming = tmp_path / "in"
    incoming.mkdir()
    for i in range(4):
        (incoming / f"part-{i}.csv").write_bytes(b"\n".join(b for b, _ in rows[i::4]) + b"\n")

    cfg = config(**{"stream.max_files_per_trigger": 1, "stream.partitions": 2})
    ck = tmp_path / "ck"
    trainer = StreamingTrainer(spark, cfg, ck)
    query = start_query(trainer, file_source(spark, incoming, cfg))
    try:
        query.processAllAvailable()
        assert query.exception() is None
    finally:
        query.stop()

    h = trainer.history
    assert len(h) == 4
    assert sum(m["rows_valid"] for m in h) == 600 == trainer.state.rows_seen
    headers = [b for b, reason in bad if reason == "header row"]
    dead = [(b, reason) for b, reason in bad if reason != "header row"]
    assert headers and sum(m["headers_skipped"] for m in h) == len(headers), "header lines are skipped and counted"
    assert sum(m["rows_dead"] for m in h) == len(dead)
    records = [json.loads(line) for f in (ck / "deadletter").rglob("*.json") for line in f.read_text().splitlines()]
    assert len(records) == len(dead)
    expected: dict[str, int] = {}
    for _, reason in dead:
        expected[reason] = expected.get(reason, 0) + 1
    for prefix, count in expected.items():
        assert sum(r["reason"].startswith(prefix) for r in records) == count, prefix
    big = [r for r in records if r["raw_length"] == 1_000_000]
    assert len(big) == 1 and len(big[0]["raw"]) == 65536
    assert all(np.isfinite(w).all() for w in trainer.state.weights.values())
    # The checkpoint directory is private (0700): what Spark and Hadoop write beneath it (they chmod
    # their own files 0644) is unreachable for other users; the files we write are 0600 themselves.
    assert stat.S_IMODE(ck.stat().st_mode) == 0o700
    for f in [ck / "metrics.jsonl", *(ck / "model").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_burst_of_random_labels_is_survived_and_accuracy_recovers(spark: Any, iris_lines: list[str], iris_csv: Path, tmp_path: Path) -> None:
    from streaming_lstm.commands.standalone import evaluate
    from tests.test_streaming import shuffled, streaming

    rng = random.Random(7)
    clean = shuffled(iris_lines, 8, seed=7)
    poison = [",".join([*line.split(",")[:4], str(rng.randrange(3))]) for line in shuffled(iris_lines, 1, seed=8)]
    with streaming(spark, config(**{"stream.partitions": 3}), tmp_path / "ck") as (trainer, feed):
        for i in range(4):
            feed(clean[i * 75 : (i + 1) * 75])
        before = trainer.history[-1]["prequential_accuracy"]
        feed(poison[:75])
        feed(poison[75:])
        for i in range(4, 12):
            feed(clean[i * 75 : (i + 1) * 75])
    accs = [m["prequential_accuracy"] for m in trainer.history]
    assert all(all(np.isfinite(w).all() for w in [m["train_loss"]]) for m in trainer.history)
    assert np.mean(accs[-3:]) >= 0.9, accs
    assert before >= 0.8
    _, ev = evaluate(tmp_path / "ck", iris_csv)
    assert ev.accuracy >= 0.9


# Robust aggregations only: with "mean" the tasks fold their keys, so no key's weights reach the
# driver to be tampered with here; the tasks' own check is test_state.py's
# test_a_task_folds_its_keys_and_refuses_a_bad_one_itself.
@pytest.mark.parametrize("aggregation", ["median", "trimmed_mean"])
def test_an_exploding_partition_is_rejected_or_bounded(
    spark: Any, iris_lines: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aggregation: str
) -> None:
    import dataclasses

    from streaming_lstm.core.weights import flatten
    from tests.test_streaming import streaming

    over: dict[str, Any] = {"stream.partitions": 5, "stream.aggregation": aggregation, "stream.trim_fraction": 0.2, "stream.decay": 0.0}
    with streaming(spark, config(**over), tmp_path / "ck") as (tr, feed):
        feed(iris_lines[::2])
        real = tr._train

        def explode(*args: Any, **kwargs: Any) -> tuple[list[Any], list[Any]]:
            results, folds = real(*args, **kwargs)
            w = {k: v * 1e4 for k, v in results[0].weights.items()}  # finite, but far from everything else
            return [dataclasses.replace(results[0], weights=w), *results[1:]], folds

        monkeypatch.setattr(tr, "_train", explode)
        feed(iris_lines[1::2])
    size = float(np.abs(flatten(tr.state.weights)).max())
    assert np.isfinite(size) and size < 100, size  # bounded: the outlier does not move the aggregate
