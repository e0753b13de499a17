"""Producer -> embedded Kafka-compatible broker -> trainer. Topics are uuid-named per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.replay import KafkaSink, replay
from streaming_lstm.config import AppConfig, load_config

pytestmark = [pytest.mark.kafka, pytest.mark.spark]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def broker() -> Iterator[Any]:
    from streaming_lstm.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def config(**over: Any) -> AppConfig:
    return load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", **over})


def produce(broker: Any, name: str, rows: list[str], partitions: int = 3) -> None:
    sink = KafkaSink(broker.bootstrap, name, partitions, {})
    try:
        replay(rows, sink, rate=0, loops=1)
    finally:
        sink.close()


def train_until(
    spark: Any, cfg: AppConfig, broker: Any, name: str, ck: Path, expected: int, options: dict[str, str] | None = None, after_start: Any = None
) -> Any:
    from streaming_lstm.kafka_source import read_kafka
    from streaming_lstm.runner import start_query
    from streaming_lstm.trainer import StreamingTrainer

    trainer = StreamingTrainer(spark, cfg, ck, echo=False)
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


def test_every_produced_row_is_trained_exactly_once(spark: Any, broker: Any, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    # The producer batches records (linger), the case in which the broker under-reports ListOffsets.
    produce(broker, name, iris_lines * 2)
    trainer = train_until(spark, config(), broker, name, tmp_path / "ck", 300)
    assert trainer.state.rows_seen == 300
    assert sum(m["rows_valid"] for m in trainer.history) == 300


def test_latest_offsets_see_past_the_under_reported_list_offsets(broker: Any, iris_lines: list[str]) -> None:
    from kafka import TopicPartition

    from streaming_lstm.kafka_source import connect, latest_offsets

    name = topic()
    produce(broker, name, iris_lines, partitions=3)
    consumer, parts = connect(broker.bootstrap, name, {})
    try:
        listed = consumer.end_offsets([TopicPartition(name, p) for p in parts])
        latest = latest_offsets(consumer, name, parts)
    finally:
        consumer.close()
    assert sum(latest.values()) == 150
    assert all(latest[tp.partition] >= o for tp, o in listed.items())


def test_max_offsets_per_trigger_caps_batches(spark: Any, broker: Any, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    produce(broker, name, iris_lines)
    trainer = train_until(spark, config(**{"stream.max_offsets_per_trigger": 40}), broker, name, tmp_path / "ck", 150)
    sizes = [m["rows_in"] for m in trainer.history]
    assert sum(sizes) == 150 and max(sizes) <= 40 and len(sizes) >= 4, sizes


def test_starting_offsets_latest_skips_earlier_rows(spark: Any, broker: Any, iris_lines: list[str], tmp_path: Path) -> None:
    name = topic()
    produce(broker, name, iris_lines[:100])
    trainer = train_until(
        spark, config(**{"stream.starting_offsets": "latest"}), broker, name, tmp_path / "ck", 50, after_start=lambda: produce(broker, name, iris_lines[100:])
    )
    assert trainer.state.rows_seen == 50


def test_unreachable_broker_and_missing_topic_fail_clearly_and_quickly(spark: Any, broker: Any) -> None:
    from streaming_lstm.broker import free_port
    from streaming_lstm.kafka_source import KafkaSourceError, read_kafka

    started = time.monotonic()
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaSourceError, match=rf"Kafka at {dead}, topic 'iris'.*gave up after 3 s"):
        read_kafka(spark, config(), dead, "iris", {"connectTimeoutSeconds": "3"})
    with pytest.raises(KafkaSourceError, match=r"topic 'no-such-topic' does not exist"):
        read_kafka(spark, config(), broker.bootstrap, "no-such-topic", {"connectTimeoutSeconds": "2"})
    assert time.monotonic() - started < 60


def test_socket_producer_feeds_the_trainer(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    import threading

    from producers.replay import SocketSink
    from streaming_lstm.runner import start_query
    from streaming_lstm.sources import socket_source
    from streaming_lstm.trainer import StreamingTrainer

    stop = threading.Event()
    sink = SocketSink("127.0.0.1", 0, stop, lambda _m: None)
    sent = threading.Thread(target=lambda: replay(iris_lines, sink, rate=0, loops=2, stop=stop), daemon=True)
    sent.start()
    trainer = StreamingTrainer(spark, config(), tmp_path / "ck", echo=False)
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
def test_demo_json_trains_every_row_and_learns_iris(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "streaming_lstm.cli", "demo", "--json", "--checkpoint", str(tmp_path / "demo"), "--rows", "600", "--rate", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["rows_produced"] == 600
    assert summary["rows_trained"] == summary["rows_produced"]
    assert summary["rows_dead_lettered"] == 0
    assert summary["final_accuracy"] >= 0.95
