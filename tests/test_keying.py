"""The keying of a micro-batch's rows to training partitions, as pure functions (keying.py)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_lstm.core.seeds import key_shift
from streaming_lstm.trainer.routing import key_of, order_of


def keyed(partitions_rows: list[tuple[int | None, list[int]]], spark_ids: list[int], partitions: int, shift: int) -> dict[int, tuple[int, int]]:
    """What the Spark expressions compute, per Spark partition of a batch: ``(Kafka partition or
    None, the offsets of its valid rows)``, numbered ``spark_ids`` by Spark. -> {order: (key, offset)}."""
    out: dict[int, tuple[int, int]] = {}
    for (kafka, offsets), pid in zip(partitions_rows, spark_ids, strict=True):
        part = kafka if kafka is not None else pid
        for position, offset in enumerate(offsets):
            out[order_of(part, offset if kafka is not None else None, position)] = (key_of(position, part, shift, partitions), offset)
    return out


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    partitions=st.integers(1, 16),
    batch_id=st.integers(0, 10_000),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_keys_are_balanced_within_the_source_partition_count_and_independent_of_spark_numbering(
    sizes: list[int], partitions: int, batch_id: int, seed: int, data: st.DataObject
) -> None:
    shift = key_shift(seed, batch_id, partitions)
    assert 0 <= shift < partitions
    # Kafka partitions with their valid rows' offsets (gaps where rows were rejected).
    batch: list[tuple[int | None, list[int]]] = [(p, sorted(data.draw(st.sets(st.integers(0, 10_000), min_size=n, max_size=n)))) for p, n in enumerate(sizes)]
    keys = keyed(batch, list(range(len(batch))), partitions, shift)
    total = sum(sizes)
    assert len(keys) == total, "every row has its own place in the order"
    per_key = Counter(k for k, _ in keys.values())
    if total:
        spread = max(per_key.values()) - min(per_key.get(k, 0) for k in range(partitions))
        assert spread <= len([n for n in sizes if n]), "sizes differ by at most the number of source partitions"
    # Spark numbers the connector's input partitions differently on a replay: the same keys, the same order.
    renumbered = keyed(batch, list(reversed(range(len(batch)))), partitions, shift)
    assert renumbered == keys
    # Within a Kafka partition the order is the offsets' order.
    for p, offsets in batch:
        assert [keys[order_of(p, o, 0)][1] for o in offsets] == offsets  # type: ignore[arg-type]


def test_rows_of_one_spark_partition_are_dealt_round_robin() -> None:
    # File sources: the part is Spark's partition id; 7 rows over 3 keys: 3, 2, 2 from the shift on.
    keys = keyed([(None, list(range(7)))], [0], 3, 1)
    assert [k for k, _ in sorted(keys.values(), key=lambda kv: kv[1])] == [1, 2, 0, 1, 2, 0, 1]


def test_the_shift_is_seeded_by_the_batch_id() -> None:
    shifts = {key_shift(42, b, 7) for b in range(50)}
    assert len(shifts) > 3, "no key always takes the remainder"
    assert key_shift(42, 3, 7) == key_shift(42, 3, 7)
