"""Forecasting changes (``data.forecast_change``): what a forecast network reads of a window,
what it learns and what its output adds to, as plain numpy on raw windows (N, T*F), time-major.
Without the lever each is the identity: the window as it is, the targets themselves, 0.

The trainer's tasks (training.py), ``predict``, ``report --data`` and the exported SavedModel
(export.py, the same arithmetic in TensorFlow) use these, so all of them read a window alike.

Imports numpy only.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streaming_lstm.core.weights import LSTMConfig


class TrainSpec(Protocol):
    """What these functions read of a training.TrainSpec (a protocol: training imports this module)."""

    @property
    def model(self) -> LSTMConfig: ...

    @property
    def change_from(self) -> tuple[int, ...]: ...


def forecast_base(spec: TrainSpec, x_raw: np.ndarray) -> np.ndarray | float:
    """What the network's forecasts add to: each target's last value in the window (N, C) with
    ``data.forecast_change``, else 0 (the network forecasts the targets themselves)."""
    return np.asarray(x_raw, np.float64)[:, list(spec.change_from)] if spec.change_from else 0.0


def served(spec: TrainSpec, x_raw: np.ndarray, out: np.ndarray, gain: np.ndarray | None) -> np.ndarray:
    """The forecasts (N, C) from the network's outputs ``out`` in the targets' units: with
    ``data.forecast_change`` each target's last value plus ``gain`` (C,) times the network's change
    (gain.py; None: the change as it is), else ``out``."""
    if not spec.change_from:
        return out
    return forecast_base(spec, x_raw) + (out if gain is None else out * gain)


def window_inputs(spec: TrainSpec, x_raw: np.ndarray) -> np.ndarray:
    """What the network reads of raw windows ``x_raw`` (N, T*F), float64. With
    ``data.forecast_change`` each feature's earlier values become differences from its value at
    the window's last step (which stays as it is): the same information, in the terms the network
    forecasts in (a level series' recent changes are then inputs, not small differences between
    large normalised levels). Otherwise the window itself."""
    x = np.asarray(x_raw, np.float64)
    if not spec.change_from:
        return x
    f = spec.model.features_per_step
    last = x[:, -f:]  # (N, F): the last step's values
    return np.concatenate([x[:, :-f] - np.tile(last, spec.model.timesteps - 1), last], axis=1)


def forecast_columns(spec: TrainSpec, x_raw: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What a forecast model normalises and learns: the window's inputs (:func:`window_inputs`),
    then each target (or its change from the window's last value), (N, T*F + C)."""
    learned = np.asarray(y, np.float64) - forecast_base(spec, x_raw)  # (N, C)
    return np.concatenate([window_inputs(spec, x_raw), learned], axis=1)
