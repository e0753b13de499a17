"""Keying: which training partition (key) each valid row of a micro-batch goes to, and which
Spark task trains each key with how many TensorFlow threads (:func:`plan_tasks`).

Contract, for a batch of N valid rows and P keys, computed inside the training job itself (no
counting job before it):

* A row's *part* is its source partition: Kafka's partition number where the source has one,
  else Spark's partition id (file, socket and memory sources: their Spark partitions are already
  in a fixed order). Spark's own numbering of the connector's input partitions follows a map's
  iteration order and differs between a first run and a replay, so it is never used for Kafka.
* A row's *position* is its place among the rows of its Spark partition, rejected ones included
  (from ``monotonically_increasing_id``, numbered before rejected rows are set apart); a replayed
  Spark partition holds the same rows in the same order.
* Its key is ``(position + part + shift) mod P`` (:func:`key_of`), with a shift seeded by the batch
  id (:func:`~streaming_lstm.core.seeds.key_shift`): within one Spark partition of clean rows key
  sizes differ by at most one, so over a batch of S Spark partitions by at most S (each rejected
  row can widen that by one); no key always takes the remainder.
* Its order inside its key is ``_idx = part * 2**40 + (Kafka offset, else position) mod 2**40``
  (:func:`order_of`): a total order of the batch's rows that a replay reproduces (the training
  task sorts by it; the shuffle delivers blocks in no fixed order).
* Key k is trained in Spark task ``((k - shift) mod P) mod T``, routed there by a value that
  Spark's hash partitioning sends to that task (``routes``, see :func:`route_keys`). The task does
  not depend on the shift, so a plan built once per query (planned.py), which learns the shift in
  the task, sends every row where a plan built per batch does.
* Under Spark Connect, which has no broadcast variables, each of the T tasks also receives exactly
  one *model row* (``key`` = -1, ``_model`` = the global weights as ``.npz`` bytes): the weights
  travel with the data (connect.ship_model). Data rows then have ``_model`` NULL.

Keys come from a row's position within its source partition, so routing needs no counting job
of its own (a dense global index would cost a Spark job per batch).

The pure functions here are what the SQL expressions of :func:`keyed_sql` compute.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.threads import intra_op_threads, task_threads
from streaming_lstm.core.weights import LSTMConfig
from streaming_lstm.parse.spark_parse import POSITION
from streaming_lstm.spark import connect

LOCAL_BITS = 33  # monotonically_increasing_id() = (partition index << 33) + position in partition
ORDER_BITS = 40  # _idx = part << 40 | (offset or position) mod 2**40
ROUTE = "_route"  # the column repartition(T, _route) sends each row to its task by
MODEL = "_model"  # a model row's bytes; NULL on data rows. A model row's key is NULL too.


def key_of(position: int, part: int, shift: int, partitions: int) -> int:
    return (position + part + shift) % partitions


def order_of(part: int, offset: int | None, position: int) -> int:
    return (part << ORDER_BITS) + ((position if offset is None else offset) & ((1 << ORDER_BITS) - 1))


_MASK32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _mix_k1(k1: int) -> int:
    return (_rotl32((k1 * 0xCC9E2D51) & _MASK32, 15) * 0x1B873593) & _MASK32


def _mix_h1(h1: int, k1: int) -> int:
    return (_rotl32(h1 ^ k1, 13) * 5 + 0xE6546B64) & _MASK32


def spark_hash_long(value: int, seed: int = 42) -> int:
    """Spark's ``hash()`` of a long (``Murmur3_x86_32.hashLong`` with Spark's seed 42), as a
    signed 32-bit int: the low word, then the high word, then the finaliser with length 8."""
    h1 = _mix_h1(_mix_h1(seed, _mix_k1(value & _MASK32)), _mix_k1((value >> 32) & _MASK32))
    h1 ^= 8
    h1 = ((h1 ^ (h1 >> 16)) * 0x85EBCA6B) & _MASK32
    h1 = ((h1 ^ (h1 >> 13)) * 0xC2B2AE35) & _MASK32
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def route_keys(partitions: int) -> list[int]:
    """For each slot j < P a long value that ``repartition(P, col)`` sends to shuffle partition j.

    Spark's hash partitioning is ``pmod(murmur3(value), P)`` (``F.hash``, seed 42), computed here
    (:func:`spark_hash_long`) rather than by a Spark job: a cold session's first job costs more
    than a second. The smallest such value per slot; keys then never share a task.
    """
    found: dict[int, int] = {}
    value = 0
    while len(found) < partitions:
        found.setdefault(spark_hash_long(value) % partitions, value)
        value += 1
    return [found[j] for j in range(partitions)]


def route_of(routes: Sequence[int], slot: Column) -> Column:
    """The route value of task ``slot`` (0-based): a long, as :func:`route_keys` found it (an int
    literal would hash differently)."""
    return F.element_at(F.array(*[F.lit(r).cast("long") for r in routes]), slot.cast("int") + 1)


def to_tasks(rows: DataFrame, routes: Sequence[int]) -> DataFrame:
    """``rows`` moved to their tasks by ``_route``, which is then dropped."""
    return rows.repartition(len(routes), F.col(ROUTE)).drop(ROUTE)


def slots(spark: SparkSession, routes: Sequence[int]) -> DataFrame:
    """One row per task (``id``, ``_route``): what reaches every task once."""
    return spark.range(len(routes)).withColumn(ROUTE, route_of(routes, F.col("id")))


def model_rows(spark: SparkSession, routes: Sequence[int], model: bytes) -> DataFrame:
    """One row per task, ``_route`` and ``_model`` (the model's bytes): what a union before
    :func:`to_tasks` delivers to every task where there is no broadcast (training below, and
    scoring under Spark Connect)."""
    return slots(spark, routes).select(ROUTE, F.lit(bytearray(model)).alias(MODEL))


def keyed_rows(parsed: DataFrame, columns: Sequence[str], shift: int, partitions: int, routes: Sequence[int], model: bytes | None = None) -> DataFrame:
    """The valid rows of ``parsed`` (``reason`` NULL) as ``columns`` plus ``_idx`` (order within a
    key) and ``key``, repartitioned so each key's task gets it; with ``model``, plus one model row
    per task carrying it in ``_model`` (module docstring).

    ``parsed`` holds the batch's rows and their source position (``_pos``,
    spark_parse.source_position) and must not have been reshuffled since the batch was read.

    One SQL statement over the batch (:func:`keyed_sql`): the plan is built and analysed once, where
    the same plan from DataFrame calls costs a py4j round trip per column expression and an
    analysis per step, which is most of a small batch's planning time (docs/benchmarks.md).
    """
    spark = parsed.sparkSession
    # The batch as a query argument: a temporary view for the statement's analysis in classic
    # PySpark, a relation sent with the statement under Spark Connect.
    keyed = spark.sql(keyed_sql("{batch}", columns, shift, partitions, routes, repartition=model is None), batch=parsed)
    if model is None:
        return keyed
    shipped = model_rows(spark, routes, model).select(F.lit(None).cast("int").alias("key"), F.lit(-1).cast("long").alias("_idx"), ROUTE, MODEL)
    return to_tasks(keyed.withColumn(MODEL, F.lit(None).cast("binary")).unionByName(shipped, allowMissingColumns=True), routes)


def keyed_sql(
    batch: str, columns: Sequence[str], shift: int, partitions: int, routes: Sequence[int], *, repartition: bool, rejected: Sequence[str] = ()
) -> str:
    """:func:`keyed_rows`' statement over the relation ``batch``: :func:`key_of` and :func:`order_of` as SQL, each key routed
    to task ``(key - shift) mod P mod T`` (:func:`route_of`; the task of a key does not depend on
    the shift, so a plan built once routes as a plan built per batch does); ``repartition`` moves
    the rows there (Spark's ``REPARTITION(T, _route)`` hint: the hash partitioning of
    ``DataFrame.repartition``) and drops ``_route``, else the rows keep it for a union before
    :func:`to_tasks`.

    Rows are numbered before the rejected ones are dropped (a nondeterministic projection is never
    pushed below a filter), so a row's key is the same whether the rejected rows travel with the
    valid ones or not: with ``rejected`` (column names, e.g. ``reason``) they do, carrying those columns.
    """
    keep = [*columns, *rejected]
    cols = ", ".join(f"`{c}`" for c in keep)
    routes_sql = "array(" + ", ".join(f"CAST({r} AS BIGINT)" for r in routes) + ")"
    local, order = (1 << LOCAL_BITS) - 1, (1 << ORDER_BITS) - 1
    numbered = (
        f"SELECT {cols}, reason AS _reason, {POSITION}, monotonically_increasing_id() & {local} AS _position, "
        f"coalesce({POSITION}.p, CAST(spark_partition_id() AS BIGINT)) AS _part FROM {batch}"
    )
    rows = f"SELECT * FROM ({numbered})" + ("" if rejected else " WHERE _reason IS NULL")
    keyed = (
        f"SELECT {cols}, shiftleft(_part, {ORDER_BITS}) + (coalesce({POSITION}.o, _position) & {order}) AS _idx, "
        f"CAST(pmod(_position + _part + {shift}, {partitions}) AS INT) AS key, "
        f"CAST(pmod(pmod(_position + _part, {partitions}), {len(routes)}) AS INT) AS _slot FROM ({rows})"
    )
    routed = f"SELECT {cols}, _idx, key, element_at({routes_sql}, _slot + 1) AS {ROUTE} FROM ({keyed})"
    if not repartition:
        return routed
    return f"SELECT {cols}, _idx, key FROM (SELECT /*+ REPARTITION({len(routes)}, {ROUTE}) */ * FROM ({routed}))"


def with_model_rows(rows: DataFrame, routes: Sequence[int], model: bytes) -> DataFrame:
    """``rows`` kept together by input partition (partition i goes whole to task i mod T), plus one
    model row per task: scoring where there is no broadcast."""
    pick = route_of(routes, F.pmod(F.spark_partition_id(), F.lit(len(routes))))
    data = rows.withColumn(ROUTE, pick).withColumn(MODEL, F.lit(None).cast("binary"))
    return to_tasks(data.unionByName(model_rows(rows.sparkSession, routes, model), allowMissingColumns=True), routes)


def plan_tasks(spark: SparkSession, cfg: AppConfig) -> tuple[int, list[int], int]:
    """Spark tasks per batch, the route value of each (:func:`route_keys`) and TF threads per task
    (threads.task_threads: the tasks run side by side).

    Keys are the logical partitions; Spark tasks can each train several keys in turn. One task per
    core (by default) saves the fixed cost of a Python task per extra key, which at many keys on
    few cores is most of a warm batch (``python -m bench seed-table``).
    """
    return plan_tasks_for(cfg, connect.default_parallelism(spark))


def plan_tasks_for(cfg: AppConfig, cores: int) -> tuple[int, list[int], int]:
    """:func:`plan_tasks` on ``cores`` cores."""
    tasks = min(cfg.stream.partitions, cfg.stream.tasks or cores)
    threads = cfg.train.tf_threads or task_threads(LSTMConfig.from_app(cfg), cfg.train.batch_size, cores, tasks)
    return tasks, route_keys(tasks), threads


def driver_threads(cfg: AppConfig, cores: int) -> int:
    """TF intra-op threads of the driver where it trains (``stream.train_in``) on a master with
    ``cores`` cores: its task groups train side by side in threads of one process and share one
    pool, which gets every core where splitting pays (threads.intra_op_threads)."""
    return cfg.train.tf_threads or intra_op_threads(LSTMConfig.from_app(cfg), cfg.train.batch_size, cores)
