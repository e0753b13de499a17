"""Window formation per entity (windows.py): the same windows however events are split into
micro-batches, stride and horizon, sorting within a batch, late and out-of-order events rejected."""

from __future__ import annotations

import numpy as np
import pytest

from streaming_lstm.core.windows import LATE, OUT_OF_ORDER, EntityState, WindowSpec, advance, window_arrays


def run(times: np.ndarray, values: np.ndarray, spec: WindowSpec, cuts: list[int]) -> tuple[np.ndarray, EntityState]:
    state, out = EntityState(), []
    for a, b in zip([0, *cuts], [*cuts, len(times)], strict=True):
        r = advance(state, times[a:b], values[a:b], spec, watermark=None)
        assert not r.rejected
        out.append(r.windows)
        state = r.state
    return np.concatenate(out), state


@pytest.mark.parametrize(("timesteps", "stride", "horizon"), [(4, 1, 0), (3, 2, 0), (5, 3, 2), (1, 1, 0), (2, 1, 1)])
def test_windows_are_formed_once_however_the_events_are_split_into_batches(timesteps: int, stride: int, horizon: int) -> None:
    rng = np.random.default_rng(timesteps * 10 + stride)
    n = 47
    times = np.arange(n, dtype=float)
    values = np.stack([times, rng.normal(size=n)], axis=1)  # column 0 = the event number
    spec = WindowSpec(timesteps, stride, horizon)
    whole, state = run(times, values, spec, [])
    L = timesteps + horizon
    ends = [j for j in range(L - 1, n) if (j - (L - 1)) % stride == 0]
    assert len(whole) == len(ends) == (n - L) // stride + 1
    for w, end in zip(whole, ends, strict=True):
        np.testing.assert_array_equal(w[:, 0], np.arange(end - L + 1, end + 1))  # L consecutive events
    assert state.accepted == n and len(state.tail_times) == L - 1
    for seed in range(5):
        cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, n), size=6, replace=False).tolist())
        split, _ = run(times, values, spec, cuts)
        np.testing.assert_array_equal(split, whole)
    one_by_one, _ = run(times, values, spec, list(range(1, n)))
    np.testing.assert_array_equal(one_by_one, whole)


def test_events_out_of_order_within_a_batch_are_sorted_into_place() -> None:
    spec = WindowSpec(3)
    times = np.array([2.0, 0.0, 1.0, 4.0, 3.0])
    r = advance(EntityState(), times, times[:, None] * 10, spec, watermark=None)
    assert not r.rejected
    np.testing.assert_array_equal(r.windows[:, :, 0], [[0, 10, 20], [10, 20, 30], [20, 30, 40]])
    np.testing.assert_array_equal(r.window_end_times, [2, 3, 4])


def test_late_and_cross_batch_out_of_order_events_are_rejected_with_their_reason() -> None:
    spec = WindowSpec(2)
    first = advance(EntityState(), np.array([10.0, 11.0, 12.0]), np.array([[1.0], [2.0], [3.0]]), spec, watermark=None)
    assert len(first.windows) == 2 and first.state.last_time == 12.0
    # 5.0 is behind the watermark (late); 11.5 is within it but before the entity's 12.0 (out of order).
    second = advance(first.state, np.array([13.0, 5.0, 11.5, 14.0]), np.array([[4.0], [9.0], [9.0], [5.0]]), spec, watermark=8.0)
    assert second.rejected == [(1, LATE), (2, OUT_OF_ORDER)]
    np.testing.assert_array_equal(second.windows[:, :, 0], [[3, 4], [4, 5]])  # nothing rejected used
    assert second.state.accepted == 5 and second.state.last_time == 14.0
    tie = advance(second.state, np.array([14.0]), np.array([[6.0]]), spec, watermark=8.0)
    assert not tie.rejected and tie.windows[:, :, 0].tolist() == [[5, 6]], "an equal time is not out of order"


def test_a_bad_spec_or_a_changed_event_width_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="timesteps"):
        WindowSpec(0)
    with pytest.raises(ValueError, match="stride"):
        WindowSpec(3, stride=0)
    with pytest.raises(ValueError, match="horizon"):
        WindowSpec(3, horizon=-1)
    state = advance(EntityState(), np.array([0.0, 1.0]), np.zeros((2, 3)), WindowSpec(3), None).state
    with pytest.raises(ValueError, match=r"2 values.*holds 3"):
        advance(state, np.array([2.0]), np.zeros((1, 2)), WindowSpec(3), None)


def test_synthetic_events_are_seeded_interleaved_and_change_regime() -> None:
    from streaming_lstm.testing.event_synth import sine_events, to_csv_lines

    events = sine_events(entities=3, events=200, seed=4)
    assert events == sine_events(entities=3, events=200, seed=4) and events != sine_events(entities=3, events=200, seed=5)
    assert len(events) == 600 and [e.time for e in events] == sorted(e.time for e in events)
    assert [e.entity for e in events[:6]] == ["e0", "e1", "e2"] * 2, "entities interleave"
    for name in ("e0", "e1", "e2"):
        v = np.array([e.value for e in events if e.entity == name])
        before, after = np.abs(np.diff(v[:100])).mean(), np.abs(np.diff(v[100:])).mean()
        assert after > 1.5 * before, f"{name}: the regime change makes the series move faster ({before:.3f} -> {after:.3f})"
    lines = to_csv_lines(events[:2])
    assert lines[0] == "entity,time,value" and lines[1].startswith("e0,0,")
    with pytest.raises(ValueError, match="change_at"):
        sine_events(change_at=1.5)


@pytest.mark.parametrize("horizon", [1, 3])
def test_columns_known_ahead_are_read_at_the_forecast_steps(horizon: int) -> None:
    """data.known: step s of a window's input holds the known column at event s + horizon, so the
    forecast steps' own values are among the inputs; the other features, the targets and the naive
    forecast are those of the plain window."""
    T, n = 4, 12
    times = np.arange(n, dtype=float)
    values = np.stack([100 + times, 200 + times, 300 + times], axis=1)  # features (a, k), then target copy of a
    spec = WindowSpec(T, 1, horizon)
    windows = advance(EntityState(), times, values, spec, watermark=None).windows
    x, y, naive = window_arrays(windows, spec, features=2, targets=1, known=[1])
    plain_x, plain_y, plain_naive = window_arrays(windows, spec, features=2, targets=1, known=[])
    for w in range(len(windows)):  # window w starts at event w
        steps = x[w].reshape(T, 2)
        np.testing.assert_array_equal(steps[:, 0], 100 + w + np.arange(T))  # a: events w .. w+T-1
        np.testing.assert_array_equal(steps[:, 1], 200 + w + horizon + np.arange(T))  # k: events w+h .. w+T-1+h
        np.testing.assert_array_equal(y[w], 300 + w + T + np.arange(horizon))  # the targets after the input
        np.testing.assert_array_equal(naive[w], np.full(horizon, 300 + w + T - 1))
    np.testing.assert_array_equal(plain_x.reshape(-1, T, 2)[:, :, 1], windows[:, :T, 1])
    np.testing.assert_array_equal((plain_y, plain_naive), (y, naive))


def test_forecast_requests_are_answered_from_the_events_before_them_and_never_kept() -> None:
    """Prediction with columns known ahead: a request (targets unknown) at time t is answered by
    the entity's last T events before t plus the request itself, in time order within a batch and
    across batches; it never becomes one of the entity's events. Too early, late or out-of-order
    requests are rejected with their reason."""
    from streaming_lstm.core.windows import answer_requests, too_few_reason

    spec = WindowSpec(3, 1, 1)  # keeps the last 3 events
    nan = float("nan")

    def ev(t: float, request: bool = False) -> tuple[float, list[float], bool]:
        return t, [t * 10, nan if request else t], request  # (feature, target)

    first = [ev(1), ev(2, True), ev(3), ev(5), ev(4), ev(6, True), ev(7)]  # arrival order; 5 before 4
    t, v, r = (np.array(x) for x in zip(*first, strict=True))
    a = answer_requests(EntityState(), t, np.stack(v), r, spec, watermark=None)
    assert a.rejected == [(1, too_few_reason(3))] and a.accepted == 5
    assert a.window_end_times.tolist() == [6.0]
    np.testing.assert_array_equal(a.windows[0][:, 0], [30, 40, 50, 60])  # events 3, 4, 5, then the request
    assert np.isnan(a.windows[0][-1, 1])
    assert a.state.tail_times.tolist() == [4.0, 5.0, 7.0] and a.state.last_time == 7.0  # the request at 6 is not kept
    later = [ev(6.5, True), ev(8, True), ev(3.5, True)]
    t, v, r = (np.array(x) for x in zip(*later, strict=True))
    b = answer_requests(a.state, t, np.stack(v), r, spec, watermark=4.0)
    assert sorted(b.rejected) == [(0, OUT_OF_ORDER), (2, LATE)] and b.accepted == 0
    np.testing.assert_array_equal(b.windows[0][:, 0], [40, 50, 70, 80])
    assert b.state.accepted == a.state.accepted
