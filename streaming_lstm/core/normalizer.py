"""Per-feature running mean and variance that a stream can keep, and merge across partitions.

A min/max over "the dataset" makes no sense for a stream that is never seen whole. Instead each
partition summarises its rows as (count, mean, M2) and summaries merge exactly with Chan et al.'s
parallel update (1979):

    n = n_a + n_b,   d = mean_b - mean_a
    mean = mean_a + d * n_b / n
    M2   = M2_a + M2_b + d^2 * n_a * n_b / n

so merging the partitions' summaries equals the summary of all their rows, in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PREFIX = "norm/"


@dataclass(frozen=True)
class NormStats:
    """Count, mean and sum of squared deviations (M2) per feature; float64."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, num_features: int) -> NormStats:
        return cls(0.0, np.zeros(num_features), np.zeros(num_features))

    @classmethod
    def of(cls, x: np.ndarray) -> NormStats:
        """Summary of the rows of ``x`` (N, F)."""
        x = np.asarray(x, np.float64)
        if len(x) == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(float(len(x)), mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: NormStats) -> NormStats:
        """Chan et al.'s parallel combination; exact, associative and commutative."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return NormStats(n, mean, m2)

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / self.count if self.count > 0 else np.ones_like(self.mean)

    def scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(shift, divisor) for ``(x - shift) / divisor``; identity until anything was seen.

        A constant feature (variance ~0) is only centred, not divided by ~0.
        """
        if self.count == 0:
            return np.zeros_like(self.mean), np.ones_like(self.mean)
        var = self.variance
        return self.mean, np.where(var > 1e-12, np.sqrt(var), 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        shift, div = self.scale()
        return ((np.asarray(x, np.float64) - shift) / div).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            PREFIX + "count": np.array([self.count], np.float64),
            PREFIX + "mean": np.asarray(self.mean, np.float64),
            PREFIX + "m2": np.asarray(self.m2, np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], num_features: int) -> NormStats:
        try:
            count = float(np.asarray(arrays[PREFIX + "count"]).reshape(-1)[0])
            mean = np.asarray(arrays[PREFIX + "mean"], np.float64)
            m2 = np.asarray(arrays[PREFIX + "m2"], np.float64)
        except KeyError as exc:
            raise ValueError(f"normaliser statistics are missing '{exc.args[0]}'") from None
        if mean.shape != (num_features,) or m2.shape != (num_features,):
            raise ValueError(f"normaliser statistics have shape {mean.shape}, the model expects ({num_features},)")
        if not (np.isfinite(count) and count >= 0 and np.isfinite(mean).all() and np.isfinite(m2).all()):
            raise ValueError("normaliser statistics are not finite")
        return cls(count, mean, m2)
