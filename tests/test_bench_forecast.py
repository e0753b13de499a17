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
