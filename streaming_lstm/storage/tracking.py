"""MLflow tracking of a training run (``[mlflow] tracking_uri`` / ``--mlflow URI``; optional: the
``mlflow`` extra, installed by scripts/setup.sh).

Contract: one MLflow run per checkpoint. Its id is kept in ``CHECKPOINT/mlflow_run.json``, so a
restart resumes the same run. The configuration is logged as params once, when the run is made.
Each applied batch's figures (the batch line's, ``metrics.jsonl``'s) are logged with
``step = batch_id``, once per batch id: a metric ``batch_id`` (value = step) marks the newest batch
logged, and at start every ``metrics.jsonl`` line after it is logged first (a crash between the
metrics line and MLflow leaves nothing out; a replayed batch is skipped by the trainer, so nothing
is logged twice). Drift alarms are the ``drift`` metric at their step and a ``drift.last_batch`` tag.

``"local"`` is a SQLite store under the checkpoint, ``CHECKPOINT/mlflow/mlflow.db``, artifacts in
``CHECKPOINT/mlflow/artifacts``: open it with ``mlflow ui --backend-store-uri
sqlite:///CHECKPOINT/mlflow/mlflow.db`` (the UI is in the full ``mlflow`` package).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.storage.fs import filesystem, is_local, join, local_path
from streaming_lstm.storage.metrics import read_metrics

log = logging.getLogger("streaming_lstm.storage.tracking")
RUN_FILE = "mlflow_run.json"
STEP_METRIC = "batch_id"
SKIPPED = ("batch_id", "version", "time", "partition_rows", "dead_reasons", "step_seconds")


def tracking_uri(setting: str, checkpoint: str) -> str:
    """``"local"`` as the SQLite store under ``checkpoint`` (which must then be a local path); any other URI as is."""
    if setting != "local":
        return setting
    if not is_local(checkpoint):
        raise ConfigError(f"--mlflow local keeps MLflow's store under the checkpoint, which must be a local path, not {checkpoint}; pass a tracking URI")
    root = os.path.abspath(os.path.join(local_path(checkpoint), "mlflow"))
    os.makedirs(root, mode=0o700, exist_ok=True)
    return f"sqlite:///{root}/mlflow.db"


def client(setting: str, checkpoint: str) -> Any:
    """An ``MlflowClient`` for the setting; a clear error when MLflow is not installed."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: run scripts/setup.sh, or pip install 'streaming-lstm[mlflow]'") from None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the SQLite store's schema migrations, at every start
    return mlflow.MlflowClient(tracking_uri=tracking_uri(setting, checkpoint))


def experiment_id(mlflow_client: Any, name: str, checkpoint: str, setting: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    artifacts = None
    if setting == "local":
        artifacts = "file://" + os.path.abspath(os.path.join(local_path(checkpoint), "mlflow", "artifacts"))
    return str(mlflow_client.create_experiment(name, artifact_location=artifacts))


def numeric_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A batch record's figures MLflow can hold (finite numbers; booleans as 0/1)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in SKIPPED or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if number == number and abs(number) != float("inf"):
            out[key] = number
    return out


class MlflowTracker:
    """The run of one checkpoint (see the module docstring)."""

    def __init__(self, setting: str, experiment: str, checkpoint: str, params: Mapping[str, Any]) -> None:
        self.client = client(setting, checkpoint)
        self.path = join(checkpoint, RUN_FILE)
        fs = filesystem(self.path)
        if fs.exists(self.path):
            self.run_id = str(json.loads(fs.read_bytes(self.path))["run_id"])
        else:
            run = self.client.create_run(experiment_id(self.client, experiment, checkpoint, setting), run_name=os.path.basename(os.path.normpath(checkpoint)))
            self.run_id = str(run.info.run_id)
            self.client.log_batch(self.run_id, params=[_param(k, v) for k, v in flatten(params).items()])
            fs.write_atomic(self.path, json.dumps({"run_id": self.run_id}).encode())
        latest = self.client.get_run(self.run_id).data.metrics.get(STEP_METRIC)
        self.last_logged = int(latest) if latest is not None else -1

    def catch_up(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Log the records after the newest one logged (in batch-id order); how many were."""
        todo = sorted((r for r in records if int(r["batch_id"]) > self.last_logged), key=lambda r: int(r["batch_id"]))
        for record in todo:
            self.log(record)
        return len(todo)

    def log(self, record: Mapping[str, Any]) -> None:
        """One applied batch's figures at ``step = batch_id`` (ignored if that step is logged already)."""
        from mlflow.entities import Metric, RunTag

        step = int(record["batch_id"])
        if step <= self.last_logged:
            return
        now = int(1000 * float(record.get("time") or time.time()))
        figures = {**numeric_metrics(record), STEP_METRIC: float(step)}
        tags = [RunTag("drift.last_batch", str(step))] if record.get("drift") else []
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in figures.items()], tags=tags)
        self.last_logged = step


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


SECRET = re.compile(r"(?i)secret|password|token|access[.]?key|jaas")  # as Spark's redaction of its settings


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    text = json.dumps(value) if not isinstance(value, str) else value
    return Param(key, "*********(redacted)" if SECRET.search(key) else text[:6000])


def open_tracker(cfg: AppConfig, checkpoint: str) -> MlflowTracker | None:
    """The checkpoint's MLflow run, caught up with metrics.jsonl; None when off."""
    if not cfg.mlflow.tracking_uri:
        return None
    tracker = MlflowTracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, checkpoint, cfg.to_dict())
    try:
        logged = tracker.catch_up(read_metrics(checkpoint))
    except (FileNotFoundError, ValueError):  # no batch yet
        logged = 0
    log.info("MLflow run %s%s", tracker.run_id, f" ({logged} earlier batches logged now)" if logged else "")
    return tracker
