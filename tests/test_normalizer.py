import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_lstm.core.normalizer import NormStats


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_merging_partitions_equals_statistics_of_all_rows(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(5.0, 3.0, size=(n, 3)) for n in sizes]
    merged = NormStats.empty(3)
    for p in parts:
        merged = merged.merge(NormStats.of(p))
    everything = np.concatenate(parts) if sum(sizes) else np.zeros((0, 3))
    assert merged.count == len(everything)
    if len(everything):
        np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(merged.variance, everything.var(axis=0), rtol=1e-9, atol=1e-9)


def test_transform_is_identity_before_any_row_and_handles_constant_features() -> None:
    x = np.array([[1.0, 7.0], [3.0, 7.0]])
    np.testing.assert_array_equal(NormStats.empty(2).transform(x), x.astype(np.float32))
    z = NormStats.of(x).transform(x)
    np.testing.assert_allclose(z[:, 0], [-1.0, 1.0])
    np.testing.assert_allclose(z[:, 1], [0.0, 0.0])  # centred, not divided by zero


def test_arrays_round_trip_and_rejects_wrong_shape() -> None:
    s = NormStats.of(np.arange(12.0).reshape(4, 3))
    back = NormStats.from_arrays(s.to_arrays(), 3)
    assert back.count == 4
    np.testing.assert_array_equal(back.m2, s.m2)
    try:
        NormStats.from_arrays(s.to_arrays(), 4)
    except ValueError as exc:
        assert "shape" in str(exc)
    else:
        raise AssertionError("a shape mismatch must be rejected")
