"""What a long run keeps is bounded: metrics.jsonl and TensorBoard files roll, dead letters are
capped with a count of what was dropped, and the run's in-memory history keeps totals, not every
batch. Unit level (no Spark); tests/test_soak.py runs the trainer for hundreds of batches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from streaming_lstm.core.config_load import ConfigError, load_config
from streaming_lstm.storage import deadletters
from streaming_lstm.storage.metrics import History, MetricsLog, MetricsTail, log_files, read_metrics
from streaming_lstm.storage.tb_log import TensorBoardLog, event_files

ROOT = Path(__file__).resolve().parent.parent


def record(batch_id: int, rows: int = 10, dead: int = 0) -> dict[str, object]:
    return {"batch_id": batch_id, "rows_in": rows + dead, "rows_valid": rows, "rows_dead": dead, "prequential_correct": rows // 2, "pad": "x" * 200}


def test_metrics_roll_keeps_the_newest_files_and_readers_see_every_kept_batch(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, roll_bytes=1000, kept=2)
    for b in range(40):
        log.append(record(b))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["metrics.jsonl", "metrics.jsonl.1", "metrics.jsonl.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    kept = [int(m["batch_id"]) for m in read_metrics(tmp_path)]
    assert kept == list(range(kept[0], 40)) and kept[0] > 0  # the oldest lines went, no gap after
    assert log.last_batch_id() == 39
    assert log_files(str(path)) == [f"{path}.2", f"{path}.1", str(path)]


def test_metrics_last_batch_id_reads_the_rolled_file_when_the_new_one_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, roll_bytes=300, kept=1)
    log.append(record(0))
    log.append(record(1))  # rolls: batch 0 is in metrics.jsonl.1
    path.write_text("")  # as if the process died after a roll's rename, before its append
    assert MetricsLog(path).last_batch_id() == 0


def test_metrics_roll_off_by_default_and_zero_kept_drops_the_old_file(tmp_path: Path) -> None:
    unbounded = MetricsLog(tmp_path / "a.jsonl")
    for b in range(30):
        unbounded.append(record(b))
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]
    single = MetricsLog(tmp_path / "b.jsonl", roll_bytes=600, kept=0)
    for b in range(30):
        single.append(record(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]
    assert (tmp_path / "b.jsonl").stat().st_size <= 600


def test_tail_follows_the_log_across_rolls_without_losing_a_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, roll_bytes=700, kept=1)
    tail = MetricsTail(str(path))
    seen: list[int] = []
    for b in range(25):
        log.append(record(b))
        if b % 2:  # the follower reads every other batch: a roll can fall between two reads
            seen += [int(m["batch_id"]) for m in tail.read_new()]
    seen += [int(m["batch_id"]) for m in tail.read_new()]
    assert seen == list(range(25))


def test_history_keeps_the_newest_records_and_totals_over_all(tmp_path: Path) -> None:
    h = History(kept=5)
    for b in range(12):
        h.append(record(b, rows=10, dead=1))  # type: ignore[arg-type]
    assert len(h) == 5 and [m["batch_id"] for m in h] == list(range(7, 12)) and h[-1]["batch_id"] == 11
    assert (h.rows_valid, h.rows_dead, h.rows_in) == (120, 12, 132)
    assert next(m["batch_id"] for m in reversed(h)) == 11
    assert [m["batch_id"] for m in h[:2]] == [7, 8] and [m["batch_id"] for m in h[-2:]] == [10, 11]


def test_tensorboard_files_roll_and_keep_the_newest(tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    tb = TensorBoardLog(logdir, roll_bytes=4000, kept=2)
    weights = {"w": np.linspace(-1, 1, 300).reshape(10, 30)}
    for step in range(60):
        tb.write(step, {"prequential_accuracy": 0.5, "rows_valid": 10}, weights)
    tb.close()
    files = event_files(str(logdir))
    assert len(files) == 3  # two full files kept, and the one being written
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for name in files:
        acc = EventAccumulator(str(logdir / name))
        acc.Reload()
        steps += [e.step for e in acc.Tensors("prequential/accuracy")]
    assert steps == list(range(steps[0], 60)) and steps[0] > 0


def write_batch(directory: Path, batch_id: int, rows: int) -> None:
    d = directory / f"batch_id={batch_id}"
    d.mkdir(parents=True)
    (d / "part-00000.json").write_text("".join(json.dumps({"value": f"bad {i}", "reason": "x" * 50}) + "\n" for i in range(rows)))
    (d / "_SUCCESS").write_text("")


def test_deadletter_cap_drops_the_oldest_batches_counts_and_logs_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "deadletter"
    for b in range(10):
        write_batch(d, b, rows=b + 1)
    one = (d / "batch_id=9" / "part-00000.json").stat().st_size  # the largest batch
    cap = deadletters.DeadLetterCap(str(d), max_bytes=3 * one)
    with caplog.at_level(logging.WARNING, logger="streaming_lstm.storage.deadletters"):
        total = cap.written(9)
    left = [b for b, _ in deadletters.batch_dirs(str(d))]
    assert left[-1] == 9 and left == list(range(left[0], 10)) and left[0] > 0
    assert total["batches"] == left[0] and total["rows"] == sum(b + 1 for b in range(left[0])) and total["last_batch_id"] == left[0] - 1
    assert deadletters.dropped(str(d)) == total
    assert "deleted" in caplog.text and f"{total['rows']} rows" in caplog.text
    # later batches are added one at a time: the cap holds with the sizes it keeps
    write_batch(d, 10, rows=10)
    after = cap.written(10)
    assert [b for b, _ in deadletters.batch_dirs(str(d))][-1] == 10 and after["batches"] > total["batches"]
    assert sum(f.stat().st_size for f in d.rglob("part-*")) <= 3 * one
    # the newest batch stays even over the cap; a cap of 0 keeps everything
    assert deadletters.DeadLetterCap(str(d), max_bytes=1).written(10)["batches"] == 10
    assert [b for b, _ in deadletters.batch_dirs(str(d))] == [10]
    assert deadletters.DeadLetterCap(str(d), max_bytes=0).written(10)["batches"] == 10


@pytest.mark.parametrize("key", ["stream.log_roll_mb", "stream.log_files_kept", "stream.deadletter_max_mb"])
def test_the_bounds_refuse_negative_values_by_name(key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(ROOT / "conf" / "iris.toml", {key: -1})


@pytest.mark.spark
def test_the_jvm_descriptor_check_reads_the_jvm_and_speaks_only_when_asked(spark: object) -> None:
    from streaming_lstm.trainer.window_state import FD_CHECK_EVERY, descriptor_warning

    assert descriptor_warning(spark, FD_CHECK_EVERY) is None  # type: ignore[arg-type]  # far below half the limit
    assert descriptor_warning(spark, FD_CHECK_EVERY + 1, share=0.0) is None  # type: ignore[arg-type]  # not a checking batch
    warning = descriptor_warning(spark, FD_CHECK_EVERY, share=0.0)  # type: ignore[arg-type]
    assert warning is not None and "SPARK-58932" in warning and "file descriptors" in warning
