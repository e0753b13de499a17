"""Window formation for event streams: one entity's events in, fixed-length windows out.

A pure function of (the entity's carried state, its new events, the spec, the watermark): no
Spark, no TF. The event mode's stateful operator (keyed by entity, state in the query's checkpoint)
is meant to call :func:`advance` once per entity and micro-batch and keep :class:`EntityState`.

Contract, for an entity whose events ``e_0, e_1, ...`` have been accepted so far (numbered in
event-time order), with ``L = timesteps + horizon``:

* A window is ``L`` consecutive accepted events ``e_{j-L+1} .. e_j``; it is formed once, in the
  micro-batch that brings ``e_j``, when ``j >= L - 1`` and ``(j - (L - 1)) % stride == 0``. The
  first ``timesteps`` events are the input; the last ``horizon`` the forecast targets (0 for
  classification: the label is the last event's).
* The carried state is the last ``L - 1`` accepted events, the count of accepted events and the
  latest accepted event time. It is all a window that spans micro-batches needs, so a window is
  formed exactly once however the events are split into batches, and a restart that restores the
  state (Spark's checkpoint) resumes where it stopped.
* A forecast window's input is its first ``timesteps`` events, except the columns known ahead
  (``data.known``: covariates of the forecast steps, known when forecasting): step ``s`` of the
  input reads them at event ``s + horizon``, so the last ``horizon`` steps hold the forecast
  steps' own values (:func:`window_arrays`). The naive forecast is the last input event's target.
* Forecast requests (prediction with columns known ahead, :func:`answer_requests`): an event
  whose targets are unknown asks for the forecast at its time. It is answered with the window of
  its entity's last ``timesteps`` accepted events before it plus itself, and never enters the
  entity's events; the same late and out-of-order rules apply to it.
* Late events: an event whose time is earlier than the watermark (the latest event time seen by
  the query minus ``data.allowed_lateness``, as Spark computes it) is rejected as ``late event``.
* Out-of-order events: within one micro-batch, events are sorted into place by time (ties keep
  their arrival order). An event earlier than the entity's latest accepted event from an earlier
  batch cannot be sorted into windows already formed: it is rejected as ``out of order`` (counted,
  dead-lettered), never silently dropped or used twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LATE = "late event"
OUT_OF_ORDER = "out of order"


@dataclass(frozen=True)
class WindowSpec:
    """The shape of a window: ``timesteps`` input events, ``horizon`` target events, every ``stride``."""

    timesteps: int
    stride: int = 1
    horizon: int = 0

    def __post_init__(self) -> None:
        for name in ("timesteps", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"window {name} must be >= 1, got {getattr(self, name)}")
        if self.horizon < 0:
            raise ValueError(f"window horizon must be >= 0, got {self.horizon}")

    @property
    def length(self) -> int:
        return self.timesteps + self.horizon


@dataclass
class EntityState:
    """What an entity carries between micro-batches (see the module contract)."""

    tail_times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (<= L-1,)
    tail_values: np.ndarray | None = None  # (<= L-1, V)
    accepted: int = 0  # events accepted so far
    last_time: float | None = None  # the latest accepted event time


@dataclass(frozen=True)
class Advance:
    """One entity's result for one micro-batch."""

    windows: np.ndarray  # (W, L, V) in event-time order of their last event
    window_end_times: np.ndarray  # (W,) the time of each window's last event
    rejected: list[tuple[int, str]]  # (position in the batch's input, reason)
    state: EntityState


def advance(state: EntityState, times: np.ndarray, values: np.ndarray, spec: WindowSpec, watermark: float | None) -> Advance:
    """Accept an entity's new events (``times`` (n,), ``values`` (n, V), in arrival order) and form
    the windows they complete. ``watermark`` None: nothing is late yet (the query's first batch)."""
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64).reshape(len(times), -1)
    rejected: list[tuple[int, str]] = []
    keep = np.ones(len(times), bool)
    for i, t in enumerate(times):
        if watermark is not None and t < watermark:
            rejected.append((i, LATE))
            keep[i] = False
        elif state.last_time is not None and t < state.last_time:
            rejected.append((i, OUT_OF_ORDER))
            keep[i] = False
    order = np.flatnonzero(keep)[np.argsort(times[keep], kind="stable")]  # sorted into place
    new_t, new_v = times[order], values[order]
    width = values.shape[1]
    tail_v = state.tail_values if state.tail_values is not None else np.zeros((0, width))
    if tail_v.shape[1] != width:
        raise ValueError(f"events have {width} values, the entity's state holds {tail_v.shape[1]}")
    seq_t = np.concatenate([state.tail_times, new_t])
    seq_v = np.concatenate([tail_v, new_v])
    first = state.accepted - len(state.tail_times)  # the event number of seq[0]
    L = spec.length
    ends = [k for k in range(len(state.tail_times), len(seq_t)) if (j := first + k) >= L - 1 and (j - (L - 1)) % spec.stride == 0]
    windows = np.stack([seq_v[k - L + 1 : k + 1] for k in ends]) if ends else np.zeros((0, L, width))
    cut = max(len(seq_t) - (L - 1), 0)  # keep the last L - 1 events (all, while fewer)
    new_state = EntityState(
        tail_times=seq_t[cut:],
        tail_values=seq_v[cut:],
        accepted=state.accepted + len(new_t),
        last_time=float(new_t[-1]) if len(new_t) else state.last_time,
    )
    return Advance(windows, seq_t[ends] if ends else np.zeros(0), rejected, new_state)


def too_few_reason(timesteps: int) -> str:
    return f"forecast request before {timesteps} events"


@dataclass(frozen=True)
class Answers:
    """One entity's forecast requests answered for one micro-batch (:func:`answer_requests`)."""

    windows: np.ndarray  # (W, timesteps + 1, V): the last timesteps events, then the request
    window_end_times: np.ndarray  # (W,) each request's time
    rejected: list[tuple[int, str]]  # (position in the batch's input, reason)
    accepted: int  # events (not requests) accepted into the entity's state
    state: EntityState


def answer_requests(state: EntityState, times: np.ndarray, values: np.ndarray, requests: np.ndarray, spec: WindowSpec, watermark: float | None) -> Answers:
    """Events and forecast requests (``requests`` (n,) True) of one entity in arrival order: the
    events advance the state (``spec.horizon`` 1, so it keeps ``timesteps`` events), each request
    is answered by the window its time closes (module contract), all in time order."""
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64).reshape(len(times), -1)
    T = spec.timesteps
    windows: list[np.ndarray] = []
    ends: list[float] = []
    rejected: list[tuple[int, str]] = []
    accepted = 0
    run: list[int] = []  # events (not requests) in time order since the last request

    def flush(state: EntityState) -> EntityState:
        nonlocal accepted
        if not run:
            return state
        step = advance(state, times[run], values[run], spec, watermark)
        rejected.extend((run[i], why) for i, why in step.rejected)
        accepted += len(run) - len(step.rejected)
        run.clear()
        return step.state

    for i in np.argsort(times, kind="stable").tolist():
        if not requests[i]:
            run.append(i)
            continue
        state = flush(state)
        t = times[i]
        if watermark is not None and t < watermark:
            rejected.append((i, LATE))
        elif state.last_time is not None and t < state.last_time:
            rejected.append((i, OUT_OF_ORDER))
        elif state.tail_values is None or len(state.tail_times) < T:
            rejected.append((i, too_few_reason(T)))
        else:
            windows.append(np.concatenate([state.tail_values[-T:], values[i : i + 1]]))
            ends.append(float(t))
    state = flush(state)
    width = values.shape[1]
    stacked = np.stack(windows) if windows else np.zeros((0, T + 1, width))
    return Answers(stacked, np.asarray(ends, np.float64), sorted(rejected), accepted, state)


def window_arrays(windows: np.ndarray, spec: WindowSpec, features: int, targets: int, known: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast windows (W, L, V) as the model's rows: inputs (W, T*F) time-major with the
    ``known`` feature positions read ``horizon`` events ahead (module contract), the targets of
    the ``horizon`` events after the input (W, horizon*targets), horizon-major, and the naive
    last-value forecast of each (W, horizon*targets)."""
    T, H, n = spec.timesteps, spec.horizon, len(windows)
    x = windows[:, :T, :features]  # (W, T, F)
    if known:
        x = x.copy()  # a view of the windows until here
        x[:, :, known] = windows[:, H : T + H, known]  # the covariates of events s + H
    y = windows[:, T:, features : features + targets].reshape(n, H * targets)
    naive = np.tile(windows[:, T - 1, features : features + targets], (1, H))
    return x.reshape(n, T * features), y, naive
