"""Rehearsal: the most recent rows the model has learned, replayed alongside each new batch.

An online learner sees each row once, and a network that trains a few epochs on a 50-row batch
forgets most of it by the next. Rehearsal keeps the newest ``train.rehearsal_rows`` trained rows
(raw features and labels or targets, before normalisation) and each partition task trains on its
new rows *and* its share of them. Early in a stream that is every row seen so far, so the first
batches train like a few epochs over the whole stream; later it is a fixed cost of R rows per batch
that keeps the latest concept in every update. Scoring (test-then-train) is on the new rows only,
and a partition's averaging weight stays its count of new rows.

Contracts:

* The buffer is part of each model version (``rehearsal/x``, ``rehearsal/y`` in its ``.npz``) and
  of the weights shipped to the tasks; the buffer batch N trains with is the one saved with the
  version after batch N-1, so a replayed batch trains on the same rows as its first attempt.
* Key ``k`` of P trains on the buffer rows ``i`` with ``i mod P == k`` (:meth:`Rehearsal.share`).
* After a batch, each key returns its last ``ceil(R / P)`` new rows in its row order
  (:func:`tail`); the driver appends them in key order and keeps the newest R
  (:meth:`Rehearsal.extended`). A function of the batch's rows and keys only: replays agree.

Imports numpy only (the driver uses it without TensorFlow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PREFIX = "rehearsal/"


@dataclass(frozen=True)
class Rehearsal:
    """Raw rows: ``x`` (R, T*F) float64 features, ``y`` (R,) int32 class ids or (R, C) float64
    targets."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def empty(cls, features: int, targets: int) -> Rehearsal:
        """No rows yet: ``targets`` 0 for class ids, else the number of forecast targets."""
        y = np.zeros((0,), np.int32) if targets == 0 else np.zeros((0, targets), np.float64)
        return cls(np.zeros((0, features), np.float64), y)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Rehearsal | None:
        """The buffer in a model's named arrays (``rehearsal/x``, ``rehearsal/y``), or None."""
        x, y = arrays.get(PREFIX + "x"), arrays.get(PREFIX + "y")
        if x is None or y is None:
            return None
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"a rehearsal buffer of {x.shape} features and {y.shape} labels: expected (R, F) and R labels")
        return cls(np.asarray(x, np.float64), y)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {PREFIX + "x": self.x, PREFIX + "y": self.y}

    def share(self, key: int, partitions: int) -> Rehearsal:
        """The rows key ``key`` of ``partitions`` replays: every P-th, starting at ``key``."""
        return Rehearsal(self.x[key::partitions], self.y[key::partitions])

    def extended(self, recent: Sequence[Rehearsal], limit: int) -> Rehearsal:
        """This buffer with ``recent`` (the keys' tails, in key order) appended; the newest ``limit``."""
        x = np.concatenate([self.x, *(r.x for r in recent)])
        y = np.concatenate([self.y, *(r.y.astype(self.y.dtype) for r in recent)])
        return Rehearsal(x[len(x) - limit :], y[len(y) - limit :]) if len(x) > limit else Rehearsal(x, y)


def tail(x: np.ndarray, y: np.ndarray, limit: int, partitions: int) -> Rehearsal:
    """The rows one key contributes to the buffer: its last ``ceil(limit / partitions)`` rows."""
    keep = math.ceil(limit / partitions) if limit > 0 else 0
    start = max(0, len(x) - keep)
    return Rehearsal(np.asarray(x[start:], np.float64), y[start:])
