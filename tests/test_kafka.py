"""Producer -> a real Apache Kafka broker -> trainer, once through Spark's Kafka connector and once
through the Python data source (the ``reader`` fixture). Topics are uuid-named per test; one smoke
test runs on the Python-packaged Tansu broker."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.replay import KafkaSink, replay
from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.config_load import load_config
from tests.conftest import READER_SETTING

pytestmark = [pytest.mark.kafka, pytest.mark.spark]
ROOT = Path(__file__).resolve().parent.parent


def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def config(reader: str = "python-source", **over: Any) -> AppConfig:
    return load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", "stream.kafka_reader": READER_SETTING[reader], **over})


def produce(broker: Any, name: str, rows: list[str], partitions: int = 3) -> None:
    sink = KafkaSink(broker.bootstrap, name, partitions, {})
    try:
        replay(rows, sink, rate=0, loops=1)
    finally:
        sink.close()


def train_until(
    spark: Any, cfg: AppConfig, broker: Any, name: str, ck: Path, expected: int, options: dict[str, str] | None = None, after_start: Any = None
) -> Any:
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    trainer = StreamingTrainer(spark, cfg, ck)
    query = start_query(trainer, read_kafka(spark, cfg, broker.bootstrap, name, options or {}))
    try:
        if after_start:
            query.processAllAvailable()
            after_start()
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < expected and time.monotonic() < deadline:
            query.processAllAvailable()
            time.sleep(0.2)
        query.processAllAvailable()
        assert query.exception() is None
        progress = [p for p in query.recentProgress if p["numInputRows"] > 0]
    finally:
        query.stop()
    # Spark's progress reports carry each batch's row counts as observed metrics, equal to the trainer's.
    by_batch = {m["batch_id"]: (m["rows_in"], m["rows_valid"], m["rows_dead"]) for m in trainer.history}
    observed = {p["batchId"]: p["observedMetrics"]["streaming_lstm"] for p in progress}
    assert observed and {b: (o["rows_in"], o["rows_valid"], o["rows_dead"]) for b, o in observed.items()} == {b: by_batch[b] for b in observed}
    return trainer


def test_the_reader_in_use_is_the_one_asked_for(spark: Any, kafka: Any, reader: str) -> None:
    from streaming_lstm.kafka.reader import choose_reader, has_connector

    assert has_connector(spark), "scripts/setup.sh fetched the connector and the session is built with it"
    assert choose_reader(spark, config(reader)) == reader
    assert choose_reader(spark, load_config(ROOT / "conf" / "iris.toml")) == "spark-connector", "auto prefers the connector"


def test_every_produced_row_is_trained_exactly_once(spark: Any, kafka: Any, reader: str, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    produce(kafka, name, iris_lines * 2)
    trainer = train_until(spark, config(reader), kafka, name, tmp_path / "ck", 300)
    assert trainer.state.rows_seen == 300
    assert sum(m["rows_valid"] for m in trainer.history) == 300
    # Each record once: the partition/offset pairs the trainer saw are all distinct and complete.
    assert sum(m["rows_in"] for m in trainer.history) == 300


def test_max_offsets_per_trigger_caps_batches(spark: Any, kafka: Any, reader: str, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    produce(kafka, name, iris_lines)
    trainer = train_until(spark, config(reader, **{"stream.max_offsets_per_trigger": 40}), kafka, name, tmp_path / "ck", 150)
    sizes = [m["rows_in"] for m in trainer.history]
    assert sum(sizes) == 150 and max(sizes) <= 40 and len(sizes) >= 4, sizes


def test_starting_offsets_latest_skips_earlier_rows(spark: Any, kafka: Any, reader: str, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    produce(kafka, name, iris_lines[:100])
    cfg = config(reader, **{"stream.starting_offsets": "latest"})
    trainer = train_until(spark, cfg, kafka, name, tmp_path / "ck", 50, after_start=lambda: produce(kafka, name, iris_lines[100:]))
    assert trainer.state.rows_seen == 50


def test_unreachable_broker_and_missing_topic_fail_clearly_and_quickly(spark: Any, kafka: Any, reader: str) -> None:
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.kafka.source import KafkaSourceError
    from streaming_lstm.local.process import free_port

    started = time.monotonic()
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaSourceError, match=rf"Kafka at {dead}, topic 'iris'.*gave up after 3 s"):
        read_kafka(spark, config(reader), dead, "iris", {"connectTimeoutSeconds": "3"})
    with pytest.raises(KafkaSourceError, match=r"topic 'no-such-topic' does not exist"):
        read_kafka(spark, config(reader), kafka.bootstrap, "no-such-topic", {"connectTimeoutSeconds": "2"})
    assert time.monotonic() - started < 60


def delete_records_before(broker: Any, name: str, offsets: dict[int, int]) -> None:
    """What retention does: move each partition's log start offset forward."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
    try:
        admin.delete_records({TopicPartition(name, p): o for p, o in offsets.items()}, timeout_ms=10000)
    finally:
        admin.close()


@pytest.fixture
def lost_records(spark: Any, kafka: Any, reader: str, iris_lines: list[str], tmp_path: Path) -> Iterator[tuple[str, Path, dict[int, int], int]]:
    """A checkpoint that read 90 rows; then 60 more were produced and the first 10 of them in each
    partition deleted before the trainer came back. Yields (topic, checkpoint, deleted up to, lost)."""
    from streaming_lstm.kafka.source import connect, latest_offsets

    name = topic()
    produce(kafka, name, iris_lines[:90])
    ck = tmp_path / "ck"
    train_until(spark, config(reader), kafka, name, ck, 90)
    consumer, parts = connect(kafka.bootstrap, name, {})
    read_up_to = latest_offsets(consumer, name, parts)
    produce(kafka, name, iris_lines[90:])
    latest = latest_offsets(consumer, name, parts)
    consumer.close()
    cut = {p: min(read_up_to[p] + 10, latest[p]) for p in parts}
    delete_records_before(kafka, name, cut)
    yield name, ck, cut, sum(cut[p] - read_up_to[p] for p in parts)


def test_records_deleted_before_they_were_read_stop_the_query_naming_partitions_and_offsets(
    spark: Any, kafka: Any, reader: str, lost_records: tuple[str, Path, dict[int, int], int]
) -> None:
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run

    name, ck, _cut, lost = lost_records
    assert lost > 0
    cfg = config(reader)
    trainer = StreamingTrainer(spark, cfg, ck)
    with pytest.raises(RuntimeError, match=r"the streaming query failed: .*(offset|Offset).*") as err:
        run(trainer, read_kafka(spark, cfg, kafka.bootstrap, name, {}), idle_timeout=20)
    message = str(err.value)
    assert re.search(rf"partition {name}-\d offsets|partition \d offsets", message) and name in message, message
    assert "fail_on_data_loss" in message, "the message says how to go on"
    assert trainer.state.rows_seen == 90, "nothing after the gap was trained"


def test_records_deleted_before_they_were_read_are_skipped_and_counted_without_fail_on_data_loss(
    spark: Any, kafka: Any, reader: str, lost_records: tuple[str, Path, dict[int, int], int]
) -> None:
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run

    name, ck, _cut, lost = lost_records
    cfg = config(reader, **{"stream.fail_on_data_loss": False})
    trainer = StreamingTrainer(spark, cfg, ck)
    result = run(trainer, read_kafka(spark, cfg, kafka.bootstrap, name, {}), idle_timeout=6)
    assert trainer.state.rows_seen == 150 - lost
    assert result.records_skipped == lost


def test_tansu_smoke_every_row_once(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """The Python-packaged broker still works end to end (machines without the Java jars)."""
    from streaming_lstm.local.tansu import TansuBroker

    with TansuBroker() as tansu:
        name = topic()
        produce(tansu, name, iris_lines * 2)
        trainer = train_until(spark, config("python-source"), tansu, name, tmp_path / "ck", 300)
    assert trainer.state.rows_seen == 300


def test_tansu_latest_offsets_see_past_its_under_reported_list_offsets(iris_lines: list[str]) -> None:
    from kafka import TopicPartition

    from streaming_lstm.kafka.source import connect, latest_offsets
    from streaming_lstm.local.tansu import TansuBroker

    with TansuBroker() as tansu:
        name = topic()
        produce(tansu, name, iris_lines, partitions=3)
        consumer, parts = connect(tansu.bootstrap, name, {})
        try:
            listed = consumer.end_offsets([TopicPartition(name, p) for p in parts])
            latest = latest_offsets(consumer, name, parts)
        finally:
            consumer.close()
    assert sum(latest.values()) == 150
    assert all(latest[tp.partition] >= o for tp, o in listed.items())


def test_socket_producer_feeds_the_trainer(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    import threading

    from producers.replay import SocketSink
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import socket_source

    stop = threading.Event()
    sink = SocketSink("127.0.0.1", 0, stop, lambda _m: None)
    sent = threading.Thread(target=lambda: replay(iris_lines, sink, rate=0, loops=2, stop=stop), daemon=True)
    sent.start()
    trainer = StreamingTrainer(spark, config(), tmp_path / "ck")
    query = start_query(trainer, socket_source(spark, "127.0.0.1", sink.port))
    try:
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < 300 and time.monotonic() < deadline:
            query.awaitTermination(0.5)
    finally:
        query.stop()
        stop.set()
        sink.close()
    assert trainer.state.rows_seen == 300


@pytest.mark.slow
def test_demo_json_runs_apache_kafka_and_spark_connector_and_learns_with_a_core_kept_busy(tmp_path: Path) -> None:
    """The demo as a user runs it, on a machine whose other core is busy: its batches are capped
    (one trigger's worth of rows at the replay rate), so the first slow batch cannot swallow the
    stream and the accuracy over the last 150 rows shows what was learned from the rows before."""
    import json
    import subprocess
    import sys

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        r = subprocess.run(
            [sys.executable, "-m", "streaming_lstm.cli", "demo", "--json", "--checkpoint", str(tmp_path / "demo"), "--mlflow", "local"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        burner.kill()
        burner.wait()
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert summary["broker"].startswith("apache-kafka ")
    assert summary["kafka_reader"] == "spark-connector"
    assert summary["rows_produced"] == 900
    assert summary["rows_trained"] == summary["rows_produced"]
    assert summary["rows_dead_lettered"] == 0
    assert summary["batches"] >= 4, summary
    assert summary["prequential_accuracy_last_150"] >= 0.9, summary
    assert summary["final_accuracy"] >= 0.95
    # --mlflow local: one MLflow run, every applied batch's figures logged once at step = batch id
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'demo' / 'mlflow' / 'mlflow.db'}")
    from streaming_lstm.storage.metrics import read_metrics

    steps = [m.step for m in client.get_metric_history(summary["mlflow_run_id"], "rows_valid")]
    assert sorted(steps) == [m["batch_id"] for m in read_metrics(tmp_path / "demo")] and len(steps) == summary["batches"], steps
    params = client.get_run(summary["mlflow_run_id"]).data.params
    assert json.loads(params["model.hidden"]) and params["stream.trigger"], params  # the configuration, as params
    from streaming_lstm.commands.report import write_report

    report = write_report(tmp_path / "demo")
    assert report["mlflow_run_id"] == summary["mlflow_run_id"]
    assert "mlflow ui --backend-store-uri sqlite:///" in Path(report["summary"]).read_text()


@pytest.mark.slow
def test_broker_command_keeps_its_data_dir_across_a_sigterm_and_a_restart(iris_lines: list[str], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from streaming_lstm.kafka.source import connect, latest_offsets
    from streaming_lstm.local.kafka_broker import wait_for_metadata
    from streaming_lstm.local.process import free_port

    port, data = free_port(), tmp_path / "kafka"

    def start() -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "streaming_lstm.cli", "broker", "--port", str(port), "--data-dir", str(data)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"apache-kafka 4.1.0 broker on 127.0.0.1:{port} (data in {data})" in first, first + (proc.stderr.read() if proc.poll() is not None else "")
        assert wait_for_metadata(f"127.0.0.1:{port}", 5.0)
        return proc

    proc = start()
    try:
        name = topic()
        sink = KafkaSink(f"127.0.0.1:{port}", name, 3, {})
        replay(iris_lines, sink, rate=0, loops=1)
        sink.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopping the broker" in out
    assert (data / "broker.log").exists()
    proc = start()
    try:
        consumer, parts = connect(f"127.0.0.1:{port}", name, {})
        assert sum(latest_offsets(consumer, name, parts).values()) == 150, "every record survived the restart"
        consumer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
