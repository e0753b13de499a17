"""The warm-up schedule of local epochs: its formula, its validation, and that tasks train it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.schedule import local_epochs

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


@pytest.mark.parametrize("key", ["warmup_epochs", "warmup_rows"])
def test_negative_warm_up_is_refused_by_name(key: str) -> None:
    with pytest.raises(ConfigError, match=f"train.{key}"):
        train(**{key: -1})


@pytest.mark.spark
def test_streaming_tasks_train_the_scheduled_epochs(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """One partition, warm-up 2 extra epochs over 1000 rows: the first batch (rows_seen 0) trains
    1 + 2 epochs, exactly as the standalone trainer does with 3 epochs on the same rows."""
    from streaming_lstm.commands import standalone
    from tests.test_streaming import config, shuffled, streaming

    over = {"stream.partitions": 1, "train.local_epochs": 1, "train.local_learning_rate": 0.0, "train.warmup_epochs": 2, "train.warmup_rows": 1000}
    rows = shuffled(iris_lines, 1, seed=3)
    with streaming(spark, config(**over), tmp_path / "ck") as (trainer, feed):
        feed(rows)
        feed(rows[:100])
        epochs = [m["local_epochs"] for m in trainer.history]
    assert epochs == [3, 3]  # 1 + round(2 * (1 - 0/1000)), then 1 + round(2 * (1 - 150/1000)) = 1 + 2
    data = tmp_path / "rows.csv"
    data.write_text("\n".join(rows) + "\n")
    standalone.fit(config(**{**over, "train.epochs": 3}), data, tmp_path / "standalone")
    alone = standalone.load_model(tmp_path / "standalone")
    from streaming_lstm.storage.store import ModelStore

    first = ModelStore.resolve(tmp_path / "ck").load(1)
    for k in alone.weights:
        np.testing.assert_allclose(first.weights[k], alone.weights[k], atol=1e-6, err_msg=k)
