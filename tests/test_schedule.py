"""The warm-up schedule of local epochs: its formula, its validation, and that tasks train it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.schedule import local_epochs, mini_batch

ROOT = Path(__file__).resolve().parent.parent


def train(**over: Any) -> Any:
    return load_config(ROOT / "conf" / "iris.toml", {f"train.{k}": v for k, v in over.items()}).train


def test_warm_up_decays_linearly_to_the_plain_epoch_count() -> None:
    t = train(local_epochs=5, warmup_epochs=10, warmup_rows=1000)
    got = [local_epochs(t, r) for r in (0, 100, 250, 500, 999, 1000, 50_000)]
    assert got == [15, 14, 13, 10, 5, 5, 5]  # 5 + round(10 * (1 - r / 1000)), half to even (7.5 -> 8), never below 5
    assert [local_epochs(train(local_epochs=5, warmup_epochs=0), r) for r in (0, 10_000)] == [5, 5], "off"
    assert local_epochs(train(local_epochs=5, warmup_epochs=10, warmup_rows=0), 0) == 5, "no rows to decay over: off"
    t = train(local_epochs=5)  # the defaults
    assert local_epochs(t, 0) > 5 and local_epochs(t, 10**9) == 5, "on by default, over after its rows"


def test_warm_up_mini_batch_grows_from_its_first_size_in_powers_of_two_to_batch_size() -> None:
    t = train(batch_size=10, warmup_batch_size=2, warmup_rows=1000)
    # At the partition's last row, rows_seen + rows: 2 + 8 * at / 1000, rounded down to a power of two.
    got = [mini_batch(t, seen, 25) for seen in (0, 200, 225, 700, 725, 974, 975, 50_000)]
    assert got == [2, 2, 4, 4, 8, 8, 10, 10]
    assert [mini_batch(t, 0, n) for n in (999, 1000, 10**6)] == [8, 10, 10], "a backlog trains in full mini-batches"
    assert mini_batch(train(batch_size=256, warmup_batch_size=1, warmup_rows=1000), 0, 1) == 1
    assert mini_batch(train(batch_size=10, warmup_batch_size=0), 0, 25) == 10, "0: off"
    assert mini_batch(train(batch_size=10, warmup_batch_size=2, warmup_rows=0), 0, 25) == 10, "no warm-up rows: off"
    assert mini_batch(train(batch_size=4, warmup_batch_size=4), 0, 25) == 4, "no smaller size to start from"


def test_a_warm_up_mini_batch_larger_than_the_mini_batch_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"train.warmup_batch_size: must be <= train.batch_size \(10\), got 20"):
        train(batch_size=10, warmup_batch_size=20)


@pytest.mark.parametrize("key", ["warmup_epochs", "warmup_rows", "warmup_batch_size"])
def test_negative_warm_up_is_refused_by_name(key: str) -> None:
    with pytest.raises(ConfigError, match=f"train.{key}"):
        train(**{key: -1})


@pytest.mark.spark
@pytest.mark.parametrize("first_mini_batch", [0, 2])
def test_streaming_tasks_train_the_scheduled_epochs(spark: Any, iris_lines: list[str], tmp_path: Path, first_mini_batch: int) -> None:
    """One partition, warm-up 2 extra epochs over 1000 rows: the first batch (rows_seen 0) trains
    1 + 2 epochs, exactly as the standalone trainer does with 3 epochs on the same rows; with a
    warm-up mini-batch, in the scheduled mini-batch (150 rows: 2 + 8 x 0.15 -> 2)."""
    from streaming_lstm.commands import standalone
    from tests.test_streaming import config, shuffled, streaming

    over = {"stream.partitions": 1, "train.local_epochs": 1, "train.local_learning_rate": 0.0, "train.warmup_epochs": 2, "train.warmup_rows": 1000}
    over["train.warmup_batch_size"] = first_mini_batch
    rows = shuffled(iris_lines, 1, seed=3)
    with streaming(spark, config(**over), tmp_path / "ck") as (trainer, feed):
        feed(rows)
        feed(rows[:100])
        epochs = [m["local_epochs"] for m in trainer.history]
    assert epochs == [3, 3]  # 1 + round(2 * (1 - 0/1000)), then 1 + round(2 * (1 - 150/1000)) = 1 + 2
    data = tmp_path / "rows.csv"
    data.write_text("\n".join(rows) + "\n")
    size = mini_batch(config(**over).train, 0, len(rows))
    assert size == (first_mini_batch or config().train.batch_size) and (size == 2 or not first_mini_batch)
    standalone.fit(config(**{**over, "train.epochs": 3, "train.batch_size": size}), data, tmp_path / "standalone")
    alone = standalone.load_model(tmp_path / "standalone")
    from streaming_lstm.storage.store import ModelStore

    first = ModelStore.resolve(tmp_path / "ck").load(1)
    for k in alone.weights:
        np.testing.assert_allclose(first.weights[k], alone.weights[k], atol=1e-6, err_msg=k)


@pytest.mark.parametrize("conf", ["iris.toml", "solar.toml"])
def test_a_task_trains_a_classifier_in_the_warm_up_mini_batch_and_a_forecast_in_full_ones(conf: str) -> None:
    """executor.train_key picks the mini-batch: schedule.mini_batch for a classifier (rows trained
    before the batch = the normaliser's count), batch_size for a forecast."""
    from types import SimpleNamespace

    import pandas as pd

    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import LSTMConfig, init_weights
    from streaming_lstm.trainer import executor

    cfg = load_config(ROOT / "conf" / conf, {"train.batch_size": 16, "train.warmup_batch_size": 2, "train.warmup_rows": 1000})
    lstm = LSTMConfig.from_app(cfg)
    rng = np.random.default_rng(0)
    seen = NormStats.of(rng.normal(size=(300, lstm.num_stats)))  # 300 rows trained before the batch
    cols = {c: rng.normal(size=20) for c in [*cfg.input_columns(), *cfg.data.target_columns(), *cfg.data.naive_columns()]}
    part = pd.DataFrame({**cols, "label": rng.integers(0, 2, 20)})
    calls: list[int] = []
    spy = SimpleNamespace(train_partition=lambda *a, batch_size, **k: calls.append(batch_size))
    model = executor.TaskModel(init_weights(lstm), seen)
    executor.train_key(
        spy, None, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, rehearsal_rows=0)), 0, part, model, batch_id=0, epochs=1, threads=1
    )
    forecast = bool(cfg.data.target_columns())
    assert calls == [16 if forecast else mini_batch(cfg.train, 300, 20)] and (forecast or calls[0] == 4)  # 2 + 14 x 0.32 -> 4


@pytest.mark.parametrize("over", [{}, {"train.prequential": "batch"}, {"train.prequential": "batch", "train.warmup_batch_size": 0}])
def test_a_worker_traces_before_the_stream_what_its_first_batches_train(over: dict[str, Any]) -> None:
    """executor.warm_frames traces the loop a task of batch_size rows or more trains in; a first
    batch and later ones in the warm-up mini-batches (2, then 4) trace nothing new: the warm-up
    sizes run in the full size's trace (training.fit's trace_size)."""
    import pandas as pd

    from streaming_lstm.core import training
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.core.weights import init_weights
    from streaming_lstm.trainer import executor

    lr = 0.0117 + 0.0001 * len(over)  # a spec of each case's own: a fresh entry in the process's cache
    cfg = load_config(ROOT / "conf" / "iris.toml", {"train.local_learning_rate": lr, "train.batch_size": 16, **over})
    assert list(executor.warm_frames(iter([pd.DataFrame()]), config_dict=cfg.to_dict(), threads=1))
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    traced = set(training.compiled(spec)._train_fns)
    assert traced == {(16, cfg.scores_in_steps())}
    rng = np.random.default_rng(0)
    start = executor.TaskModel(init_weights(spec.model), NormStats.empty(spec.model.num_stats))
    for seen in (0, 300):  # mini-batch 2, then 4 (schedule.mini_batch)
        part = pd.DataFrame({**{c: rng.normal(size=30) for c in cfg.input_columns()}, "label": rng.integers(0, 3, 30)})
        norm = NormStats.of(rng.normal(size=(seen, spec.model.num_stats))) if seen else start.norm
        executor.train_key(training, spec, cfg, 0, part, start._replace(norm=norm), batch_id=0, epochs=1, threads=1)
        assert set(training.compiled(spec)._train_fns) == traced, f"after {seen} rows seen"
