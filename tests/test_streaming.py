"""The streaming trainer on Spark's memory stream (one shared session), plus socket and file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.config_load import load_config

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parent.parent


def config(**over: Any) -> AppConfig:
    return load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s", **over})


def shuffled(lines: list[str], copies: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [lines[i] for _ in range(copies) for i in rng.permutation(len(lines))]


@contextmanager
def streaming(spark: Any, cfg: AppConfig, checkpoint: Path) -> Iterator[tuple[Any, Callable[[list[str]], None]]]:
    """A trainer on a fresh memory stream; ``feed(rows)`` makes exactly one micro-batch."""
    from streaming_lstm.testing.memory_source import MemorySource
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query

    source = MemorySource(spark)
    trainer = StreamingTrainer(spark, cfg, checkpoint)
    query = start_query(trainer, source.df())

    def feed(rows: list[str]) -> dict[str, Any]:
        """Returns the query's progress report of the batch the rows formed."""
        source.add(rows)
        query.processAllAvailable()
        return next(p for p in reversed(query.recentProgress) if p["numInputRows"] > 0)

    try:
        yield trainer, feed
    finally:
        query.stop()


def test_balanced_partitions_exactly_once_and_it_learns(spark: Any, iris_lines: list[str], iris_csv: Path, tmp_path: Path) -> None:
    cfg = config(**{"stream.partitions": 3})
    rows = shuffled(iris_lines, 4)
    with streaming(spark, cfg, tmp_path / "ck") as (trainer, feed):
        for start in range(0, len(rows), 50):
            feed(rows[start : start + 50])
        history = trainer.history
    assert [m["batch_id"] for m in history] == list(range(12))
    assert not any(m["count_job"] for m in history), "clean batches need no counting job (parse/counts.py)"
    for m in history:
        sizes = m["partition_rows"]
        assert len(sizes) == 3 and max(sizes) - min(sizes) <= 1, sizes
        assert sum(sizes) == m["rows_valid"] == 50
    assert sum(m["rows_valid"] for m in history) == 600
    assert trainer.state.rows_seen == 600 and trainer.state.version == 12
    first = np.mean([m["prequential_accuracy"] for m in history[:2]])
    last = np.mean([m["prequential_accuracy"] for m in history[-3:]])
    assert last >= 0.95 > first, (first, last)  # it learns (the first batches learn while they are scored)
    # metrics.jsonl has one line per batch, same figures.
    lines = [json.loads(x) for x in (tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()]
    assert [x["batch_id"] for x in lines] == list(range(12))
    from streaming_lstm.commands.standalone import evaluate

    _, ev = evaluate(tmp_path / "ck", iris_csv)
    assert ev.accuracy >= 0.95


def test_replayed_batch_changes_nothing_and_restart_continues(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    from pyspark.sql import Row

    from streaming_lstm.trainer.handler import StreamingTrainer

    cfg = config()
    ck = tmp_path / "ck"
    trainer = StreamingTrainer(spark, cfg, ck)
    df = spark.createDataFrame([Row(value=v) for v in iris_lines[:40]])
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    trainer.handle(df, 0)
    # The handler turns adaptive execution off for its own plans only (spark_session.adaptive_execution_off).
    assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
    trainer.handle(spark.createDataFrame([Row(value=v) for v in iris_lines[40:90]]), 1)
    weights = {k: v.copy() for k, v in trainer.state.weights.items()}
    trainer.handle(spark.createDataFrame([Row(value=v) for v in iris_lines[90:]]), 1)  # a replay of batch 1
    for k in weights:
        np.testing.assert_array_equal(trainer.state.weights[k], weights[k])
    assert trainer.state.rows_seen == 90 and trainer.state.version == 2
    restarted = StreamingTrainer(spark, cfg, ck)
    assert (restarted.state.version, restarted.state.last_batch_id, restarted.state.rows_seen) == (2, 1, 90)
    restarted.handle(df, 1)  # still skipped after the restart
    restarted.handle(spark.createDataFrame([Row(value=v) for v in iris_lines[90:]]), 2)
    assert restarted.state.version == 3 and restarted.state.rows_seen == 150


@pytest.mark.parametrize("plan", ["auto", "batch"])
def test_bad_rows_go_to_dead_letters_and_the_stream_continues(spark: Any, iris_lines: list[str], tmp_path: Path, plan: str) -> None:
    bad = [
        "5.1,3.5,1.4",  # too few fields
        "5.1,3.5,1.4,0.2,0,9",  # too many
        "abc,3.5,1.4,0.2,0",  # text
        "NaN,3.5,1.4,0.2,0",
        "5.1,Infinity,1.4,0.2,1",
        "5.1,3.5,1e308,0.2,1",
        "5.1,3.5,1.4,0.2,7",  # unknown label
        "",
        "sepal_length,sepal_width,petal_length,petal_width,species",
    ]
    with streaming(spark, config(**{"stream.plan": plan}), tmp_path / "ck") as (trainer, feed):
        assert trainer.planned == (plan == "auto")
        progress = [feed(iris_lines[:20] + bad + iris_lines[20:30]), feed(iris_lines[30:60])]
    h = trainer.history
    # The header line is skipped and counted, not a dead letter (rows.py).
    assert [(m["rows_in"], m["rows_valid"], m["rows_dead"], m["headers_skipped"]) for m in h] == [(39, 30, 8, 1), (30, 30, 0, 0)]
    # A clean batch is counted by the training job itself; one with rejected rows by its own job,
    # unless the query's plan trains: then its tasks count the rejected rows they return.
    assert [m["count_job"] for m in h] == [plan == "batch", False]
    # The same counts are the query's observed metrics, batch by batch (Spark's progress reports).
    observed = [p["observedMetrics"]["streaming_lstm"] for p in progress]
    assert [(p["batchId"], o["rows_in"], o["rows_valid"], o["rows_dead"], o["headers_skipped"]) for p, o in zip(progress, observed, strict=True)] == [
        (0, 39, 30, 8, 1),
        (1, 30, 30, 0, 0),
    ]
    records = [json.loads(line) for f in sorted((tmp_path / "ck" / "deadletter").glob("batch_id=0/*.json")) for line in f.read_text().splitlines()]
    header = "sepal_length,sepal_width,petal_length,petal_width,species"
    assert sorted(r["raw"] for r in records) == sorted(b for b in bad if b != header)
    reasons = {r["raw"]: r["reason"] for r in records}
    assert reasons["5.1,3.5,1.4"] == "expected 5 fields, got 3"
    assert reasons["abc,3.5,1.4,0.2,0"] == "non-numeric feature 'sepal_length'"
    assert reasons["NaN,3.5,1.4,0.2,0"] == "non-finite feature 'sepal_length'"
    assert reasons["5.1,3.5,1e308,0.2,1"].startswith("feature 'petal_length' out of range")
    assert reasons["5.1,3.5,1.4,0.2,7"] == "unknown label"
    assert reasons[""] == "empty row"
    assert header not in reasons
    assert all(r["batch_id"] == 0 for r in records)
    assert trainer.state.rows_seen == 60


def test_nan_partition_update_is_rejected_and_model_stays_finite(spark: Any, iris_lines: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A robust aggregation, so that every key's weights reach the driver, where this test can poison
    # one; with mean aggregation the tasks fold their keys and check them themselves
    # (test_state.py::test_a_task_folds_its_keys_and_refuses_a_bad_one_itself).
    cfg = config(**{"stream.partitions": 2, "stream.aggregation": "trimmed_mean", "stream.trim_fraction": 0.0})
    with streaming(spark, cfg, tmp_path / "ck") as (tr, feed):
        feed(iris_lines[:60])
        real = tr._apply

        def poisoned(batch_id: int, results: list[Any], *args: Any) -> None:
            import dataclasses

            w = dict(results[0].weights)
            w["head/bias"] = w["head/bias"] * np.nan
            real(batch_id, [dataclasses.replace(results[0], weights=w), *results[1:]], *args)

        monkeypatch.setattr(tr, "_apply", poisoned)
        feed(iris_lines[60:120])
    last = tr.history[-1]
    assert last["rejected_updates"] == 1
    assert all(np.isfinite(v).all() for v in tr.state.weights.values())
    assert tr.state.rejected_updates == 1


def test_one_partition_one_epoch_equals_the_standalone_trainer(spark: Any, iris_lines: list[str], iris_csv: Path, tmp_path: Path) -> None:
    from streaming_lstm.commands import standalone

    over = {"stream.partitions": 1, "train.local_epochs": 1, "train.epochs": 1, "train.local_learning_rate": 0.0}
    over |= {"train.warmup_epochs": 0, "train.warmup_batch_size": 0}  # the standalone trainer's epochs and mini-batch
    rows = shuffled(iris_lines, 1, seed=3)
    with streaming(spark, config(**over), tmp_path / "ck") as (_tr, feed):
        feed(rows)
    data = tmp_path / "rows.csv"
    data.write_text("\n".join(rows) + "\n")
    standalone.fit(config(**over), data, tmp_path / "standalone")
    alone = standalone.load_model(tmp_path / "standalone")
    streamed = standalone.load_model(tmp_path / "ck")
    for k in alone.weights:
        np.testing.assert_allclose(streamed.weights[k], alone.weights[k], atol=1e-6, err_msg=k)
    np.testing.assert_allclose(streamed.norm.mean, alone.norm.mean, rtol=1e-12)


def test_socket_source_end_to_end(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    import socket
    import threading
    import time

    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import socket_source

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(("\n".join(iris_lines) + "\n").encode())
            done.wait(60)

    threading.Thread(target=serve, daemon=True).start()
    trainer = StreamingTrainer(spark, config(), tmp_path / "ck")
    query = start_query(trainer, socket_source(spark, "127.0.0.1", port))
    try:
        deadline = time.monotonic() + 120
        while trainer.state.rows_seen < 150 and time.monotonic() < deadline:
            query.awaitTermination(0.5)
        assert query.exception() is None
    finally:
        done.set()
        query.stop()
        server.close()
    assert trainer.state.rows_seen == 150
    assert sum(m["rows_valid"] for m in trainer.history) == 150


def test_observed_counts_are_used_only_when_provably_exact(spark: Any) -> None:
    """batch_counts.settle: an observation that counted more valid rows than were trained (Spark
    merges every attempt of a re-executed stage) or saw any other row falls back to an exact count."""
    from pyspark.sql import functions as F

    from streaming_lstm.parse import counts as batch_counts
    from streaming_lstm.parse.rows import HEADER

    parsed = spark.createDataFrame([(None,), (None,), (None,), ("bad",), (HEADER,)], "reason string")
    clean = parsed.filter(F.col("reason").isNull())

    def settled(frame: Any, trained: int) -> batch_counts.BatchCounts:
        observed, obs = batch_counts.observe(frame)
        observed.collect()  # the training job's read
        return batch_counts.settle(obs, trained, frame)

    assert settled(clean, 3) == batch_counts.BatchCounts(3, {})  # exact: the observation alone
    assert settled(clean, 2) == batch_counts.BatchCounts(3, {}, exact_job=True)  # e.g. a stage counted twice
    assert settled(parsed, 3) == batch_counts.BatchCounts(3, {"bad": 1}, 1, exact_job=True)


def test_the_plan_built_once_trains_exactly_as_a_plan_built_per_batch(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """planned.py against handler.py's per-batch plan: the same rows reach the same keys in the same
    order from the same model, so the same stream gives the same weights, counts and dead letters,
    whether the driver trains the keyed rows or the Python workers do (``stream.train_in``)."""
    rows = shuffled(iris_lines, 2, seed=5)
    batches = [[*rows[:70], "1,2,3", "x,1,2,3,0"], rows[70:71], rows[71:230], ["sepal_length,sepal_width,petal_length,petal_width,species", *rows[230:]]]
    variants = {
        "driver": {"stream.train_in": "driver"},
        "workers": {"stream.train_in": "workers"},
        "auto": {"stream.driver_rows": 100},  # the batch after the 159-row one goes to the workers
        "batch": {"stream.plan": "batch"},
    }
    runs = {}
    for name, over in variants.items():
        cfg = config(**{"stream.partitions": 3, "train.rehearsal_rows": 20, **over})
        with streaming(spark, cfg, tmp_path / name) as (trainer, feed):
            observed = [feed(batch)["observedMetrics"]["streaming_lstm"] for batch in batches]
        assert trainer.planned == (name != "batch")
        dead = sorted(json.loads(x)["raw"] for f in (tmp_path / name / "deadletter").glob("batch_id=0/*.json") for x in f.read_text().splitlines())
        counts = [(m["rows_valid"], m["rows_dead"], m["headers_skipped"], m["partition_rows"]) for m in trainer.history]
        assert [(o["rows_valid"], o["rows_dead"], o["headers_skipped"]) for o in observed] == [c[:3] for c in counts], name
        runs[name] = (trainer.state, counts, dead, [m["trained_in"] for m in trainer.history])
    assert runs["driver"][3] == ["driver"] * 4 and runs["workers"][3] == runs["batch"][3] == ["workers"] * 4
    assert runs["auto"][3] == ["driver", "driver", "driver", "workers"]
    per_batch, per_batch_counts, per_batch_dead, _ = runs["batch"]
    assert [c[0] for c in per_batch_counts] == [70, 1, 159, 70] and per_batch_dead == ["1,2,3", "x,1,2,3,0"]
    for name in ("driver", "workers", "auto"):
        once, once_counts, once_dead, _ = runs[name]
        assert once_counts == per_batch_counts and once_dead == per_batch_dead, name
        assert once.version == per_batch.version == 4 and once.rows_seen == per_batch.rows_seen == 300
        for w, value in per_batch.weights.items():
            np.testing.assert_array_equal(once.weights[w], value, err_msg=f"{name}: {w}")
        np.testing.assert_array_equal(once.rehearsal.x, per_batch.rehearsal.x)


def test_where_the_driver_trains_and_where_it_may_not(spark: Any, tmp_path: Path) -> None:
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.planned import driver_may_train, in_driver, why_per_batch

    auto, driver = config(), config(**{"stream.train_in": "driver"})
    assert driver_may_train(auto, "local[2]", remote=False) and not driver_may_train(auto, "spark://host:7077", remote=False)
    assert driver_may_train(driver, "spark://host:7077", remote=False)
    assert not driver_may_train(driver, "local[2]", remote=True)  # Spark Connect: the handler runs in the server
    assert not driver_may_train(config(**{"stream.train_in": "workers"}), "local[2]", remote=False)
    assert not driver_may_train(config(**{"stream.train_in": "driver", "stream.plan": "batch"}), "local[2]", remote=False)
    # The driver reads the model itself: a checkpoint the workers cannot read does not stop the plan built once.
    assert why_per_batch(spark, driver, "hdfs://nn:8020/ck") is None
    # auto: by the batch before, as the saved model's metadata says (the first batch: the driver).
    from streaming_lstm.spark.session import byte_size
    from streaming_lstm.trainer.planned import KEYED_ROW_BYTES, driver_row_limit

    small = config(**{"stream.driver_rows": 10})
    assert driver_row_limit(small, 1 << 30) == 10
    assert in_driver(small, {}, 10) and in_driver(small, {"source": "stream", "metrics": {"rows_valid": 10}}, 10)
    assert not in_driver(small, {"source": "stream", "metrics": {"rows_valid": 11}}, 10)
    assert in_driver(driver, {"source": "stream", "metrics": {"rows_valid": 11}}, 10)
    # stream.driver_rows = 0 (the default): what a quarter of spark.driver.maxResultSize holds at the
    # data's width; the trainer reads the session's setting.

    iris_row = 8 * 4 + KEYED_ROW_BYTES
    assert driver_row_limit(auto, byte_size("1g")) == (1 << 30) // 4 // iris_row == 3_355_443
    assert driver_row_limit(auto, byte_size("512m")) == (1 << 29) // 4 // iris_row
    wide = config(
        **{"data.columns": [f"f{i}" for i in range(600)] + ["species"], "data.features": [f"f{i}" for i in range(600)], "model.features_per_step": 150}
    )
    assert driver_row_limit(wide, 1 << 30) == (1 << 30) // 4 // (8 * 600 + KEYED_ROW_BYTES) == 55_370
    assert driver_row_limit(auto, 0) > 10**18
    assert [byte_size(t) for t in ("1073741824", "2g", "512 MB", "64k", "0")] == [1 << 30, 2 << 30, 512 << 20, 64 << 10, 0]
    with pytest.raises(ValueError, match="not a Spark byte size: '1x'"):
        byte_size("1x")
    trainer = StreamingTrainer(spark, auto, tmp_path / "auto")
    assert trainer.driver_rows == driver_row_limit(auto, byte_size(spark.sparkContext.getConf().get("spark.driver.maxResultSize", "1g")))
    # train's early trace plans for a local master's cores before Spark says them.
    from streaming_lstm.trainer.keepwarm import local_cores

    assert [local_cores(m) for m in ("local", "local[3]", "local[2,4]", "spark://h:7077", "local-cluster[2,1,1024]")] == [1, 3, 2, None, None]
    assert local_cores("local[*]") == os.cpu_count()
    with pytest.raises(ValueError, match=r"stream\.train_in = driver is not possible here: stream\.plan = batch"):
        StreamingTrainer(spark, config(**{"stream.train_in": "driver", "stream.plan": "batch"}), tmp_path / "ck")


def test_a_batch_over_the_drivers_result_size_trains_in_the_workers(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """A first batch trains in the driver whatever its size; one whose keyed rows are more than
    ``spark.driver.maxResultSize`` lets the driver collect goes to the workers instead of failing
    the query, to the weights the workers give it anyway (under ``stream.train_in = driver``: an
    error that names the setting)."""
    from streaming_lstm.trainer.planned import driver_row_limit

    conf = spark.sparkContext._jsc.sc().conf()  # the live SparkConf each new task set reads its limit from
    before = conf.get("spark.driver.maxResultSize", "1g")
    rows = shuffled(iris_lines, 80, seed=3)  # 12 000 rows: ~0.9 MB of keyed rows
    runs = {}
    try:
        conf.set("spark.driver.maxResultSize", "512k")
        cfg = config(**{"stream.partitions": 2})
        with streaming(spark, cfg, tmp_path / "small") as (trainer, feed):
            assert trainer.driver_rows == driver_row_limit(cfg, 512 << 10) < len(rows)
            observed = feed(rows)["observedMetrics"]["streaming_lstm"]
            feed(rows[:100])
        runs["small"] = trainer
        # stream.train_in = driver, whose workers may not read the model: an error naming the setting.
        refused = r"batch 0: its rows are more than spark\.driver\.maxResultSize .*; raise spark\.driver\.maxResultSize"
        driver = config(**{"stream.partitions": 2, "stream.train_in": "driver"})
        with pytest.raises(Exception, match=refused), streaming(spark, driver, tmp_path / "driver") as (_, feed):
            feed(rows)
    finally:
        conf.set("spark.driver.maxResultSize", before)
    assert [m["trained_in"] for m in runs["small"].history] == ["workers", "workers"]
    assert [m["rows_valid"] for m in runs["small"].history] == [12000, 100] and observed["rows_valid"] == 12000
    with streaming(spark, config(**{"stream.partitions": 2, "stream.train_in": "workers"}), tmp_path / "workers") as (trainer, feed):
        feed(rows)
        feed(rows[:100])
    for name, value in trainer.state.weights.items():
        np.testing.assert_array_equal(runs["small"].state.weights[name], value, err_msg=name)


def test_where_the_plan_is_built_once_and_why_not(spark: Any) -> None:
    from streaming_lstm.trainer.planned import why_per_batch

    assert why_per_batch(spark, config(), "/tmp/ck") is None  # local master and checkpoint: once
    assert why_per_batch(spark, config(**{"stream.plan": "batch"}), "/tmp/ck") == "stream.plan = batch"
    assert "not a local path" in str(why_per_batch(spark, config(), "hdfs://nn:8020/ck"))
    with pytest.raises(ValueError, match=r"stream\.plan = once is not possible here: the checkpoint hdfs://nn:8020/ck"):
        why_per_batch(spark, config(**{"stream.plan": "once"}), "hdfs://nn:8020/ck")


def test_python_workers_keep_tensorflow_s_objects_out_of_the_collector(spark: Any) -> None:
    """Spark runs ``gc.collect()`` after every task of a reused Python worker; TensorFlow's objects
    are frozen before that (spark/daemon.py, executor._training), so the collection walks only
    what the tasks made since, not the ~10^5 objects of the import."""
    import gc
    import sys

    import pandas as pd

    from streaming_lstm.trainer import executor

    def probe(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in frames:
            pass
        executor._training()
        keras = "keras.src" in sys.modules  # core/tf_import.py leaves TensorFlow's eager Keras out
        yield pd.DataFrame({"frozen": [gc.get_freeze_count()], "tracked": [len(gc.get_objects())], "tf": ["tensorflow" in sys.modules], "keras": [keras]})

    rows = spark.range(4).repartition(2).mapInPandas(probe, "frozen long, tracked long, tf boolean, keras boolean").collect()
    assert len(rows) == 2
    for row in rows:
        assert row.tf and not row.keras and row.frozen > 5 * row.tracked, row


def test_route_values_hash_as_spark_does_and_reach_their_task(spark: Any) -> None:
    """routing.route_keys computes Spark's hash partitioning in Python (no Spark job): its hash
    equals ``F.hash`` on longs across the range, and ``repartition(P, _route)`` sends the slot-j
    route value to shuffle partition j."""
    from pyspark.sql import functions as F

    from streaming_lstm.trainer.routing import route_keys, slots, spark_hash_long, to_tasks

    values = [0, 1, -1, 7, 2**31, -(2**31) - 1, 2**32 + 3, 2**40 + 5, 2**63 - 1, -(2**63)]
    hashed = spark.createDataFrame([(v,) for v in values], "v long").select(F.hash("v").alias("h")).collect()
    assert [r["h"] for r in hashed] == [spark_hash_long(v) for v in values]
    for partitions in (1, 2, 3, 15, 64):
        routed = to_tasks(slots(spark, route_keys(partitions)), route_keys(partitions)).select("id", F.spark_partition_id().alias("task"))
        assert sorted((r["id"], r["task"]) for r in routed.collect()) == [(j, j) for j in range(partitions)]
