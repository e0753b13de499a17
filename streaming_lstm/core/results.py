"""What a training task returns, and how it crosses the Spark boundary (numpy only: the driver
decodes results without TensorFlow).

A :class:`PartitionResult` travels as one row of :data:`RESULT_SCHEMA` through Arrow
(``mapInPandas`` or ``mapInArrow`` in the Python worker, ``toArrow()`` in the driver): :meth:`PartitionResult.to_row`
packs it, :meth:`PartitionResult.from_row` checks and unpacks it. Weights and statistics are
``.npz`` bytes, read with ``allow_pickle=False``.

With mean aggregation a task *folds* its keys (:class:`Fold`): it checks each key's weights
(state.check_update), sends each key's figures without its weights, and one extra row of ``kind``
``fold`` with ``sum_k n_k * w_k`` over its accepted keys, the number of keys in ``keys`` and its
task's smallest key in ``key``, which orders the folds the same way on every replay. So the driver receives one weight
vector per task, not per key (P x 1.8 MB at the 2016 experiment's model). Robust aggregations need every
vector and keep one per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal
from streaming_lstm.core.weights import LSTMConfig, Weights, arrays_from_bytes, check_weights, schema, weights_to_bytes

# A result row's kind: one key's figures (and weights), a task's fold; from a plan built once per
# query (trainer/planned.py), whose tasks also see the batch's rejected rows: one rejected row
# (``reason``, its ``raw`` text as bytes and ``raw_length``), or a task's count of header rows (``rows``).
KEY, FOLD, DEAD, HEADERS = "key", "fold", "dead", "headers"
KIND = "kind"  # the column that names a row's kind; a batch with it holds results, not input rows
RESULT_SCHEMA = (
    "kind string, key int, keys int, rows long, correct long, loss_sum double, train_loss double, weights binary, norm binary, seconds double, "
    "worker_pid int, rejected string, abs_sum double, sq_sum double, naive_sum double, recent binary, gain binary, "
    "reason string, raw binary, raw_length int"
)


def blank_row(kind: str, **values: Any) -> dict[str, Any]:
    """A row of :data:`RESULT_SCHEMA` of ``kind``: ``values``, every other column zero or empty."""
    row: dict[str, Any] = {"kind": kind, "key": -1, "keys": 0, "rows": 0, "correct": 0, "loss_sum": 0.0, "train_loss": 0.0, "weights": b""}
    row.update({"norm": b"", "seconds": 0.0, "worker_pid": 0, "rejected": None, "abs_sum": 0.0, "sq_sum": 0.0, "naive_sum": 0.0})
    row.update({"recent": b"", "gain": b"", "reason": None, "raw": None, "raw_length": None})
    return {**row, **values}


@dataclass(frozen=True)
class Score:
    """Prequential or evaluation figures: rows, correct predictions and summed cross-entropy; for
    forecasts (correct 0, ``loss_sum`` the summed squared error in normalised units) also the sums
    over every forecast value, in the targets' own units, of the model's absolute and squared errors
    and of the naive last-value forecast's absolute error."""

    rows: int
    correct: int
    loss_sum: float
    abs_sum: float = 0.0
    sq_sum: float = 0.0
    naive_sum: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else float("nan")

    @property
    def loss(self) -> float:
        return self.loss_sum / self.rows if self.rows else float("nan")


@dataclass(frozen=True)
class PartitionResult:
    """What one streaming partition task returns to the driver."""

    key: int
    rows: int
    prequential: Score
    train_loss: float
    weights: Weights
    norm: NormStats  # statistics of this partition's rows only (the driver merges them)
    seconds: float
    worker_pid: int = 0
    rejected: str | None = None  # why the task refused this key's weights (folded mode)
    recent: Rehearsal | None = None  # this key's newest rows for the rehearsal buffer (rehearsal.tail)
    gain: ForecastGain | None = None  # this key's windows' sums for the forecast gain (gain.py)

    @property
    def folded(self) -> bool:
        """Its weights went into its task's :class:`Fold` (or were rejected), not to the driver."""
        return not self.weights

    def to_row(self) -> dict[str, Any]:
        """One row of :data:`RESULT_SCHEMA` (column -> value)."""
        return blank_row(
            KEY,
            key=self.key,
            keys=1,
            rows=self.rows,
            correct=self.prequential.correct,
            loss_sum=self.prequential.loss_sum,
            train_loss=self.train_loss,
            weights=weights_to_bytes(self.weights) if self.weights else b"",
            norm=weights_to_bytes(self.norm.to_arrays()),
            seconds=self.seconds,
            worker_pid=self.worker_pid,
            rejected=self.rejected,
            abs_sum=self.prequential.abs_sum,
            sq_sum=self.prequential.sq_sum,
            naive_sum=self.prequential.naive_sum,
            recent=weights_to_bytes(self.recent.to_arrays()) if self.recent is not None else b"",
            gain=weights_to_bytes(self.gain.to_arrays()) if self.gain is not None else b"",
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any], lstm: LSTMConfig) -> PartitionResult:
        """Decode a result row; the weights must have ``lstm``'s schema (a clear error otherwise)."""
        rows = int(row["rows"])
        return cls(
            key=int(row["key"]),
            rows=rows,
            prequential=Score(rows, int(row["correct"]), float(row["loss_sum"]), *(float(row.get(k) or 0.0) for k in ("abs_sum", "sq_sum", "naive_sum"))),
            train_loss=float(row["train_loss"]),
            weights=check_weights(arrays_from_bytes(row["weights"]), lstm) if row["weights"] else {},
            norm=NormStats.from_arrays(arrays_from_bytes(row["norm"]), lstm.num_stats),
            seconds=float(row["seconds"]),
            worker_pid=int(row["worker_pid"]),
            rejected=row.get("rejected"),
            recent=Rehearsal.from_arrays(arrays_from_bytes(row["recent"])) if row.get("recent") else None,
            gain=ForecastGain.from_arrays(arrays_from_bytes(row["gain"])) if row.get("gain") else None,
        )


@dataclass(frozen=True)
class Fold:
    """One task's accepted keys folded: their rows and ``sum_k n_k * flatten(w_k)`` (float64)."""

    first_key: int  # the task's smallest key: the fold's place in the driver's sum
    rows: int
    keys: int
    weighted_sum: np.ndarray

    def to_row(self, worker_pid: int = 0) -> dict[str, Any]:
        weights = weights_to_bytes({"weighted_sum": self.weighted_sum})
        return blank_row(FOLD, key=self.first_key, keys=self.keys, rows=self.rows, weights=weights, worker_pid=worker_pid)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], lstm: LSTMConfig) -> Fold:
        vector = np.asarray(arrays_from_bytes(row["weights"])["weighted_sum"], np.float64)
        size = sum(int(np.prod(shape)) for _, shape in schema(lstm))
        if vector.shape != (size,):
            raise ValueError(f"a folded result has shape {vector.shape}, the model has {size} values")
        return cls(int(row["key"]), int(row["rows"]), int(row["keys"]), vector)


def decode(rows: list[Mapping[str, Any]], lstm: LSTMConfig) -> tuple[list[PartitionResult], list[Fold]]:
    """A batch's result rows: the keys' results sorted by key, and the tasks' folds in a fixed order
    (by their first key), so the driver's float sums run in the same order on a replay."""
    keys = sorted((PartitionResult.from_row(r, lstm) for r in rows if r["kind"] == KEY), key=lambda r: r.key)
    folds = sorted((Fold.from_row(r, lstm) for r in rows if r["kind"] == FOLD), key=lambda f: f.first_key)
    return keys, folds
