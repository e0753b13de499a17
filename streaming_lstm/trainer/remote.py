"""Training over Spark Connect: what runs where.

Under Spark Connect the ``foreachBatch`` function is pickled by the client and runs in a Python
process beside the server (Spark's "ForeachBatch worker"), started once per query run. So:

* :class:`RemoteHandler` is that function. It carries only the config and the checkpoint path;
  on the first batch of a run it builds the :class:`~streaming_lstm.trainer.handler.StreamingTrainer`
  there, from the checkpoint (model store, metrics), exactly as a classic driver does on restart.
  Every later batch of the run reuses it, so state, averaging and exactly-once are the classic
  code's, unchanged: a batch id already in the saved model is skipped.
* :class:`RemoteTrainer` is the client's view of it, with the attributes ``runner.run`` watches. The
  client learns what was applied by following ``CHECKPOINT/metrics.jsonl`` (one line per applied
  batch, written after the version is saved), so the checkpoint must be a path the client can read
  too (a local server, or a shared mount; connect.require_local_path).

What the client may exit on: the query runs in the server. A client that stops normally stops the
query after the batch in flight (the same quiet stop as classic mode, minus the handler's refusal of
a batch started meanwhile: that batch is interrupted and replayed, and skipped if it was saved). A
client that is killed leaves the query running in its server session; a new client started on the
same checkpoint stops that run (Spark's ``stopActiveRunOnRestart``) and resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.core.config_load import from_dict
from streaming_lstm.parse.spark_parse import observed
from streaming_lstm.spark import connect
from streaming_lstm.storage.fs import is_local, join
from streaming_lstm.storage.metrics import METRICS_FILE, BatchCallback, History, MetricsTail, print_line
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer.handler import StreamingTrainer
from streaming_lstm.trainer.keepwarm import warm_workers
from streaming_lstm.trainer.routing import plan_tasks

log = logging.getLogger("streaming_lstm.trainer.remote")


class RemoteHandler:
    """The foreachBatch function sent to the server; builds the trainer there on first use."""

    def __init__(self, config_dict: dict[str, Any], checkpoint: str) -> None:
        self.config_dict = config_dict
        self.checkpoint = checkpoint
        self._trainer: StreamingTrainer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config_dict": self.config_dict, "checkpoint": self.checkpoint}  # never a built trainer

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config_dict"], state["checkpoint"])  # type: ignore[misc]

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        if self._trainer is None:
            self._trainer = StreamingTrainer(df.sparkSession, from_dict(self.config_dict), self.checkpoint, on_batch=print_line)  # the server's log
        self._trainer.handle(df, batch_id)


@dataclass
class FollowedState:
    """What the client knows of the server-side state: the last applied batch and version."""

    version: int = 0
    last_batch_id: int = -1


@dataclass
class RemoteTrainer:
    """The client side of a Connect run (see the module docstring)."""

    spark: SparkSession
    cfg: AppConfig
    checkpoint: str
    on_batch: BatchCallback | None = None
    state: FollowedState = field(default_factory=FollowedState)
    history: History = field(default_factory=History)
    batches_applied: int = 0
    busy: bool = False
    last_rows_at: float = field(default_factory=time.monotonic)
    _tail: MetricsTail | None = None

    def __post_init__(self) -> None:
        require_local_path(os.fspath(self.checkpoint), "--checkpoint")
        self.checkpoint = os.path.abspath(self.checkpoint)  # the server resolves paths from its own directory
        os.makedirs(self.checkpoint, mode=0o700, exist_ok=True)
        self.handle = RemoteHandler(self.cfg.to_dict(), self.checkpoint)
        saved = ModelStore(join(self.checkpoint, "model")).load_latest()
        if saved is not None:
            self.state = FollowedState(saved.version, int(saved.meta.get("batch_id", -1)))
        self._tail = MetricsTail(self.metrics_path)
        self._tail.read_new()  # lines of earlier runs: not this run's history

    @property
    def metrics_path(self) -> str:
        return join(self.checkpoint, METRICS_FILE)

    def warm_up(self) -> float:
        tasks, _, threads = plan_tasks(self.spark, self.cfg)
        return warm_workers(self.spark, self.cfg, tasks, threads)

    def get_ready(self) -> str:
        return f"Python workers ready in {self.warm_up():.1f} s"

    def training_plan(self, source: DataFrame) -> DataFrame:
        """The rows parsed, counts observed: the server's handler plans each batch (planned.why_per_batch)."""
        return observed(source, self.cfg.data)

    def request_stop(self) -> None:
        """Nothing to tell: the handler runs in the server (see the module docstring)."""

    def follow(self, query: StreamingQuery) -> None:
        """Take in the batches the server applied since the last call (runner.run's tick)."""
        self.busy = bool(query.status.get("isTriggerActive", False))
        assert self._tail is not None
        for m in self._tail.read_new():
            if int(m["batch_id"]) <= self.state.last_batch_id:
                continue
            self.history.append(m)
            self.batches_applied += 1
            self.state = FollowedState(int(m.get("version", self.state.version + 1)), int(m["batch_id"]))
            if m.get("rows_valid"):
                self.last_rows_at = time.monotonic()
            if self.on_batch is not None:
                self.on_batch(m)


def make_trainer(
    spark: SparkSession, cfg: AppConfig, checkpoint: str | os.PathLike[str], *, on_batch: BatchCallback | None = None
) -> StreamingTrainer | RemoteTrainer:
    """The trainer for ``spark``'s kind: in this process (classic) or in the Connect server."""
    if connect.is_remote(spark):
        return RemoteTrainer(spark, cfg, os.fspath(checkpoint), on_batch)
    return StreamingTrainer(spark, cfg, checkpoint, on_batch=on_batch)


def require_local_path(path: str, what: str) -> None:
    """Under Connect the foreachBatch code runs in a Python process beside the server, with no JVM
    to reach Hadoop's file systems through (fs.py); a checkpoint there must be a local path."""
    if not is_local(path):
        raise ConfigError(
            f"{what} {path!r}: under Spark Connect (--remote) the checkpoint must be a local or mounted path on the server's machine; "
            "Hadoop URIs (hdfs://, s3a://) need the classic driver for now"
        )
