"""What users and their files rely on stays put across a reorganisation of the code: the command
names, the configuration keys, and checkpoints written by earlier versions, which resume."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

COMMANDS = {"fit", "evaluate", "train", "demo", "export", "predict", "report", "produce", "broker", "init-config", "jars"}


def test_the_command_names_are_the_published_ones() -> None:
    import argparse

    from streaming_lstm.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == COMMANDS


def test_the_configuration_keys_are_those_of_0_1_0() -> None:
    """Every key a 0.1.0 TOML file could hold is still a key (strict loading would reject it otherwise)."""
    from streaming_lstm.core.config import AppConfig

    before = json.loads((DATA / "config-keys-0.1.0.json").read_text())
    now = {name: sorted(f.name for f in dataclasses.fields(type(getattr(AppConfig(), name)))) for name in before}
    for section, keys in before.items():
        assert set(keys) <= set(now[section]), f"[{section}] lost {sorted(set(keys) - set(now[section]))}"


@pytest.mark.spark
def test_a_checkpoint_written_by_0_1_0_resumes(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """tests/data/checkpoint-0.1.0: one applied batch of 60 rows (model version 1), written before
    the package was split into subpackages. It loads, skips nothing it should not, and the next
    batch becomes version 2 with the rows counted on top."""
    from streaming_lstm.storage.store import ModelStore
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import start_query
    from streaming_lstm.trainer.sources import file_source

    ck = tmp_path / "ck"
    shutil.copytree(DATA / "checkpoint-0.1.0", ck)
    saved = ModelStore(ck / "model").load_latest()
    assert saved is not None and saved.version == 1 and saved.meta["rows_seen"] == 60
    cfg = dataclasses.replace(saved.config, stream=dataclasses.replace(saved.config.stream, trigger="0s"))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    # Spark's file source keeps the directory it read (a checkpoint is not relocatable): point the
    # log of batch 0's file at this test's directory, as if the run had read it there.
    log = ck / "spark" / "sources" / "0" / "0"
    log.write_text(log.read_text().replace("file:///tmp/legacy/in/", f"file://{incoming}/"))
    (log.parent / ".0.crc").unlink()
    (incoming / "more.csv").write_text("\n".join(iris_lines[:30]) + "\n")
    trainer = StreamingTrainer(spark, cfg, ck)
    assert (trainer.state.version, trainer.state.last_batch_id, trainer.state.rows_seen) == (1, 0, 60)
    query = start_query(trainer, file_source(spark, incoming, cfg))
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    assert [m["batch_id"] for m in trainer.history] == [1]
    assert trainer.state.version == 2 and trainer.state.rows_seen == 90
    after = ModelStore(ck / "model").load_latest()
    assert after is not None and after.version == 2 and after.meta["rows_seen"] == 90
