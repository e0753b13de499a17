"""Whatever fails, every row that reached the source is trained exactly once and no model file is
corrupt. These tests kill processes (SIGKILL through streaming_lstm/faults.py) and corrupt files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from producers.replay import KafkaSink, replay

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker() -> Iterator[Any]:
    from streaming_lstm.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


def run_train(args: list[str], fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STREAMING_LSTM_FAULT"}
    if fault:
        env["STREAMING_LSTM_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "streaming_lstm.cli", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def metrics(ck: Path) -> list[dict[str, Any]]:
    path = ck / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.kafka
@pytest.mark.spark
def test_driver_killed_five_times_loses_nothing_and_ends_where_an_uninterrupted_run_ends(
    spark: Any, broker: Any, iris_lines: list[str], tmp_path: Path
) -> None:
    from streaming_lstm.store import ModelStore

    topic = f"kill-{uuid.uuid4().hex[:10]}"
    sink = KafkaSink(broker.bootstrap, topic, 3, {})
    replay(iris_lines, sink, rate=0, loops=4, seed=5)  # 600 rows, produced before the runs
    sink.close()

    def args(ck: Path) -> list[str]:
        return ["--source", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--checkpoint", str(ck),
                "--trigger", "0s", "--max-offsets-per-trigger", "60", "--partitions", "2", "--idle-timeout", "5"]  # fmt: skip

    ck = tmp_path / "killed"
    kills = ["mid_train@1", "before_save@2", "mid_save@4", "after_save@6", "mid_train@8"]
    for fault in kills:
        r = run_train(args(ck), fault)
        assert r.returncode == -9, f"{fault}: expected SIGKILL, got {r.returncode}\n{r.stderr[-2000:]}"
        store = ModelStore(ck / "model")
        for v in store.versions():  # every saved model file loads, after every kill
            store.load(v)
    final = run_train(args(ck))
    assert final.returncode == 0, final.stderr[-3000:]

    # The uninterrupted run: same topic, fresh checkpoint, in this process's Spark session (another
    # process and JVM than the killed runs, same local[2] layout and TF threads).
    from streaming_lstm.cli import build_parser, config_from_args
    from streaming_lstm.kafka_source import read_kafka
    from streaming_lstm.runner import run
    from streaming_lstm.trainer import StreamingTrainer

    reference = tmp_path / "reference"
    cfg = config_from_args(build_parser().parse_args(["train", *args(reference), "--conf", str(ROOT / "conf" / "iris.toml")]))
    trainer = StreamingTrainer(spark, cfg, reference, echo=False)
    run(trainer, read_kafka(spark, cfg, broker.bootstrap, topic, {}), idle_timeout=5)

    killed_m, ref_m = metrics(ck), metrics(reference)
    assert [m["batch_id"] for m in killed_m] == list(range(10)), "every batch id applied exactly once, in order"
    assert sum(m["rows_valid"] for m in killed_m) == 600 == sum(m["rows_valid"] for m in ref_m)
    versions = [m["version"] for m in killed_m]
    assert versions == sorted(set(versions)), "model versions only increase"
    a = ModelStore(ck / "model").load_latest()
    b = ModelStore(reference / "model").load_latest()
    assert a is not None and b is not None and a.version == b.version == 10
    diff = max(float(np.abs(a.weights[k] - b.weights[k]).max()) for k in a.weights)
    assert diff <= 1e-6, f"max abs difference to the uninterrupted run: {diff}"
    np.testing.assert_allclose(a.norm.mean, b.norm.mean, rtol=1e-12)


def test_python_worker_killed_mid_task_is_retried_and_no_row_counts_twice(iris_lines: list[str], tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        (incoming / f"part-{i}.csv").write_text("\n".join(iris_lines[j] for j in rng.permutation(150)) + "\n")
    ck = tmp_path / "ck"
    args = ["--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--trigger", "0s", "--idle-timeout", "6"]
    r = run_train([*args, "--master", "local[2,4]"], fault="worker@1")  # local[N,F]: F attempts per task
    assert r.returncode == 0, r.stderr[-3000:]
    m = metrics(ck)
    assert [x["batch_id"] for x in m] == [0, 1, 2]
    assert [x["rows_valid"] for x in m] == [150, 150, 150]
    assert "Python worker exited unexpectedly" in r.stderr or "crashed" in r.stderr.lower() or "lost task" in r.stderr.lower()


def test_corrupt_newest_checkpoint_falls_back_with_a_warning_and_none_loadable_stops(iris_lines: list[str], tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text("\n".join(iris_lines[:75]) + "\n")
    (incoming / "b.csv").write_text("\n".join(iris_lines[75:]) + "\n")
    ck = tmp_path / "ck"
    base = ["--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--trigger", "0s", "--idle-timeout", "4"]
    assert run_train(base).returncode == 0
    newest = sorted((ck / "model").glob("v*.npz"))[-1]
    newest.write_bytes(newest.read_bytes()[: len(newest.read_bytes()) // 2])  # truncated
    r = run_train(base)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping model version 2" in r.stderr and "fell back to model version 1" in r.stderr
    assert "starting at model version 1" in r.stdout
    for f in (ck / "model").glob("v*.npz"):
        f.write_bytes(b"garbage")
    r = run_train(base)
    assert r.returncode == 1
    assert "no loadable model version" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("streaming-lstm: error:")


@pytest.mark.kafka
@pytest.mark.spark
def test_broker_gone_for_ten_seconds_then_back(spark: Any, iris_lines: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded broker keeps nothing across a restart, so the producer is paused while it is
    gone and resumes into the recreated topic; the trainer waits and resumes (fail_on_data_loss is
    off because the recreated topic's offsets start again at 0)."""
    import time

    from streaming_lstm.broker import EmbeddedBroker, free_port
    from streaming_lstm.config import load_config
    from streaming_lstm.kafka_source import KafkaStreamReader, read_kafka
    from streaming_lstm.runner import start_query
    from streaming_lstm.trainer import StreamingTrainer

    port = free_port()
    topic = f"gone-{uuid.uuid4().hex[:8]}"
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "500ms", "stream.fail_on_data_loss": False})
    first = EmbeddedBroker(port).start()
    sink = KafkaSink(first.bootstrap, topic, 3, {})
    replay(iris_lines, sink, rate=0, loops=1)
    sink.close()
    trainer = StreamingTrainer(spark, cfg, tmp_path / "ck", echo=False)
    query = start_query(trainer, read_kafka(spark, cfg, first.bootstrap, topic, {"brokerWaitSeconds": "120"}))
    second = None
    try:
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert trainer.state.rows_seen == 150
        first.stop()

        # What the trainer's offset planner does meanwhile (it runs in Spark's planner process,
        # whose stderr this test cannot capture): one line, then it waits.
        reader = KafkaStreamReader({"kafka.bootstrap.servers": first.bootstrap, "subscribe": topic, "brokerWaitSeconds": "3"})
        with pytest.raises(Exception, match="unavailable for 3 s"):
            reader.latestOffset({"0": 0}, None)
        err = capsys.readouterr().err
        assert err.count("is unavailable") == 1 and "waiting for it" in err

        time.sleep(7)
        assert query.isActive and query.exception() is None
        second = EmbeddedBroker(port).start()
        sink = KafkaSink(second.bootstrap, topic, 3, {})
        replay(iris_lines[:60], sink, rate=0, loops=1)
        sink.close()
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < 210 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert query.exception() is None
    finally:
        query.stop()
        if second is not None:
            second.stop()
    assert trainer.state.rows_seen == 210
