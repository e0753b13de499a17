"""Drift detection on the prequential error: ADWIN (Bifet and Gavaldà, 2007), as River uses it.

ADWIN keeps a window of recent observations and drops its older part whenever two sub-windows have
means that differ by more than

    eps_cut = sqrt( 1/(2m) * ln(4 |W| / delta) ),   m = 1 / (1/n0 + 1/n1)

(the Hoeffding-bound test of the paper's ADWIN0). The window adapts to a change either way, but
only a rise of the error raises an alarm: a model that starts learning is not drifting. The trainer
knows each batch's error count, not
the order of errors inside a batch, so the window is kept at batch granularity: a batch is one
bucket (rows, errors), and cut points are tested between buckets. A cut raises an alarm.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class Bucket:
    rows: int
    errors: float


class Adwin:
    """Adaptive window over per-batch error counts; :meth:`update` returns True on drift."""

    def __init__(self, delta: float = 0.002, max_buckets: int = 500, min_rows: int = 30) -> None:
        if not 0 < delta < 1:
            raise ValueError(f"drift delta must be in (0, 1), got {delta}")
        self.delta = delta
        self.min_rows = min_rows
        self.window: deque[Bucket] = deque(maxlen=max_buckets)
        self.detections = 0

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The window and the alarm count, for a model version (``drift/window`` is (K, 2): rows, errors)."""
        window = np.array([[b.rows, b.errors] for b in self.window], np.float64).reshape(-1, 2)
        return {"drift/window": window, "drift/detections": np.array([self.detections], np.int64)}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Continue from :meth:`to_arrays`' arrays (nothing to load: a fresh window)."""
        window = arrays.get("drift/window")
        if window is None:
            return
        self.window.clear()
        self.window.extend(Bucket(int(rows), float(errors)) for rows, errors in np.asarray(window, np.float64).reshape(-1, 2))
        self.detections = int(np.asarray(arrays.get("drift/detections", [0])).reshape(-1)[0])

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.window)

    @property
    def error_rate(self) -> float:
        n = self.rows
        return sum(b.errors for b in self.window) / n if n else math.nan

    def update(self, rows: int, errors: float) -> bool:
        if rows <= 0:
            return False
        self.window.append(Bucket(rows, errors))
        drifted = False
        while True:
            change = self._cut()
            if change is None:
                break
            drifted = drifted or change > 0
        if drifted:
            self.detections += 1
        return drifted

    def _cut(self) -> float | None:
        """Drop the oldest buckets up to the first split where the means differ.

        Returns the change of the mean error (newer minus older) at the cut, or None if no cut.
        """
        total_n = self.rows
        total_e = sum(b.errors for b in self.window)
        n0, e0 = 0, 0.0
        for i, b in enumerate(list(self.window)[:-1]):
            n0 += b.rows
            e0 += b.errors
            n1, e1 = total_n - n0, total_e - e0
            if n0 < self.min_rows or n1 < self.min_rows:
                continue
            m = 1.0 / (1.0 / n0 + 1.0 / n1)
            eps = math.sqrt(math.log(4.0 * total_n / self.delta) / (2.0 * m))
            if abs(e0 / n0 - e1 / n1) > eps:
                for _ in range(i + 1):
                    self.window.popleft()
                return e1 / n1 - e0 / n0
        return None
