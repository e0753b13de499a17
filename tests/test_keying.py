"""The keying of a micro-batch's rows to training partitions, as pure functions (keying.py)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_lstm.keying import key_of, partition_offsets, partition_order
from streaming_lstm.seeds import key_shift


def index_rows(sizes: dict[int, int], positions: dict[int, tuple[int, int] | None], partitions: int, shift: int) -> dict[tuple[object, int], int]:
    """What the Spark expressions compute: (source position of a Spark partition, row) -> key."""
    counts = [{"pid": pid, "pos": positions[pid]} for pid in sizes]
    order = partition_order(counts)
    offsets = partition_offsets(order, sizes)
    return {(positions[pid] or pid, row): key_of(offsets[pid] + row, shift, partitions) for pid, n in sizes.items() for row in range(n)}


def test_partition_order_follows_the_source_not_sparks_partition_ids() -> None:
    # Spark's connector planned Kafka partition 2 as input partition 0 in one run, 0 in another.
    counts = [
        {"pid": 0, "pos": (2, 40)},
        {"pid": 1, "pos": (0, 17)},
        {"pid": 1, "pos": (0, 15)},  # a dead row of the same Spark partition, earlier offset
        {"pid": 2, "pos": (1, 3)},
    ]
    assert partition_order(counts) == [1, 2, 0]
    assert partition_order(list(reversed(counts))) == [1, 2, 0]
    # Sources without positions keep Spark's partition order.
    assert partition_order([{"pid": 3, "pos": None}, {"pid": 1, "pos": None}]) == [1, 3]


def test_offsets_are_dense_and_skip_partitions_without_valid_rows() -> None:
    assert partition_offsets([2, 0, 1], {0: 5, 1: 7, 2: 3}) == {2: 0, 0: 3, 1: 8}
    assert partition_offsets([0, 1, 2], {0: 5, 2: 3}) == {0: 0, 2: 5}
    assert partition_offsets([], {}) == {}


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    partitions=st.integers(1, 16),
    batch_id=st.integers(0, 10_000),
    seed=st.integers(0, 2**31),
)
def test_keys_are_balanced_within_one_row_and_independent_of_spark_numbering(sizes: list[int], partitions: int, batch_id: int, seed: int) -> None:
    shift = key_shift(seed, batch_id, partitions)
    assert 0 <= shift < partitions
    valid = {pid: n for pid, n in enumerate(sizes) if n}
    positions: dict[int, tuple[int, int] | None] = {pid: (pid, 100 * pid) for pid in valid}
    keys = index_rows(valid, positions, partitions, shift)
    total = sum(valid.values())
    per_key = Counter(keys.values())
    assert sum(per_key.values()) == total
    if total:
        assert max(per_key.values()) - min(per_key.get(k, 0) for k in range(partitions)) <= 1, "balanced within one row"
    # The same source partitions numbered differently by Spark key every row the same way.
    renumber = {pid: len(valid) - 1 - i for i, pid in enumerate(valid)}
    renumbered = index_rows({renumber[p]: n for p, n in valid.items()}, {renumber[p]: positions[p] for p in valid}, partitions, shift)
    assert renumbered == keys


def test_the_shift_is_seeded_by_the_batch_id() -> None:
    shifts = {key_shift(42, b, 7) for b in range(50)}
    assert len(shifts) > 3, "no key always takes the remainder"
    assert key_shift(42, 3, 7) == key_shift(42, 3, 7)
