"""Keying: which training partition (key) each valid row of a micro-batch goes to.

Contract, for a batch of N valid rows and P keys:

* Every valid row gets a dense global index 0..N-1: the Spark partitions of the batch are put in
  source order (:func:`partition_order`: Kafka's (partition, offset), else Spark's partition id)
  and a row's index is its partition's offset (:func:`partition_offsets`) plus its position in it.
  The index depends on the batch's content and source positions only, not on how Spark numbered
  its input partitions, so a replayed batch indexes every row the same way.
* A row's key is ``(index + shift) mod P`` (:func:`key_of`), with a shift seeded by the batch id
  (:func:`~streaming_lstm.seeds.key_shift`): key sizes differ by at most one, and no key always
  takes the remainder.
* Key k is trained in Spark task ``k mod T``, routed there by a value that Spark's hash
  partitioning sends to that task (``routes``, see stream_trainer.route_keys).
* Under Spark Connect, which has no broadcast variables, each of the T tasks also receives exactly
  one *model row* (``key`` = -1, ``_model`` = the global weights as ``.npz`` bytes): the weights
  travel with the data (connect.ship_model). Data rows then have ``_model`` NULL.

The pure functions here are what the Spark column expressions in :func:`keyed_rows` compute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

LOCAL_BITS = 33  # monotonically_increasing_id() = (partition index << 33) + position in partition
MODEL_KEY = -1  # the key of the model rows (data keys are 0..P-1)


def partition_order(counts: Iterable[Mapping[str, Any]]) -> list[int]:
    """A batch's Spark partition ids in source order: by the smallest source position of their rows
    (Kafka's (partition, offset), see :func:`~streaming_lstm.spark_parse.source_position`), then by
    id. ``counts`` are rows with ``pid`` and ``pos`` (a ``(p, o)`` pair or None)."""
    first: dict[int, tuple[int, ...] | None] = {}
    for r in counts:
        pid = int(r["pid"])
        pos = tuple(r["pos"]) if r["pos"] is not None else None
        known = first.get(pid)
        if pid not in first or (pos is not None and (known is None or pos < known)):
            first[pid] = pos
    return sorted(first, key=lambda pid: (first[pid] is None, first[pid] or (), pid))


def partition_offsets(order: Sequence[int], valid_by_pid: Mapping[int, int]) -> dict[int, int]:
    """The global index of each Spark partition's first valid row, partitions taken in ``order``."""
    offsets: dict[int, int] = {}
    running = 0
    for pid in order:
        if pid in valid_by_pid:
            offsets[pid] = running
            running += valid_by_pid[pid]
    return offsets


def key_of(index: int, shift: int, partitions: int) -> int:
    return (index + shift) % partitions


def keyed_rows(valid: DataFrame, offsets: Mapping[int, int], shift: int, partitions: int, routes: Sequence[int], model: bytes | None = None) -> DataFrame:
    """``valid`` with ``_idx`` (global index) and ``key``, repartitioned so each key's task gets it;
    with ``model``, plus one model row per task carrying it in ``_model`` (module docstring).

    ``valid`` must not have been reshuffled since the batch was read (its Spark partition ids and
    row positions are the ones ``offsets`` was computed from).
    """
    tasks = len(routes)
    offset_map = F.create_map(*[x for pid, off in offsets.items() for x in (F.lit(pid), F.lit(off).cast("long"))])
    mid = F.monotonically_increasing_id()
    with_mid = valid.withColumn("_mid", mid)
    position = F.col("_mid").bitwiseAND((1 << LOCAL_BITS) - 1)
    index = F.element_at(offset_map, F.shiftright(F.col("_mid"), LOCAL_BITS).cast("int")) + position
    key = F.pmod(F.col("_idx") + F.lit(shift), F.lit(partitions)).cast("int")
    task = F.pmod(F.col("key"), F.lit(tasks)) + 1  # key k runs in task k mod T
    route = F.element_at(F.array(*[F.lit(r).cast("long") for r in routes]), task)
    keyed = with_mid.withColumn("_idx", index).withColumn("key", key).withColumn("_route", route)
    if model is None:
        return keyed.repartition(tasks, F.col("_route")).drop("_route", "_mid")
    slots = model_rows(valid.sparkSession, routes, model).select(F.lit(MODEL_KEY).alias("key"), F.lit(-1).cast("long").alias("_idx"), "_route", "_model")
    both = keyed.withColumn("_model", F.lit(None).cast("binary")).unionByName(slots, allowMissingColumns=True)
    return both.repartition(tasks, F.col("_route")).drop("_route", "_mid")


def model_rows(spark: SparkSession, routes: Sequence[int], model: bytes) -> DataFrame:
    """One row per task, ``_route`` (its route value) and ``_model`` (the model's bytes): what a
    union before ``repartition(T, _route)`` delivers to every task where there is no broadcast
    (training above, and predictor.py under Spark Connect)."""
    route = F.element_at(F.array(*[F.lit(r).cast("long") for r in routes]), F.col("id").cast("int") + 1)
    return spark.range(len(routes)).select(route.alias("_route"), F.lit(bytearray(model)).alias("_model"))
