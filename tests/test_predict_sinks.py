"""Stream predictions to a Kafka topic and to a Parquet directory, and replays that write the same
bytes: the predictor is killed (SIGKILL) twice mid-stream while new model versions appear, on a
real Apache Kafka broker, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.weights import LSTMConfig, init_weights
from streaming_lstm.storage.store import ModelStore

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults]
ROOT = Path(__file__).resolve().parent.parent
ROWS_PER_BATCH = 40


def save_version(model_dir: Path, version: int) -> None:
    """A model version as the trainer writes one (random weights of the Iris shape, seeded by version)."""
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.max_offsets_per_trigger": ROWS_PER_BATCH})
    x = np.random.default_rng(version).normal(4.0, 1.0, (30, 4))
    weights = init_weights(LSTMConfig.from_app(cfg), seed=version)
    ModelStore(model_dir).save(version, cfg, weights, NormStats.of(x), {"batch_id": version, "rows_seen": 30 * version}, keep=3)


def produce(bootstrap: str, topic: str, lines: list[str]) -> None:
    from producers.replay import KafkaSink

    sink = KafkaSink(bootstrap, topic, 2, {})
    for i, line in enumerate(lines):
        sink.send(line, i)
    sink.close()


def consume(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000, enable_auto_commit=False)
    try:
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def predict(args: list[str], fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMING_LSTM_FAULT": fault or ""}
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "predict", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_killed_twice_every_row_lands_once_in_parquet_and_replays_repeat_the_same_bytes(kafka: Any, iris_lines: list[str], tmp_path: Path) -> None:
    import pandas as pd

    model, ck, pq = tmp_path / "model", tmp_path / "pck", tmp_path / "predictions"
    save_version(model, 1)
    src, out = f"rows-{uuid.uuid4().hex[:8]}", f"scored-{uuid.uuid4().hex[:8]}"
    lines = [*iris_lines[:150], "not,a,row", *iris_lines[150:]] * 2
    produce(kafka.bootstrap, src, lines)
    stop = threading.Event()

    def trainer() -> None:  # new versions keep appearing, as a trainer beside the predictor writes them
        version = 2
        while not stop.wait(0.7):
            save_version(model, version)
            version += 1

    writer = threading.Thread(target=trainer, daemon=True)
    writer.start()
    args = ["--model", str(model), "--source", "kafka", "--bootstrap", kafka.bootstrap, "--topic", src, "--checkpoint", str(ck)]
    args += ["--sink", "kafka", "--out-topic", out, "--sink", "parquet", "--out", str(pq), "--trigger", "100ms", "--idle-timeout", "4"]
    try:
        first = predict(args, "predict_after_write@2")  # written, not committed: batch 2 is replayed
        assert first.returncode == -9, first.stderr[-3000:]
        second = predict(args, "predict_before_write@5")  # recorded, not written
        assert second.returncode == -9, second.stderr[-3000:]
        recorded = json.loads((ck / "scored" / "last.json").read_text())
        assert recorded["batch_id"] == 5
        third = predict(args, None)
        assert third.returncode == 0, third.stderr[-3000:]
    finally:
        stop.set()
        writer.join()

    records = consume(kafka.bootstrap, out)
    by_id: dict[str, list[bytes]] = {}
    for key, value in records:
        by_id.setdefault(key.decode(), []).append(value)
    wanted = {f"{src}/{p}/{o}" for p in (0, 1) for o in range(len(lines))}
    assert set(by_id) <= wanted and len(by_id) == len(lines), f"{len(by_id)} ids for {len(lines)} rows"
    decoded = {k: [json.loads(v) for v in vs] for k, vs in by_id.items()}
    twice = {k for k, vs in by_id.items() if len(vs) > 1}
    assert twice and {d["batch_id"] for k in twice for d in decoded[k]} == {2}, "duplicates come only from the replayed batch"
    assert all(len(set(by_id[k])) == 1 for k in twice), "a replay writes byte-identical records"
    batch5 = [d[0] for d in decoded.values() if d[0]["batch_id"] == 5]
    assert batch5 and {d["model_version"] for d in batch5} == {recorded["model_version"]}
    assert max(d[0]["model_version"] for d in decoded.values()) > recorded["model_version"], "no newer version was used later"
    errors = [d[0] for d in decoded.values() if "error" in d[0]]
    assert len(errors) == 2 and all(e["value"] == "not,a,row" for e in errors)

    table = pd.read_parquet(pq)
    assert len(table) == len(lines) and table["id"].is_unique and set(table["id"]) == set(by_id)
    first_copy = {k: decoded[k][0] for k in by_id}
    for row in table.itertuples():
        assert row.model_version == first_copy[row.id]["model_version"] and int(row.batch_id) == first_copy[row.id]["batch_id"]
    assert "scored" in third.stderr


def test_the_python_producer_writes_keyed_json_lines(kafka: Any) -> None:
    """Where Spark's connector is not loaded, kafka-python writes the same records."""
    from streaming_lstm.trainer.prediction_sinks import KafkaSink

    topic = f"scored-{uuid.uuid4().hex[:8]}"
    KafkaSink(kafka.bootstrap, topic, {}, connector=False).write(None, 0, [{"id": "t/0/1", "class": "a"}])  # type: ignore[arg-type]
    assert consume(kafka.bootstrap, topic) == [(b"t/0/1", b'{"id": "t/0/1", "class": "a"}')]


def test_sink_flags_are_checked_before_anything_starts(tmp_path: Path) -> None:
    save_version(tmp_path / "m", 1)
    base = [sys.executable, "-m", "streaming_lstm.cli", "predict", "--model", str(tmp_path / "m")]
    base += ["--source", "kafka", "--topic", "t", "--bootstrap", "127.0.0.1:9"]
    cases = {
        ("--sink", "kafka"): "--sink kafka needs --out-topic",
        ("--sink", "parquet"): "--sink parquet needs --out DIR",
        ("--sink", "jsonl", "--sink", "parquet", "--out", "x"): "pick one of them",
    }
    for extra, message in cases.items():
        done = subprocess.run([*base, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr[-2000:])
    assert not (tmp_path / "x").exists(), "a refused command wrote nothing"
