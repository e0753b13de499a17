"""Input, checkpoint and every command on a real HDFS (the MiniDFSCluster fixture in conftest.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_faults import run_train

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.hdfs, pytest.mark.spark, pytest.mark.slow]


def hdfs_dir(hdfs: Any, name: str) -> str:
    return f"{hdfs.uri}/{name}-{uuid.uuid4().hex[:8]}"


def put_shuffled(location: str, lines: list[str], files: int, seed: int, extra: str | None = None) -> None:
    """``files`` CSV files of all ``lines`` shuffled (``extra`` appended to the first), as a producer would."""
    from streaming_lstm.storage.fs import filesystem, join

    fs = filesystem(location)
    fs.mkdirs(location)
    rng = np.random.default_rng(seed)
    for i in range(files):
        rows = [lines[j] for j in rng.permutation(len(lines))] + ([extra] if extra and i == 0 else [])
        fs.write_atomic(join(location, f"part-{i}.csv"), ("\n".join(rows) + "\n").encode())


def hadoop_env(hdfs: Any) -> dict[str, str]:
    return {**os.environ, "HADOOP_CONF_DIR": str(hdfs.conf_dir)}


def test_stream_on_hdfs_trains_every_row_once_and_evaluate_export_report_predict_read_it_there(
    spark: Any, hdfs: Any, iris_lines: list[str], iris_csv: Path, tmp_path: Path
) -> None:
    import tensorflow as tf

    from streaming_lstm.commands.export import export_saved_model
    from streaming_lstm.commands.standalone import evaluate
    from streaming_lstm.storage.fs import filesystem, join
    from streaming_lstm.storage.metrics import read_metrics
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.predictor import StreamPredictor
    from streaming_lstm.trainer.runner import run
    from streaming_lstm.trainer.sources import file_source
    from tests.test_streaming import config

    base = hdfs_dir(hdfs, "stream")
    incoming, ck = join(base, "in"), join(base, "ck")
    put_shuffled(incoming, iris_lines, 3, seed=4, extra="5.1,3.5,oops,0.2,Iris-setosa")
    cfg = config()
    trainer = StreamingTrainer(spark, cfg, ck)
    result = run(trainer, file_source(spark, incoming, cfg), max_batches=3)
    assert result.rows_trained == 450 and trainer.state.rows_seen == 450

    fs = filesystem(ck)
    metrics = read_metrics(ck)
    assert [m["batch_id"] for m in metrics] == [0, 1, 2]
    assert [m["rows_valid"] for m in metrics] == [150, 150, 150] and sum(m["rows_dead"] for m in metrics) == 1
    assert spark.read.json(join(ck, "deadletter")).count() == 1
    assert ModelStore(join(ck, "model")).versions() == [1, 2, 3]
    assert {"spark", "model", "metrics.jsonl", "deadletter"} <= set(fs.list_names(ck))
    jfs = fs._fs  # type: ignore[attr-defined]
    assert str(jfs.getFileStatus(fs._path(ck)).getPermission()) == "rwx------"  # type: ignore[attr-defined]
    assert str(jfs.getFileStatus(fs._path(join(ck, "model", "v0000000003.npz"))).getPermission()) == "rw-------"  # type: ignore[attr-defined]

    # evaluate: the model and the data on HDFS give what the model and a local copy of the data give.
    fs.write_atomic(join(base, "iris.csv"), iris_csv.read_bytes())
    saved, on_hdfs = evaluate(ck, join(base, "iris.csv"))
    _, local = evaluate(ck, iris_csv)
    assert saved.version == 3 and on_hdfs.rows == local.rows == 150 and on_hdfs.accuracy == local.accuracy

    # export: a SavedModel under an hdfs:// directory that TensorFlow serves once copied down.
    r = export_saved_model(ck, join(base, "export"))
    assert r["model_version"] == 3 and {"saved_model.pb", "variables", "streaming_lstm.json"} <= set(fs.list_names(join(base, "export")))
    jfs.copyToLocalFile(fs._path(join(base, "export")), fs._path(f"file://{tmp_path}/export"))  # type: ignore[attr-defined]
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    x = np.array([[float(v) for v in line.split(",")[:4]] for line in iris_lines[:5]], np.float32)
    assert np.allclose(served(features=tf.constant(x))["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)

    # report, through the command line in its own process (it starts its own session for hdfs://).
    cli = subprocess.run(
        [sys.executable, "-m", "streaming_lstm.cli", "report", "--checkpoint", ck, "--json"], env=hadoop_env(hdfs), capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    summary = json.loads(cli.stdout)
    assert summary["rows_trained"] == 450 and summary["summary"] == join(ck, "report", "summary.md")
    assert all(fs.read_bytes(c).startswith(b"\x89PNG") for c in summary["charts"])
    assert b"| rows trained | 450 |" in fs.read_bytes(summary["summary"])

    # predict --model hdfs://...: the newest version, scored in Spark.
    out = io.StringIO()
    predictor = StreamPredictor(spark, ck, out)
    predictor.handle(spark.createDataFrame([(v,) for v in iris_lines[:10]], "value string"), 0)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["model_version"] for r in records] == [3] * 10


def test_corrupt_newest_version_on_hdfs_falls_back_and_none_loadable_is_an_error(
    spark: Any, hdfs: Any, iris_cfg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import LSTMConfig, init_weights
    from streaming_lstm.storage.fs import join
    from streaming_lstm.storage.store import ModelStore, ModelStoreError

    store = ModelStore(join(hdfs_dir(hdfs, "store"), "model"))
    lstm = LSTMConfig.from_app(iris_cfg)
    for version in (1, 2):
        store.save(version, iris_cfg, init_weights(lstm, seed=version), NormStats.empty(lstm.num_features), {"batch_id": version - 1})
    npz = join(store.dir, "v0000000002.npz")
    store.fs.write_atomic(npz, store.fs.read_bytes(npz)[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        saved = store.load_latest()
    assert saved is not None and saved.version == 1
    assert "skipping model version 2" in caplog.text and "checksum does not match" in caplog.text
    np.testing.assert_array_equal(saved.weights["head/kernel"], init_weights(lstm, seed=1)["head/kernel"])
    store.fs.write_atomic(join(store.dir, "v0000000001.npz"), b"garbage")
    with pytest.raises(ModelStoreError, match="no loadable model version"):
        store.load_latest()


@pytest.mark.faults
def test_driver_killed_with_input_and_checkpoint_on_hdfs_and_a_server_optimizer_resumes_exactly_once(spark: Any, hdfs: Any, iris_lines: list[str]) -> None:
    from streaming_lstm.cli import build_parser
    from streaming_lstm.commands.common import config_from_args
    from streaming_lstm.storage.fs import join
    from streaming_lstm.storage.metrics import read_metrics
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run
    from streaming_lstm.trainer.sources import file_source

    base = hdfs_dir(hdfs, "kill")
    incoming = join(base, "in")
    put_shuffled(incoming, iris_lines, 5, seed=9)

    def args(ck: str) -> list[str]:
        # With a server optimiser: its state must survive the kills too (server_opt.py).
        return ["--source", "file", "--path", incoming, "--checkpoint", ck, "--trigger", "0s", "--partitions", "2", "--idle-timeout", "8",
                "--set", "stream.server_optimizer=adam", "--set", "stream.server_learning_rate=0.01"]  # fmt: skip

    killed = join(base, "killed")
    env = hadoop_env(hdfs)
    # A torn save on HDFS (its rename semantics are the store's to get right). Suite time: the kill
    # after a save Spark never committed is tested on Kafka (test_faults.py, test_events_e2e.py).
    for fault in ["mid_save@2"]:
        r = run_train(args(killed), fault, env=env)
        assert r.returncode == -9, f"{fault}: expected SIGKILL, got {r.returncode}\n{r.stderr[-2000:]}"
    final = run_train(args(killed), env=env)
    assert final.returncode == 0, final.stderr[-3000:]

    reference = join(base, "reference")
    cfg = config_from_args(build_parser().parse_args(["train", *args(reference), "--conf", str(ROOT / "conf" / "iris.toml")]))
    trainer = StreamingTrainer(spark, cfg, reference)
    run(trainer, file_source(spark, incoming, cfg), max_batches=5)

    killed_m, ref_m = read_metrics(killed), read_metrics(reference)
    assert [m["batch_id"] for m in killed_m] == [0, 1, 2, 3, 4] == [m["batch_id"] for m in ref_m], "every batch id applied exactly once"
    assert [m["rows_valid"] for m in killed_m] == [150] * 5
    a = ModelStore(join(killed, "model")).load_latest()
    b = ModelStore(join(reference, "model")).load_latest()
    assert a is not None and b is not None and a.version == b.version == 5
    assert a.config.stream.server_optimizer == "adam" and int(a.server["server/rounds"][0]) == 5
    np.testing.assert_array_equal(a.server["server/v"], b.server["server/v"])
    diff = max(float(np.abs(a.weights[k] - b.weights[k]).max()) for k in a.weights)
    assert diff <= 1e-6, f"max abs difference to the uninterrupted run: {diff}"
    # Rehearsal (on by default): 750 rows trained, the newest 500 kept, the same ones in both runs.
    assert a.rehearsal is not None and b.rehearsal is not None and len(a.rehearsal) == a.config.train.rehearsal_rows == 500
    np.testing.assert_array_equal(a.rehearsal.x, b.rehearsal.x)
    np.testing.assert_array_equal(a.rehearsal.y, b.rehearsal.y)
