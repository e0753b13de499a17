"""A seeded synthetic event stream: per-entity sines with noise and a regime change.

For tests and trying the event mode without a data set: ``entities`` sensors each report one
value every ``interval`` seconds (entity ``i`` offset by ``i`` seconds, so events interleave), a
sine with its own level, amplitude, period and phase plus Gaussian noise. At the fraction
``change_at`` of the stream every entity changes regime (amplitude x 1.5-2, period x 0.5-0.7): a
forecaster that adapts recovers, one that does not shows it in its error. Same seed, same events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Event:
    entity: str
    time: float  # seconds since the stream's start
    value: float


def sine_events(entities: int = 4, events: int = 300, *, seed: int = 0, noise: float = 0.1, change_at: float = 0.5, interval: float = 60.0) -> list[Event]:
    """``events`` events per entity, in event-time order across entities."""
    if entities < 1 or events < 1:
        raise ValueError(f"entities and events must be >= 1, got {entities} and {events}")
    if not 0.0 <= change_at <= 1.0:
        raise ValueError(f"change_at must be in [0, 1], got {change_at}")
    rng = np.random.default_rng(seed)
    change = round(change_at * events)
    out: list[Event] = []
    for i in range(entities):
        level, amp = rng.uniform(-2, 2), rng.uniform(0.5, 2.0)
        period, phase = rng.uniform(12, 48), rng.uniform(0, 2 * math.pi)  # in events
        amp2, period2 = amp * rng.uniform(1.5, 2.0), period * rng.uniform(0.5, 0.7)
        for k in range(events):
            a, p = (amp, period) if k < change else (amp2, period2)
            value = level + a * math.sin(2 * math.pi * k / p + phase) + rng.normal(0, noise)
            out.append(Event(f"e{i}", k * interval + i, float(value)))
    out.sort(key=lambda e: (e.time, e.entity))
    return out


def to_csv_lines(events: list[Event], header: bool = True) -> list[str]:
    """``entity,time,value`` lines (RFC 4180: no field here needs quoting)."""
    return (["entity,time,value"] if header else []) + [f"{e.entity},{e.time:g},{e.value:.6f}" for e in events]


# Configuration keys for a stream of :func:`to_csv_lines` rows: event mode, one value forecast per
# entity from its last 4 events, a small model, trigger 0. Tests and benchmarks add their own.
SINE_SETTINGS: dict[str, object] = {
    "data.mode": "events",
    "data.task": "forecast",
    "data.columns": ["entity", "time", "value"],
    "data.entity": "entity",
    "data.time": "time",
    "data.features": ["value"],
    "data.targets": ["value"],
    "data.allowed_lateness": "10m",
    "data.entity_ttl": "0s",
    "model.timesteps": 4,
    "model.features_per_step": 1,
    "model.hidden": [8],
    "stream.trigger": "0s",
    "train.warmup_rows": 0,
}
