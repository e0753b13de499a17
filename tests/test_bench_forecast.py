"""``bench forecast``'s hindsight bound: the linear forecast it fits must find a linear structure
where there is one, and gain nothing over the last value where there is none."""

from __future__ import annotations

import numpy as np

from bench.forecast import hindsight_linear


def test_hindsight_linear_finds_changes_that_follow_the_last_change() -> None:
    rng = np.random.default_rng(0)
    change = [1.0]
    for _ in range(400):  # AR(1) changes, no noise after the first: a linear rule forecasts them
        change.append(0.6 * change[-1])
    values = np.cumsum(change).tolist()
    naive = float(np.abs(np.diff(values)[7:]).mean())
    assert hindsight_linear(values, [{} for _ in values], 8, 8) < 1e-3 * naive
    noisy = np.cumsum(rng.normal(size=400)).tolist()  # a random walk: nothing to learn
    other = [{"poll": v + float(rng.normal())} for v in noisy]  # a column whose gap says nothing
    naive = float(np.abs(np.diff(noisy)[7:]).mean())
    assert 0.9 * naive < hindsight_linear(noisy, other, 8, 8) <= naive


def test_hindsight_linear_reads_another_columns_gap() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(size=500)
    values = np.cumsum(0.5 * signal).tolist()  # y_i - y_{i-1} = 0.5 s_i
    # The lead column's gap to y at i - 1 is s_i: it tells the next change a step ahead.
    other = [{"lead": values[i] + float(signal[i + 1]) if i + 1 < len(signal) else values[i]} for i in range(len(values))]
    naive = float(np.abs(np.diff(values)[3:]).mean())
    assert hindsight_linear(values, other, 4, 4) < 0.05 * naive


def test_columns_known_at_the_point_are_read_there_by_the_bound_and_by_river() -> None:
    """A column that moves with y on the same point (the day's poll beside the average): the bound
    with ``known`` finds it, without it the column is a step late and tells nothing; River's
    SNARIMAX given the column as its exogenous x beats the same SNARIMAX without it."""
    from bench.forecast import KNOWN, river_models, run_river

    rng = np.random.default_rng(2)
    shock = rng.normal(size=400)
    values = np.cumsum(shock).tolist()  # a random walk
    poll = [{"poll": float(s)} for s in shock]  # the point's own change, known at its forecast
    naive = float(np.abs(np.diff(values)[3:]).mean())
    assert hindsight_linear(values, poll, 4, 4, known=True) < 0.05 * naive
    assert hindsight_linear(values, poll, 4, 4) > 0.9 * naive
    models = river_models(0, known=True)
    with_x = run_river(models["SNARIMAX(3,1,1)" + KNOWN], values, 4, poll)
    without = run_river(models["SNARIMAX(3,1,1)"], values, 4)
    assert with_x["fallbacks"] == 0 and with_x["mae"] < 0.5 * without["mae"], (with_x["mae"], without["mae"])
