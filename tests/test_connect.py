"""Spark Connect: the trainer as a thin client (``--remote``) of a real Connect server.

The server (conftest's ``connect_url``) is its own process with its own driver JVM and Python
workers; the clients here are ``streaming-lstm`` processes with no JVM. The reference for "equal
to classic mode" is the same stream trained by the classic driver in this test process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_cli_stream import noise

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.connect]
FILES, ROWS = 5, 150


def metrics(ck: Path) -> list[dict[str, Any]]:
    path = ck / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def train_cmd(url: str, incoming: Path, ck: Path, idle: float) -> list[str]:
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "train", "--remote", url, "--source", "file", "--path", str(incoming)]
    return [*cmd, "--checkpoint", str(ck), "--trigger", "500ms", "--idle-timeout", str(idle)]


@pytest.fixture(scope="module")
def stream_files(iris_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FILES files of shuffled Iris rows; one file per batch (stream.max_files_per_trigger = 1),
    so batch ids and contents are the same in every run over them."""
    incoming = tmp_path_factory.mktemp("connect-in")
    rng = np.random.default_rng(5)
    for n in range(FILES):
        (incoming / f"part-{n}.csv").write_text("\n".join(iris_lines[i] for i in rng.permutation(ROWS)) + "\n")
        os.utime(incoming / f"part-{n}.csv", (1_700_000_000 + n, 1_700_000_000 + n))  # file order = name order
    return incoming


@pytest.fixture(scope="module")
def classic_weights(spark: Any, stream_files: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The same stream trained by the classic driver (in this process), with the CLI's config."""
    from streaming_lstm.cli import build_parser
    from streaming_lstm.commands.common import config_from_args
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.trainer import runner
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.sources import file_source

    ck = tmp_path_factory.mktemp("connect-classic") / "ck"
    args = build_parser().parse_args(["train", "--source", "file", "--path", str(stream_files), "--checkpoint", str(ck), "--trigger", "500ms"])
    cwd = os.getcwd()
    os.chdir(ROOT)  # the CLI's default config is conf/iris.toml, relative to the checkout
    try:
        cfg = config_from_args(args)
    finally:
        os.chdir(cwd)
    trainer = StreamingTrainer(spark, cfg, ck)
    trainer.warm_up()
    result = runner.run(trainer, file_source(spark, stream_files, cfg), idle_timeout=5)
    assert result.rows_trained == FILES * ROWS
    saved = ModelStore(ck / "model").load_latest()
    assert saved is not None
    return saved.weights


def assert_exactly_once_and_equal(ck: Path, reference: dict[str, np.ndarray]) -> None:
    from streaming_lstm.storage.store import ModelStore

    lines = metrics(ck)
    assert sorted(m["batch_id"] for m in lines) == sorted({m["batch_id"] for m in lines}), "a batch was applied twice"
    assert sum(m["rows_valid"] for m in lines) == FILES * ROWS
    saved = ModelStore(ck / "model").load_latest()
    assert saved is not None and saved.meta["rows_seen"] == FILES * ROWS
    worst = max(float(np.max(np.abs(saved.weights[k] - reference[k]))) for k in reference)
    assert worst <= 1e-6, f"weights differ from classic mode by {worst:g}"


def test_train_over_connect_trains_every_row_once_and_equals_classic_mode(
    connect_url: str, stream_files: Path, classic_weights: dict[str, np.ndarray], tmp_path: Path
) -> None:
    ck = tmp_path / "ck"
    r = subprocess.run(train_cmd(connect_url, stream_files, ck, 5), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not noise(r.stderr), r.stderr[-3000:]  # a stop is quiet under Connect too
    assert f"over Spark Connect at {connect_url.split('/;')[0]}" in r.stdout and "token=" not in r.stdout
    assert len([x for x in r.stdout.splitlines() if x.startswith("batch ")]) == FILES  # the client's progress lines
    assert f"{FILES * ROWS} rows trained" in r.stdout
    assert_exactly_once_and_equal(ck, classic_weights)


def test_a_killed_client_is_restarted_and_the_query_resumes_exactly_once(
    connect_url: str, stream_files: Path, classic_weights: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """kill -9 of the client after two applied batches. The query lives in the server; the restarted
    client on the same checkpoint takes it over (Spark stops the old run) and trains what is left,
    each batch once, to the weights of an uninterrupted classic run."""
    ck = tmp_path / "ck"
    first = subprocess.Popen(train_cmd(connect_url, stream_files, ck, 60), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(metrics(ck)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(metrics(ck)) >= 2, first.stderr.read() if first.poll() is not None else "timed out"  # type: ignore[union-attr]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    r = subprocess.run(train_cmd(connect_url, stream_files, ck, 5), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_exactly_once_and_equal(ck, classic_weights)


def test_the_local_server_takes_only_clients_with_its_token(connect_url: str) -> None:
    """A server this project starts (``--remote local``, the tests' server) checks Spark Connect's
    pre-shared token: a client without it is refused, one with it is served."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"}
    results = {}
    for url in (connect_url.split("/;")[0], connect_url):
        code = f"from pyspark.sql import SparkSession; print(SparkSession.builder.remote({url!r}).getOrCreate().range(3).count())"
        results[url] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    bare, with_token = results.values()
    assert bare.returncode != 0 and "UNAUTHENTICATED" in bare.stderr, bare.stderr[-2000:]
    assert with_token.returncode == 0 and with_token.stdout.strip() == "3", with_token.stderr[-2000:]


def test_demo_over_a_local_connect_server_trains_every_row(tmp_path: Path) -> None:
    """The issue's acceptance run: `demo --remote local --json` starts its own Connect server."""
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "demo", "--remote", "local", "--json", "--checkpoint", str(tmp_path / "demo")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["spark"] == "connect"
    assert not noise(r.stderr), r.stderr[-3000:]
    server_log = (tmp_path / "demo" / "connect-server.log").read_text()
    assert "Traceback" not in server_log and "StopRequested" not in server_log, server_log[-3000:]
    assert summary["rows_trained"] == summary["rows_produced"] == 900
    assert summary["final_accuracy"] >= 0.95
    assert summary["batches"] >= 2


def test_remote_comes_from_the_flag_then_spark_remote_and_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from streaming_lstm.core.config import ConfigError
    from streaming_lstm.spark.connect import remote_from
    from streaming_lstm.trainer.remote import require_local_path

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert remote_from(None) is None  # classic Spark
    monkeypatch.setenv("SPARK_REMOTE", "sc://env-host:15002")
    assert remote_from(None) == "sc://env-host:15002"
    assert remote_from("local") == "local"  # the flag wins
    with pytest.raises(ConfigError, match="'http://x:1'"):
        remote_from("http://x:1")
    with pytest.raises(ConfigError, match="hdfs://nn:8020/ck"):
        require_local_path("hdfs://nn:8020/ck", "--checkpoint")


@pytest.mark.kafka
@pytest.mark.parametrize("reader", ["python", "spark"])
def test_kafka_over_connect_with_either_reader_trains_every_row_once(connect_url: str, kafka: Any, iris_lines: list[str], reader: str, tmp_path: Path) -> None:
    """Apache Kafka read over Connect by the Python data source (registered through the Connect
    session) and by Spark's connector (the server has it: the connect server loads the same jars)."""
    import uuid

    from producers.replay import KafkaSink

    topic = f"connect-{uuid.uuid4().hex[:8]}"
    sink = KafkaSink(kafka.bootstrap, topic, 2, {})
    for key, line in enumerate(iris_lines * 2):
        sink.send(line, key)
    sink.close()
    ck = tmp_path / "ck"
    cmd = [sys.executable, "-m", "streaming_lstm.cli", "train", "--remote", connect_url, "--source", "kafka", "--bootstrap", kafka.bootstrap]
    cmd += ["--topic", topic, "--kafka-reader", reader, "--checkpoint", str(ck), "--trigger", "500ms", "--idle-timeout", "5"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ("Python data source" if reader == "python" else "Spark's connector") in r.stderr
    lines = metrics(ck)
    assert sum(m["rows_valid"] for m in lines) == 300
    assert len({m["batch_id"] for m in lines}) == len(lines)
