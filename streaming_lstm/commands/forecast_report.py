"""The event mode's part of ``streaming-lstm report``: forecasts against what happened.

* :func:`error_chart`: the prequential MAE per batch with the naive last-value forecast's MAE on
  the same windows, and the skill (``1 - MAE / naive MAE``), from metrics.jsonl.
* :func:`forecast_chart` (``report --data FILE``): the newest model's one-step forecasts of the first
  target over the last ``last`` windows of a few entities of an event file, with the actual values
  and the naive forecast. Windows are formed as the trainer forms them (windows.py), so the chart
  shows what the model does with a window, not a replay of the stream's timing.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from producers.event_replay import read_events
from streaming_lstm.core.config import data_columns
from streaming_lstm.core.windows import EntityState, WindowSpec, advance, window_arrays
from streaming_lstm.storage.fs import join
from streaming_lstm.storage.metrics import BatchMetrics, forecast_fields
from streaming_lstm.storage.store import ModelStore


def error_chart(plt: Any, metrics: list[BatchMetrics], rows_seen: np.ndarray) -> Any:
    """A figure: MAE and naive MAE per batch (targets' units), and the cumulative skill."""
    mae = [m["prequential_mae"] for m in metrics]
    naive = [m["naive_mae"] for m in metrics]
    sums = np.cumsum([[m["prequential_abs_sum"], m["naive_abs_sum"]] for m in metrics], axis=0)
    skill = [forecast_fields(1, a, 0.0, n)["skill"] for a, n in sums]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    ax1.plot(rows_seen, mae, marker="o", ms=3, color="tab:blue", label="LSTM")
    ax1.plot(rows_seen, naive, marker="o", ms=3, color="tab:gray", label="naive (last value)")
    ax1.set_ylabel("prequential MAE")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax1.set_title("Test-then-train: every window forecast before the model learns from it")
    ax2.plot(rows_seen, skill, marker="o", ms=3, color="tab:green")
    ax2.axhline(0.0, color="black", lw=0.8)
    ax2.set_ylabel("skill so far (1 - MAE / naive)")
    ax2.set_xlabel("windows seen")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _entity_series(path: str, cfg: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each entity's (times, values) from an event file; rows that do not parse are left out."""
    d = cfg.data
    columns = list(data_columns(d))
    at = [columns.index(c) for c in d.event_values()]
    series: dict[str, tuple[list[float], list[list[float]]]] = {}
    for event in read_events(path, d):
        fields = next(csv.reader(io.StringIO(event.line)))
        try:
            values = [float(fields[i]) for i in at]
        except (ValueError, IndexError):
            continue
        times, rows = series.setdefault(event.entity, ([], []))
        times.append(event.time)
        rows.append(values)
    return {e: (np.array(t), np.array(v)) for e, (t, v) in series.items()}


def forecast_chart(plt: Any, checkpoint: str, data: str, *, entities: int = 3, last: int = 168) -> tuple[Any, dict[str, Any]]:
    """A figure of forecasts vs actual values for up to ``entities`` entities, and its figures."""
    from streaming_lstm.core import training

    saved = ModelStore.load_latest_or_raise(join(checkpoint, "model"))
    cfg = saved.config
    if cfg.data.task != "forecast":
        raise ValueError(f"report --data draws forecasts; the model in {checkpoint} classifies (data.task = {cfg.data.task!r})")
    T, F, H = cfg.model.timesteps, len(cfg.data.features), cfg.data.horizon
    spec = training.TrainSpec.from_app(cfg)
    picked = sorted(_entity_series(os.fspath(data), cfg).items())[:entities]
    if not picked:
        raise ValueError(f"{data}: no events to draw")
    fig, axes = plt.subplots(len(picked), 1, figsize=(10, 2.6 * len(picked)), squeeze=False)
    figures: dict[str, Any] = {}
    for ax, (entity, (times, values)) in zip(axes[:, 0], picked, strict=True):
        window = WindowSpec(T, 1, H)
        step = advance(EntityState(), times, values, window, None)
        w = step.windows[-last:]
        if not len(w):
            continue
        x, y, last_values = window_arrays(w, window, F, len(cfg.data.targets), cfg.data.known_positions())
        actual, naive = y[:, 0], last_values[:, 0]  # the first target, one step ahead
        pred = training.forecast(saved.weights, saved.norm, x, spec, gain=saved.served_gain())[:, 0]
        ends = step.window_end_times[-last:]
        hours = (ends - ends[0]) / 3600.0
        ax.plot(hours, actual, color="black", lw=1.2, label="actual")
        ax.plot(hours, pred, color="tab:blue", lw=1.0, label="LSTM forecast")
        ax.plot(hours, naive, color="tab:gray", lw=0.8, ls="--", label="naive (last value)")
        ax.set_title(f"{entity}: {cfg.data.targets[0]}, one step ahead")
        ax.set_ylabel(cfg.data.targets[0])
        ax.grid(alpha=0.3)
        mae, naive_mae = float(np.abs(pred - actual).mean()), float(np.abs(naive - actual).mean())
        figures[entity] = {"windows": len(w), "mae": mae, "naive_mae": naive_mae}
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("hours since the first window drawn")
    fig.tight_layout()
    return fig, figures


def saver(plt: Any, fs: Any, out_dir: str) -> Callable[[Any, str], None]:
    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        fs.write_atomic(join(out_dir, name), buf.getvalue())

    return save
