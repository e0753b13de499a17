"""One process, no Spark (the seed's non-distributed baseline): ``fit``, ``evaluate`` and ``predict``
on a CSV file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streaming_lstm import training
from streaming_lstm.config import AppConfig
from streaming_lstm.data import Dataset, load_csv, stratified_split
from streaming_lstm.normalizer import NormStats
from streaming_lstm.seeds import task_seed
from streaming_lstm.store import ModelStore, SavedModel
from streaming_lstm.weights import Weights, init_weights


@dataclass
class Evaluation:
    rows: int
    accuracy: float
    loss: float
    confusion: list[list[int]]  # [true class][predicted class]
    class_names: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "accuracy": self.accuracy, "loss": self.loss, "confusion": self.confusion, "classes": self.class_names}

    def format(self) -> str:
        width = max(len(n) for n in self.class_names) + 2
        lines = [f"rows {self.rows}   accuracy {self.accuracy:.4f}   loss {self.loss:.4f}", "confusion (rows: true, columns: predicted)"]
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


def fit(cfg: AppConfig, data_path: str | Path, out: str | Path, holdout: float = 0.0) -> dict[str, Any]:
    """Train in one process (batch 0, partition 0 in the streaming trainer's terms) and save.

    With ``holdout`` > 0 a stratified, seeded share of each class is held out and scored.
    """
    started = time.perf_counter()
    data = load_csv(data_path, cfg.data)
    if len(data.y) == 0:
        raise ValueError(f"{data_path}: no valid rows (rejected: {dict(data.rejected)})")
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
        "epochs": cfg.train.epochs,
        "train_loss": train_loss,
    }
    if len(test_idx):
        ev = evaluate_arrays(weights, norm, Dataset(data.x[test_idx], data.y[test_idx]), cfg)
        result.update(holdout_rows=ev.rows, holdout_accuracy=ev.accuracy, holdout_loss=ev.loss, confusion=ev.confusion)
    store = ModelStore(out)
    version = (store.versions() or [0])[-1] + 1
    meta = {"batch_id": -1, "rows_seen": len(train_idx), "running_n": float(len(train_idx)), "source": "fit", "metrics": result}
    path = store.save(version, cfg, weights, norm, meta)
    result.update(model=str(path.parent), version=version, seconds=time.perf_counter() - started)
    return result


def load_model(path: str | Path) -> SavedModel:
    return ModelStore.load_latest_or_raise(path)


def evaluate(model_path: str | Path, data_path: str | Path) -> tuple[SavedModel, Evaluation]:
    saved = load_model(model_path)
    data = load_csv(data_path, saved.config.data)
    return saved, evaluate_arrays(saved.weights, saved.norm, data, saved.config)


def predict_rows(saved: SavedModel, x_raw: np.ndarray) -> np.ndarray:
    spec = training.TrainSpec.from_app(saved.config)
    return training.predict(saved.weights, saved.norm.transform(x_raw), spec, saved.config.train.tf_threads)


def predict_csv(model_path: str | Path, data_path: str | Path) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per valid row of ``data_path``: class, probabilities, model version.

    The file is read with the model's own column layout; a label column, if present, is ignored
    for prediction and echoed as ``label``. Invalid rows are skipped and counted by ``load_csv``.
    """
    saved = load_model(model_path)
    data = load_csv(data_path, saved.config.data)
    probs = predict_rows(saved, data.x)
    names = saved.config.data.class_labels()
    for i, p in enumerate(probs):
        yield {
            "row": i,
            "class": names[int(p.argmax())],
            "probabilities": [round(float(v), 6) for v in p],
            "label": names[int(data.y[i])],
            "model_version": saved.version,
        }
