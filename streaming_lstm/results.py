"""What a training task returns, and how it crosses the Spark boundary (numpy only: the driver
decodes results without TensorFlow).

A :class:`PartitionResult` travels as one row of :data:`RESULT_SCHEMA` through Arrow
(``mapInPandas`` in the Python worker, ``toArrow()`` in the driver): :meth:`PartitionResult.to_row`
packs it, :meth:`PartitionResult.from_row` checks and unpacks it. Weights and statistics are
``.npz`` bytes, read with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streaming_lstm.normalizer import NormStats
from streaming_lstm.weights import LSTMConfig, Weights, arrays_from_bytes, check_weights, weights_to_bytes

RESULT_SCHEMA = "key int, rows long, correct long, loss_sum double, train_loss double, weights binary, norm binary, seconds double, worker_pid int"


@dataclass(frozen=True)
class Score:
    """Prequential or evaluation figures: rows, correct predictions and summed cross-entropy."""

    rows: int
    correct: int
    loss_sum: float

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

    def to_row(self) -> dict[str, Any]:
        """One row of :data:`RESULT_SCHEMA` (column -> value)."""
        return {
            "key": self.key,
            "rows": self.rows,
            "correct": self.prequential.correct,
            "loss_sum": self.prequential.loss_sum,
            "train_loss": self.train_loss,
            "weights": weights_to_bytes(self.weights),
            "norm": weights_to_bytes(self.norm.to_arrays()),
            "seconds": self.seconds,
            "worker_pid": self.worker_pid,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any], lstm: LSTMConfig) -> PartitionResult:
        """Decode a result row; the weights must have ``lstm``'s schema (a clear error otherwise)."""
        rows = int(row["rows"])
        return cls(
            key=int(row["key"]),
            rows=rows,
            prequential=Score(rows, int(row["correct"]), float(row["loss_sum"])),
            train_loss=float(row["train_loss"]),
            weights=check_weights(arrays_from_bytes(row["weights"]), lstm),
            norm=NormStats.from_arrays(arrays_from_bytes(row["norm"]), lstm.num_features),
            seconds=float(row["seconds"]),
            worker_pid=int(row["worker_pid"]),
        )
