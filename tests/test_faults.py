"""Whatever fails, every row that reached the source is trained exactly once and no model file is
corrupt. These tests kill processes (SIGKILL through streaming_lstm/core/faults.py) and corrupt files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from producers.replay import KafkaSink, replay
from tests.conftest import READER_SETTING

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.faults, pytest.mark.slow]


def run_train(args: list[str], fault: str | None = None, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in (env or os.environ).items() if k != "STREAMING_LSTM_FAULT"}
    if fault:
        env["STREAMING_LSTM_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "streaming_lstm.cli", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def metrics(ck: Path) -> list[dict[str, Any]]:
    path = ck / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.kafka
@pytest.mark.spark
def test_driver_killed_repeatedly_loses_nothing_and_ends_where_an_uninterrupted_run_ends(
    spark: Any, kafka: Any, reader: str, iris_lines: list[str], tmp_path: Path
) -> None:
    from streaming_lstm.storage.store import ModelStore

    broker = kafka
    topic = f"kill-{uuid.uuid4().hex[:10]}"
    sink = KafkaSink(broker.bootstrap, topic, 3, {})
    replay(iris_lines[:90], sink, rate=0, loops=2, seed=5)  # 180 rows, produced before the runs
    sink.close()

    def args(ck: Path) -> list[str]:
        return ["--source", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--checkpoint", str(ck),
                "--trigger", "0s", "--max-offsets-per-trigger", "60", "--partitions", "2", "--idle-timeout", "6",
                "--kafka-reader", READER_SETTING[reader], "--mlflow", "local"]  # fmt: skip

    ck = tmp_path / "killed"
    # Suite time (each restart costs ~30 s of start-up): one kill per reader. The connector: a kill
    # mid-training, before anything of the batch is saved (the batch is replayed and trained); its
    # save Spark never committed is test_events_e2e.py's kill. The Python source: a save Spark never
    # committed (its offsets replayed exactly, the batch skipped). A torn save is the store's
    # business: test_hdfs.py kills mid-save. (Seventh session: 5 kills on the connector and 2 on the
    # Python source before; the suite had grown past 36 minutes with event mode. Eighth session: 180
    # rows, 3 batches: 31.5 minutes.)
    kills = ["mid_train@1"] if reader == "spark-connector" else ["after_save@1"]
    for fault in kills:
        r = run_train(args(ck), fault)
        assert r.returncode == -9, f"{fault}: expected SIGKILL, got {r.returncode}\n{r.stderr[-2000:]}"
        store = ModelStore(ck / "model")
        for v in store.versions():  # every saved model file loads, after every kill
            store.load(v)
    final = run_train(args(ck))
    assert final.returncode == 0, final.stderr[-3000:]
    assert "gone before they were read" not in final.stdout + final.stderr, "a replayed batch skipped as applied is not data loss"

    # The uninterrupted run: same topic, fresh checkpoint, in this process's Spark session (another
    # process and JVM than the killed runs, same local[2] layout and TF threads).
    from streaming_lstm.cli import build_parser
    from streaming_lstm.commands.common import config_from_args
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run

    reference = tmp_path / "reference"
    cfg = config_from_args(build_parser().parse_args(["train", *args(reference), "--conf", str(ROOT / "conf" / "iris.toml")]))
    trainer = StreamingTrainer(spark, cfg, reference)
    run(trainer, read_kafka(spark, cfg, broker.bootstrap, topic, {}), idle_timeout=6)

    killed_m, ref_m = metrics(ck), metrics(reference)
    # Spark's connector shares maxOffsetsPerTrigger out over partitions with its own rounding, so the
    # batch count is the reader's; the uninterrupted run over the same topic plans the same batches.
    assert len(ref_m) >= 3
    assert [m["batch_id"] for m in killed_m] == list(range(len(ref_m))), "every batch id applied exactly once, in order"
    assert [m["rows_in"] for m in killed_m] == [m["rows_in"] for m in ref_m], "the same batches as the uninterrupted run"
    assert sum(m["rows_valid"] for m in killed_m) == 180 == sum(m["rows_valid"] for m in ref_m)
    versions = [m["version"] for m in killed_m]
    assert versions == sorted(set(versions)), "model versions only increase"
    a = ModelStore(ck / "model").load_latest()
    b = ModelStore(reference / "model").load_latest()
    assert a is not None and b is not None and a.version == b.version == len(ref_m)
    diff = max(float(np.abs(a.weights[k] - b.weights[k]).max()) for k in a.weights)
    assert diff <= 1e-6, f"max abs difference to the uninterrupted run: {diff}"
    np.testing.assert_allclose(a.norm.mean, b.norm.mean, rtol=1e-12)
    # Rehearsal (on by default, 500 rows): every row so far is in the buffer, the same rows in the same order.
    assert a.rehearsal is not None and b.rehearsal is not None and len(a.rehearsal) == 180
    np.testing.assert_array_equal(a.rehearsal.x, b.rehearsal.x)
    np.testing.assert_array_equal(a.rehearsal.y, b.rehearsal.y)
    # MLflow (--mlflow local): the killed runs and the last one are one MLflow run, and each applied
    # batch is logged once (a batch saved before a kill is logged at the restart, from metrics.jsonl)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ck / 'mlflow' / 'mlflow.db'}")
    run_id = json.loads((ck / "mlflow_run.json").read_text())["run_id"]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    for key in ("rows_valid", "prequential_accuracy", "batch_id"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == [m["batch_id"] for m in killed_m], (key, steps)


@pytest.mark.parametrize("train_in", ["driver", "workers"])
def test_python_worker_killed_mid_task_is_retried_and_no_row_counts_twice(iris_lines: list[str], tmp_path: Path, train_in: str) -> None:
    """The worker fault kills each Python task's first attempt at batch 1: the parsing and keying
    task (where the driver trains) or that and the training task (where the workers train)."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        (incoming / f"part-{i}.csv").write_text("\n".join(iris_lines[j] for j in rng.permutation(150)) + "\n")
    ck = tmp_path / "ck"
    args = ["--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--trigger", "0s", "--idle-timeout", "6"]
    r = run_train([*args, "--master", "local[2,4]", "--set", f"stream.train_in={train_in}"], fault="worker@1")  # local[N,F]: F attempts per task
    assert r.returncode == 0, r.stderr[-3000:]
    m = metrics(ck)
    assert [x["batch_id"] for x in m] == [0, 1, 2]
    assert [x["rows_valid"] for x in m] == [150, 150, 150]
    assert [x["trained_in"] for x in m] == [train_in] * 3
    assert "Python worker exited unexpectedly" in r.stderr or "crashed" in r.stderr.lower() or "lost task" in r.stderr.lower()


def test_corrupt_newest_checkpoint_falls_back_with_a_warning_and_none_loadable_stops(iris_lines: list[str], tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text("\n".join(iris_lines[:75]) + "\n")
    (incoming / "b.csv").write_text("\n".join(iris_lines[75:]) + "\n")
    ck = tmp_path / "ck"
    base = ["--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--trigger", "0s", "--idle-timeout", "4"]
    # Two saved versions, as a run would leave them (written directly: a whole training run to make
    # them cost 35 s of suite time).
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import LSTMConfig, init_weights
    from streaming_lstm.storage.store import ModelStore

    cfg = load_config(ROOT / "conf" / "iris.toml")
    lstm = LSTMConfig.from_app(cfg)
    store = ModelStore(ck / "model")
    for version in (1, 2):
        store.save(version, cfg, init_weights(lstm, seed=version), NormStats.empty(lstm.num_stats), {"batch_id": -1, "source": "test"})
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
def test_broker_killed_and_restarted_on_its_data_dir_mid_stream_loses_and_doubles_nothing(
    spark: Any, reader: str, iris_lines: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apache Kafka is ``kill -9``-ed while the trainer is part-way through a backlog, stays away for
    ~10 s and restarts on the same data directory; the trainer waits, says so once, and resumes
    where it stopped: every record trained once."""
    import threading
    import time

    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.kafka.reader import BrokerWatch, read_kafka
    from streaming_lstm.kafka.source import KafkaStreamReader
    from streaming_lstm.local.kafka_broker import ApacheKafkaBroker
    from streaming_lstm.local.process import free_port
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import RunResult, run

    port, data = free_port(), tmp_path / "kafka"
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    cfg = load_config(
        ROOT / "conf" / "iris.toml",
        {"stream.trigger": "500ms", "stream.max_offsets_per_trigger": 60, "stream.kafka_reader": READER_SETTING[reader]},
    )
    broker = ApacheKafkaBroker(port, data).start()
    sink = KafkaSink(broker.bootstrap, topic, 3, {})
    replay(iris_lines, sink, rate=0, loops=4, seed=1)  # 600 rows: ten capped batches of backlog
    sink.close()
    trainer = StreamingTrainer(spark, cfg, tmp_path / "ck")
    source = read_kafka(spark, cfg, broker.bootstrap, topic, {"brokerWaitSeconds": "120"})
    stop = threading.Event()
    outcome: list[RunResult | BaseException] = []
    watch = BrokerWatch(broker.bootstrap, every=0.5) if reader == "spark-connector" else None

    def train() -> None:
        try:
            outcome.append(run(trainer, source, stop_event=stop, broker_watch=watch))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < 120 and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
        seen_at_kill = trainer.state.rows_seen
        assert 0 < seen_at_kill < 600, "killed mid-stream"
        if reader == "python-source":
            # Its offset planner runs in Spark's Python planner process, whose stderr this test cannot
            # capture: the same reader, asked directly, says it once and waits.
            probe = KafkaStreamReader({"kafka.bootstrap.servers": broker.bootstrap, "subscribe": topic, "brokerWaitSeconds": "3"})
            with pytest.raises(Exception, match="unavailable for 3 s"):
                probe.latestOffset({"0": 0}, None)
        time.sleep(8)
        assert thread.is_alive() and not outcome, f"the trainer waits for the broker: {outcome}"
        broker = ApacheKafkaBroker(port, data).start()
        sink = KafkaSink(broker.bootstrap, topic, 3, {})
        replay(iris_lines[:60], sink, rate=0, loops=1)
        sink.close()
        deadline = time.monotonic() + 180
        while trainer.state.rows_seen < 660 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.2)
        time.sleep(2)  # anything doubled would show up as more than 660
    finally:
        stop.set()
        thread.join(60)
        broker.stop()
    assert outcome and isinstance(outcome[0], RunResult), outcome
    assert trainer.state.rows_seen == 660
    assert sum(m["rows_in"] for m in trainer.history) == 660
    assert [m["batch_id"] for m in trainer.history] == sorted({m["batch_id"] for m in trainer.history})
    err = capsys.readouterr().err
    assert err.count("is not answering" if reader == "spark-connector" else "is unavailable") == 1, err
    if reader == "spark-connector":
        assert err.count("is back after") == 1, err
