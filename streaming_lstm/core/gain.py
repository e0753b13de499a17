"""The forecast gain: how much of the network's forecast change to trust, learned out of sample.

With ``data.forecast_change`` a forecast is the window's last value plus the network's change.
A network that has seen few windows, or a series whose changes are mostly noise, predicts
changes that make the forecast worse than the last value alone. The gain shrinks them: the served
forecast is ``last + g * change`` with, per forecast value,

    g = clip(sum(p * a) / sum(p * p), 0, 1)

over the windows scored so far (prequentially: ``p`` the change the model predicted *before* it
trained on the window, ``a`` the actual change). That is the least-squares weight of the
network's change against the last value, measured only on windows the network had not seen. It is
0 until the first window is scored (the first forecasts are the naive ones), stays near 0 while the
network has no signal, and near 1 when it has.

Contracts:

* The sums are part of each model version (``gain/cross``, ``gain/power`` in its ``.npz``) and of
  the model shipped to the tasks; batch N scores with the gain of the version after batch N-1.
* Each task returns its windows' sums (:meth:`ForecastGain.of`); the driver decays the version's
  sums by ``exp(-n / data.forecast_gain_windows)`` for the batch's n windows and adds the tasks'
  sums in key order (:meth:`ForecastGain.updated`): a function of the batch's rows and keys, so a
  replay agrees. ``data.forecast_gain_windows = 0`` turns the gain off: the model has no sums and
  its forecasts add the network's change as it is (as does a model saved without them).

Imports numpy only (the driver uses it without TensorFlow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PREFIX = "gain/"


@dataclass(frozen=True)
class ForecastGain:
    """Per forecast value: ``cross`` = sum(p * a) and ``power`` = sum(p * p), (C,) float64, over
    the ``windows`` scored windows (decayed), in the targets' own units."""

    cross: np.ndarray
    power: np.ndarray
    windows: float = 0.0

    @classmethod
    def empty(cls, outputs: int) -> ForecastGain:
        return cls(np.zeros(outputs), np.zeros(outputs))

    @classmethod
    def of(cls, predicted: np.ndarray, actual: np.ndarray) -> ForecastGain:
        """The sums over windows (N, C) of predicted and actual changes from the last value."""
        p, a = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
        return cls((p * a).sum(axis=0), (p * p).sum(axis=0), float(len(p)))

    def value(self) -> np.ndarray:
        """The gain per forecast value, (C,) in [0, 1]; 0 where nothing was scored yet."""
        safe = np.where(self.power > 0, self.power, 1.0)
        return np.where(self.power > 0, np.clip(self.cross / safe, 0.0, 1.0), 0.0)

    def updated(self, parts: Sequence[ForecastGain], memory: int) -> ForecastGain:
        """After a batch whose keys scored ``parts`` (key order): these sums decayed by
        ``exp(-n / memory)`` for the batch's n windows, plus the parts'."""
        n = sum(part.windows for part in parts)
        keep = math.exp(-n / memory)
        cross, power, windows = self.cross * keep, self.power * keep, self.windows * keep
        for part in parts:
            cross, power, windows = cross + part.cross, power + part.power, windows + part.windows
        return ForecastGain(cross, power, windows)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {PREFIX + "cross": self.cross, PREFIX + "power": self.power, PREFIX + "windows": np.array([self.windows])}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ForecastGain | None:
        """The sums in a model's named arrays, or None (a model saved without them)."""
        cross, power = arrays.get(PREFIX + "cross"), arrays.get(PREFIX + "power")
        if cross is None or power is None:
            return None
        if cross.shape != power.shape or cross.ndim != 1:
            raise ValueError(f"forecast gain sums of shapes {cross.shape} and {power.shape}: expected two (C,)")
        windows = float(np.asarray(arrays.get(PREFIX + "windows", [0.0])).reshape(-1)[0])
        return cls(np.asarray(cross, np.float64), np.asarray(power, np.float64), windows)
