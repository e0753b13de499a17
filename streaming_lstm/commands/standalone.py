"""One process, no Spark (the 2016 experiment's non-distributed baseline): ``fit``, ``evaluate`` and ``predict``
on a CSV file."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streaming_lstm.core import training
from streaming_lstm.core.config import AppConfig, ConfigError
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.seeds import task_seed
from streaming_lstm.core.weights import Weights, init_weights
from streaming_lstm.parse.data import Dataset, check_header, check_rows, load_csv, reasons_summary, stratified_split
from streaming_lstm.parse.rows import RAW_LIMIT
from streaming_lstm.storage.store import ModelStore, SavedModel


@dataclass
class Evaluation:
    rows: int
    accuracy: float
    loss: float
    confusion: list[list[int]]  # [true class][predicted class]
    class_names: list[str]
    rows_rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows
    headers_skipped: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "confusion": self.confusion,
            "classes": self.class_names,
            "rows_rejected": self.rows_rejected,
            "headers_skipped": self.headers_skipped,
        }

    def format(self) -> str:
        # Wide enough for every class name and every count, with two spaces between columns.
        width = max(len(str(v)) for v in [*self.class_names, *(c for row in self.confusion for c in row)]) + 2
        rejected = sum(self.rows_rejected.values())
        lines = [f"rows {self.rows}   accuracy {self.accuracy:.4f}   loss {self.loss:.4f}"]
        if rejected or self.headers_skipped:
            lines.append(
                f"rejected {rejected}"
                + (f" ({reasons_summary(Counter(self.rows_rejected), 5)})" if rejected else "")
                + f"   headers skipped {self.headers_skipped}"
            )
        lines.append("confusion (rows: true, columns: predicted)")
        lines.append(" " * width + "".join(f"{n:>{width}}" for n in self.class_names))
        for name, row in zip(self.class_names, self.confusion, strict=True):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
        return "\n".join(lines)


def evaluate_arrays(weights: Weights, norm: NormStats, data: Dataset, cfg: AppConfig) -> Evaluation:
    spec = training.TrainSpec.from_app(cfg)
    x = norm.transform(data.x)
    probs = training.predict(weights, x, spec, cfg.train.tf_threads)
    k = spec.model.num_classes
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (data.y, pred), 1)
    p_true = probs[np.arange(len(pred)), data.y] if len(pred) else np.zeros(0)
    loss = float(-np.log(np.clip(p_true, 1e-12, 1.0)).mean()) if len(pred) else float("nan")
    acc = float((pred == data.y).mean()) if len(pred) else float("nan")
    return Evaluation(len(pred), acc, loss, confusion.tolist(), cfg.data.class_labels())


def read_checked(path: str | Path, cfg: AppConfig, *, strict: bool, what: str, require_label: bool = True) -> tuple[Dataset, list[str]]:
    """A file's rows through rows.py's rules, refused early when they cannot fit ``what`` (a header
    naming other columns, no usable row; any rejected row with ``strict``); warnings to show."""
    if cfg.data.mode == "events":
        # One process has no stream state to form an entity's windows in; the stream does that.
        raise ConfigError(
            f'data.mode = "events": fit, evaluate and predict --data read rows; an event-mode model learns from a stream '
            f"(streaming-lstm train or demo --events) and scores one (predict --source ...); report --data {path} charts its forecasts"
        )
    check_header(path, cfg.data, what, require_label=require_label)
    data = load_csv(path, cfg.data, require_label=require_label)
    return data, check_rows(data, path, cfg.data, strict=strict, what=what, require_label=require_label)


def fit(cfg: AppConfig, data_path: str | Path, out: str | Path, holdout: float = 0.0, *, strict: bool = False) -> dict[str, Any]:
    """Train in one process (batch 0, partition 0 in the streaming trainer's terms) and save.

    With ``holdout`` > 0 a stratified, seeded share of each class is held out and scored.
    """
    started = time.perf_counter()
    data, warnings = read_checked(data_path, cfg, strict=strict, what="configuration")
    train_idx = np.arange(len(data.y))
    test_idx = np.zeros(0, np.int64)
    if holdout > 0:
        train_idx, test_idx = stratified_split(data.y, holdout, cfg.model.seed)
    spec = training.TrainSpec.from_app(cfg)
    x_train, y_train = data.x[train_idx], data.y[train_idx]
    norm = NormStats.of(x_train)
    weights, train_loss = training.fit(
        init_weights(spec.model),
        norm.transform(x_train),
        y_train,
        spec,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        seed=task_seed(cfg.model.seed, 0, 0),
        threads=cfg.train.tf_threads,
    )
    result: dict[str, Any] = {
        "rows_trained": len(train_idx),
        "rows_rejected": dict(data.rejected),
        "headers_skipped": data.headers_skipped,
        "warnings": warnings,
        "epochs": cfg.train.epochs,
        "train_loss": train_loss,
    }
    if len(test_idx):
        ev = evaluate_arrays(weights, norm, Dataset(data.x[test_idx], data.y[test_idx]), cfg)
        result.update(holdout_rows=ev.rows, holdout_accuracy=ev.accuracy, holdout_loss=ev.loss, confusion=ev.confusion)
    store = ModelStore(out)
    version = (store.versions() or [0])[-1] + 1
    meta = {"batch_id": -1, "rows_seen": len(train_idx), "running_n": float(len(train_idx)), "source": "fit", "metrics": result}
    store.save(version, cfg, weights, norm, meta)
    result.update(model=store.dir, version=version, seconds=time.perf_counter() - started)
    return result


def load_model(path: str | Path) -> SavedModel:
    return ModelStore.load_latest_or_raise(path)


def evaluate(model_path: str | Path, data_path: str | Path, *, strict: bool = False) -> tuple[SavedModel, Evaluation]:
    saved = load_model(model_path)
    data, warnings = read_checked(data_path, saved.config, strict=strict, what="model")
    ev = evaluate_arrays(saved.weights, saved.norm, data, saved.config)
    return saved, dataclasses.replace(ev, rows_rejected=dict(data.rejected), headers_skipped=data.headers_skipped, warnings=warnings)


def predict_rows(saved: SavedModel, x_raw: np.ndarray) -> np.ndarray:
    spec = training.TrainSpec.from_app(saved.config)
    return training.predict(saved.weights, saved.norm.transform(x_raw), spec, saved.config.train.tf_threads)


@dataclass
class PredictSummary:
    rows_scored: int = 0
    rows_rejected: int = 0
    headers_skipped: int = 0
    rows_labelled: int = 0  # scored rows that carried a known label
    rows_correct: int = 0  # ... and whose predicted class was it
    warnings: list[str] = field(default_factory=list)


def predict_csv(model_path: str | Path, data_path: str | Path, summary: PredictSummary | None = None, *, strict: bool = False) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per row of ``data_path``, in order (header lines skipped and counted):
    ``row`` (0-based among the non-header lines), ``class``, ``probabilities``, ``model_version``
    and, when the row has a known label, ``label``; a rejected row gets ``value`` and ``error``
    (its reason) instead, as the stream predictor writes it. ``summary`` is filled in as it goes."""
    saved = load_model(model_path)
    data, warnings = read_checked(data_path, saved.config, strict=strict, what="model", require_label=False)
    summary = summary if summary is not None else PredictSummary()
    summary.headers_skipped, summary.warnings = data.headers_skipped, warnings
    probs = iter(predict_rows(saved, data.x))
    names = saved.config.data.class_labels()
    for i, (line, verdict) in enumerate(data.lines):
        if verdict.reason is not None:
            summary.rows_rejected += 1
            yield {"row": i, "value": line[:RAW_LIMIT], "error": verdict.reason, "model_version": saved.version}
            continue
        p = next(probs)
        record: dict[str, Any] = {"row": i, "class": names[int(p.argmax())], "probabilities": [round(float(v), 6) for v in p]}
        if verdict.label is not None:
            record["label"] = names[verdict.label]
            summary.rows_labelled += 1
            summary.rows_correct += int(int(p.argmax()) == verdict.label)
        record["model_version"] = saved.version
        summary.rows_scored += 1
        yield record
