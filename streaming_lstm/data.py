"""Reading labelled rows from a CSV file for the standalone trainer, ``evaluate`` and benchmarks.

The streaming job validates rows in Spark SQL (spark_parse.py) with the same rules: the right field
count, finite numeric features within ``data.max_abs_value``, a label among ``data.classes``.
Here invalid rows are skipped and counted by reason, never silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from streaming_lstm.config import DataConfig, data_columns


@dataclass
class Dataset:
    x: np.ndarray  # (N, F) float64, raw (not normalised), as Spark parses it
    y: np.ndarray  # (N,) int32 class ids
    rejected: Counter[str] = field(default_factory=Counter)


def load_csv(path: str | Path, data: DataConfig) -> Dataset:
    """Rows of ``path`` as features and class ids. A header line equal to the columns is skipped."""
    columns = list(data_columns(data))
    try:
        raw = pd.read_csv(
            path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=True, on_bad_lines="skip", engine="python", names=columns, index_col=False
        )
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {path}") from None
    rejected: Counter[str] = Counter()
    if len(raw) and [str(v).strip() for v in raw.iloc[0]] == columns:
        raw = raw.iloc[1:]
    if raw.empty:
        return Dataset(np.zeros((0, len(data.features))), np.zeros(0, np.int32), rejected)
    feats = raw[list(data.features)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce")).to_numpy(np.float64)
    labels = raw[data.label].astype(str).str.strip()
    class_of = {c: i for i, c in enumerate(data.classes)}
    y = labels.map(class_of)
    missing = raw.isna().any(axis=1).to_numpy() | (raw == "").any(axis=1).to_numpy()
    nan = np.isnan(feats).any(axis=1)
    big = ~nan & (np.abs(np.where(np.isnan(feats), 0, feats)) > data.max_abs_value).any(axis=1)
    unknown = y.isna().to_numpy()
    bad = missing | nan | big | unknown
    rejected.update({"wrong field count or empty field": int((missing).sum())})
    rejected.update({"non-numeric or non-finite feature": int((nan & ~missing).sum())})
    rejected.update({"feature out of range": int((big & ~missing).sum())})
    rejected.update({"unknown label": int((unknown & ~missing & ~nan & ~big).sum())})
    rejected = Counter({k: v for k, v in rejected.items() if v})
    return Dataset(feats[~bad], y[~bad].to_numpy(np.int32), rejected)


def stratified_split(y: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): ``holdout`` of each class, seeded. Both sorted."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"--holdout must be between 0 and 1, got {holdout}")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[: round(holdout * len(idx))].tolist())
    test_idx = np.array(sorted(test), dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx
