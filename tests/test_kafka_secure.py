"""A secured Kafka (SASL_SSL: SCRAM-SHA-512 over TLS) through both readers, the producer, predict
and the demo, with the settings a user passes (``--kafka-option``, ``--kafka-properties``); no
secret in any output; wrong credentials end a run with one line naming the authentication."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streaming_lstm.core.config_load import load_config
from tests.conftest import READER_SETTING

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kafka, pytest.mark.spark]


def secrets_in(text: str, broker: Any) -> list[str]:
    return [s for s in (broker.secure.password, "ScramLoginModule required username") if s in text]


@pytest.fixture(scope="module")
def topic(secure_kafka: Any, iris_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """150 Iris rows produced through the console script's producer with a properties file."""
    name = f"secure-{uuid.uuid4().hex[:10]}"
    props = secure_kafka.secure.write_client_properties(tmp_path_factory.mktemp("props") / "client.properties")
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "produce", "--sink", "kafka", "--bootstrap", secure_kafka.bootstrap, "--topic", name,
           "--kafka-properties", str(props), "--rate", "0", "--limit", "150"]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "sent 150 rows" in r.stdout, r.stderr[-2000:]
    assert not secrets_in(r.stdout + r.stderr, secure_kafka)
    return name


@pytest.mark.slow
def test_train_from_the_command_line_with_a_properties_file_leaks_no_secret(secure_kafka: Any, topic: str, tmp_path: Path) -> None:
    """The Python source through the console script; Spark's event log on. The password and the
    JAAS line appear nowhere: stdout, stderr (driver and executors), metrics.jsonl, the event log."""
    props = secure_kafka.secure.write_client_properties(tmp_path / "client.properties")
    events = tmp_path / "events"
    events.mkdir()
    ck = tmp_path / "ck"
    conf = f'spark.conf={{ "spark.eventLog.enabled" = "true", "spark.eventLog.dir" = "file://{events}", "spark.eventLog.compress" = "false" }}'
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "train", "--source", "kafka", "--bootstrap", secure_kafka.bootstrap, "--topic", topic,
           "--kafka-properties", str(props), "--kafka-reader", "python", "--checkpoint", str(ck), "--trigger", "0s", "--idle-timeout", "6",
           "--set", conf]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "150 rows trained" in r.stdout, r.stdout
    logged = "".join(f.read_text(errors="replace") for f in events.rglob("*") if f.is_file())
    assert "SparkListenerSQLExecutionStart" in logged or "SparkListenerJobStart" in logged, "the event log was written"
    for where, text in {"stdout": r.stdout, "stderr": r.stderr, "metrics": (ck / "metrics.jsonl").read_text(), "event log": logged}.items():
        assert not secrets_in(text, secure_kafka), where


def test_the_connector_trains_and_predict_scores_on_the_secured_broker(spark: Any, secure_kafka: Any, topic: str, tmp_path: Path) -> None:
    """Spark's connector with the options as --kafka-option passes them; then streaming predict on
    the same topic. The query's own description and progress carry no secret."""
    import io

    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.predictor import StreamPredictor
    from streaming_lstm.trainer.runner import run

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", "stream.kafka_reader": "spark"})
    options = secure_kafka.client_options
    trainer = StreamingTrainer(spark, cfg, tmp_path / "ck")
    result = run(trainer, read_kafka(spark, cfg, secure_kafka.bootstrap, topic, options), idle_timeout=6)
    assert result.rows_trained == 150
    out = io.StringIO()
    predictor = StreamPredictor(spark, tmp_path / "ck", out)
    query = predictor.start(read_kafka(spark, cfg, secure_kafka.bootstrap, topic, options), tmp_path / "pck", "0 seconds")
    try:
        query.processAllAvailable()
        described = json.dumps([query.name, str(query.lastProgress), [str(p) for p in query.recentProgress]])
    finally:
        query.stop()
    assert len(out.getvalue().splitlines()) == 150
    assert not secrets_in(described, secure_kafka)


@pytest.mark.parametrize("reader", ["spark-connector", "python-source"])
def test_wrong_credentials_end_the_run_with_one_line_naming_the_authentication(spark: Any, secure_kafka: Any, topic: str, reader: str, tmp_path: Path) -> None:
    from streaming_lstm.kafka.reader import read_kafka
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", "stream.kafka_reader": READER_SETTING[reader]})
    wrong = secure_kafka.secure.client_options(password="not-the-password")
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        source = read_kafka(spark, cfg, secure_kafka.bootstrap, topic, wrong)
        run(StreamingTrainer(spark, cfg, tmp_path / "ck"), source, idle_timeout=60)
    message = str(failed.value).splitlines()[0]
    assert "uthentication" in message, message
    assert "not-the-password" not in str(failed.value)
    assert time.monotonic() - started < 120, "failed, not hung"


@pytest.mark.slow
def test_demo_on_a_secured_broker(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "demo", "--secure", "--json", "--checkpoint", str(tmp_path / "demo"), "--rows", "300"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["broker"].endswith("(SASL_SSL)") and summary["rows_trained"] == summary["rows_produced"] == 300
    assert "ScramLoginModule" not in r.stdout + r.stderr
