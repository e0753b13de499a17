"""The training plan built once per query: keying, routing and training are part of the streaming
query's own plan, so a micro-batch costs no Python planning; ``foreachBatch`` only collects the
tasks' results and applies them (handler.py).

Where a batch is planned per batch (handler.py's other path), the handler builds the keyed plan
from Python for every micro-batch and ships the model in a broadcast. Here the plan is built when
the query starts; Spark plans each micro-batch from it in the JVM. What differs per batch reaches
the tasks as a *ticket*, a Spark local property the handler sets before it runs the batch's job
(Spark hands local properties to every task of the jobs that thread starts):

* ``batch_id``, the key ``shift`` (seeds.key_shift; the parsing and keying tasks,
  :func:`parse_and_key`, add it as routing.keyed_sql does) and the local ``epochs`` (schedule.py);
* ``version``: the model version the batch trains from. Tasks read exactly that version from the
  model store (each Python worker caches the newest it read), which is the one the state holds
  while the batch runs: the state saves each version before its batch is committed (state.py), and
  a version that cannot be read fails the batch rather than training from another.

The tasks see the batch's rejected rows too (the batch is not read a second time): each comes
back as a result row of kind ``dead``, header rows as a count of kind ``headers``
(results.py), so the counts are exact under any retry (Spark delivers a job's result once).

Where the driver trains (``stream.train_in``; :func:`driver_may_train`, :func:`in_driver`), the
query's plan ends at the keyed rows (:func:`keyed_plan`): the handler collects them as Arrow and
runs :func:`result_rows` on the whole batch, the task groups side by side (executor.group_rows),
from the model it holds; or, for a batch it hands to the workers, adds :func:`training_stage`.
Every way trains the same rows in the same keys and order, to the same weights.

Where it applies: classic PySpark with a local master and a local checkpoint (Python workers read
the model files directly), row mode; with ``stream.train_in = driver`` any master and checkpoint
(no task reads the model). Spark Connect, event mode, other masters and checkpoints on HDFS or
object stores plan per batch (``stream.plan``, :func:`why_per_batch`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

from streaming_lstm.core.config import AppConfig, DataConfig
from streaming_lstm.core.results import DEAD, HEADERS, RESULT_SCHEMA, Fold, PartitionResult, blank_row, decode
from streaming_lstm.core.weights import LSTMConfig
from streaming_lstm.parse import arrow_parse
from streaming_lstm.parse.counts import BatchCounts, with_counts
from streaming_lstm.parse.rows import HEADER
from streaming_lstm.parse.spark_parse import POSITION, source_position
from streaming_lstm.spark import connect
from streaming_lstm.storage.fs import is_local
from streaming_lstm.storage.store import ModelStore
from streaming_lstm.trainer import executor
from streaming_lstm.trainer.routing import ORDER_BITS, ROUTE, to_tasks
from streaming_lstm.trainer.state import TrainerState

TICKET = "streaming_lstm.batch"  # the local property the handler sets for each batch's job
LETTER_SCHEMA = "batch_id int, reason string, raw binary, raw_length int"  # a dead letter as the tasks return it


@dataclass(frozen=True)
class Ticket:
    """What a batch's tasks learn from the handler (module docstring)."""

    batch_id: int
    version: int
    epochs: int
    shift: int

    def give(self, spark: SparkSession) -> None:
        """Attach the ticket to the jobs this thread starts from now on."""
        spark.sparkContext.setLocalProperty(TICKET, json.dumps(asdict(self)))

    @classmethod
    def taken(cls) -> Ticket:
        """The running task's ticket; a clear error outside a planned trainer's batch."""
        from pyspark import TaskContext

        ctx = TaskContext.get()
        text = ctx.getLocalProperty(TICKET) if ctx is not None else None
        if not text:
            raise RuntimeError(f"a planned training task ran without its batch's ticket (the Spark local property {TICKET})")
        return cls(**json.loads(text))


def why_per_batch(spark: SparkSession, cfg: AppConfig, checkpoint: str) -> str | None:
    """Why this run plans each batch in Python (``stream.plan``), or None: it plans once.

    ``auto`` plans once where the Python workers can read the model store themselves (a local
    master and checkpoint); ``once`` also on another master, for a checkpoint every executor sees
    at the same path (a shared mount)."""
    plan = cfg.stream.plan
    if plan == "batch":
        return "stream.plan = batch"
    why = None
    if connect.is_remote(spark):
        why = "Spark Connect runs the handler in the server"
    elif cfg.data.mode == "events":
        why = "event mode's windows come from Spark state"
    elif cfg.stream.train_in == "driver":
        pass  # no task reads the model store: any checkpoint and master will do
    elif not is_local(checkpoint):
        why = f"the checkpoint {checkpoint} is not a local path the Python workers can read"
    elif plan == "auto" and not (spark.sparkContext.master or "").startswith("local"):
        why = f"the master {spark.sparkContext.master} is not local (stream.plan = once asserts every executor reads the checkpoint)"
    if why and plan == "once":
        raise ValueError(f"stream.plan = once is not possible here: {why}; use stream.plan = auto or batch")
    return why


def driver_may_train(cfg: AppConfig, master: str, remote: bool) -> bool:
    """Whether this process may train a batch (``stream.train_in``): where the plan is built once
    (row mode, classic PySpark, not ``stream.plan = batch``), always for ``driver``; for
    ``auto`` on a local master, where the driver runs on the executors' cores."""
    if remote or cfg.data.mode != "rows" or cfg.stream.plan == "batch":
        return False
    return cfg.stream.train_in == "driver" or (cfg.stream.train_in == "auto" and master.startswith("local"))


def in_driver(cfg: AppConfig, last_meta: Mapping[str, Any], limit: int) -> bool:
    """Whether the driver trains the next batch: ``stream.train_in = driver``, or (``auto``) the
    batch before had at most ``limit`` valid rows (:func:`driver_row_limit`), as the saved model's
    metadata says (so a replayed batch goes where it went before). A first batch trains in the
    driver."""
    if cfg.stream.train_in == "driver":
        return True
    before = (last_meta.get("metrics") or {}).get("rows_valid", 0) if last_meta.get("source") == "stream" else 0
    return int(before) <= limit


KEYED_ROW_BYTES = 48  # a keyed row's Arrow bytes beside its float64 features: label, _idx, key, _route, offsets, validity


def driver_row_limit(cfg: AppConfig, max_result_bytes: int) -> int:
    """``stream.driver_rows``, or where it is 0, the valid rows whose keyed columns fill a quarter
    of ``max_result_bytes`` (Spark's ``spark.driver.maxResultSize``, 0 = no limit): the driver
    collects a batch it trains through Spark's result path, which fails a batch over that size;
    the quarter leaves room for the batch's rejected rows, which travel with their text."""
    if cfg.stream.driver_rows:
        return cfg.stream.driver_rows
    if max_result_bytes <= 0:
        return 2**62
    row = 8 * len(cfg.data.feature_columns()) + KEYED_ROW_BYTES
    return max(1, max_result_bytes // 4 // row)


def training_columns(cfg: AppConfig) -> list[str]:
    """The columns a training task reads: inputs, label, forecast targets and naive forecasts."""
    d = cfg.data
    return [*cfg.input_columns(), "label", *d.target_columns(), *d.naive_columns()]


def training_plan(source: DataFrame, cfg: AppConfig, routes: list[int], threads: int, model_dir: str) -> DataFrame:
    """The streaming plan from the source's rows to the tasks' result rows: :func:`keyed_plan`,
    then :func:`training_stage`."""
    return training_stage(keyed_plan(source, cfg, routes), cfg, routes, threads, model_dir)


def keyed_plan(source: DataFrame, cfg: AppConfig, routes: list[int]) -> DataFrame:
    """The source's rows parsed by rows.py's rules and keyed in one Python task per source
    partition (:func:`parse_and_key`), counted as the query's observed metrics (counts.with_counts).
    Where the driver trains (``stream.train_in``), this is the query's whole plan.

    Why the parse runs in Python here: Spark optimises and generates code for a micro-batch's whole
    plan anew every batch, and the rules as Spark SQL (spark_parse.py) are a large expression; the
    rows reach a Python task for keying anyway, where arrow_parse.py decides them in Arrow's
    kernels. What stays in the JVM is the source, the rows' bytes, their length in Spark's
    characters (for a dead letter's ``raw_length``) and their source position."""
    value = F.col("value")
    rows = source.select(value.cast("binary").alias("value"), F.length(value).alias(LENGTH), source_position(source).alias(POSITION))
    parsed = [StructField(n, DoubleType()) for n in cfg.data.feature_columns()]
    parsed += [StructField("label", IntegerType()), StructField("reason", StringType())]
    parsed += [StructField("raw", BinaryType()), StructField("raw_length", IntegerType())]
    schema = StructType(parsed + [StructField(n, t) for n, t in KEYED.items()])
    keying = functools.partial(parse_and_key, config_dict=cfg.to_dict(), partitions=cfg.stream.partitions, routes=routes)
    return with_counts(rows.mapInArrow(keying, schema))


def training_stage(keyed: DataFrame, cfg: AppConfig, routes: list[int], threads: int, model_dir: str) -> DataFrame:
    """Keyed rows routed to their task (routing.to_tasks) and trained by :func:`planned_batches`."""
    fn = functools.partial(planned_batches, config_dict=cfg.to_dict(), threads=threads, model_dir=model_dir)
    return to_tasks(keyed, routes).mapInArrow(fn, RESULT_SCHEMA)


LENGTH = "_length"  # a row's length in characters, as Spark's length() counts them
KEYED = {"_idx": LongType(), "key": IntegerType(), ROUTE: LongType()}  # what parse_and_key adds


def parse_and_key(batches: Iterator[pa.RecordBatch], *, config_dict: dict[str, Any], partitions: int, routes: list[int]) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` body that parses one source partition's rows (arrow_parse.verdicts) and
    keys them as routing.keyed_sql does (``monotonically_increasing_id``, which numbers rows there,
    is not allowed in a streaming plan): each row's features, ``label``, ``reason``, a rejected
    row's text as a dead letter keeps it (``raw``, ``raw_length``), its position in the partition
    (``_idx``), its ``key`` with the batch's shift and its ``_route``."""
    from pyspark import TaskContext

    data = executor.task_config(config_dict).data
    ticket = Ticket.taken()
    executor.maybe_fail(ticket.batch_id)  # the worker fault point: where the driver trains, this is the batch's Python task
    shift = ticket.shift
    ctx = TaskContext.get()
    spark_part = ctx.partitionId() if ctx is not None else 0
    seen = 0
    route_of = np.asarray(routes, np.int64)
    for batch in batches:
        position = np.arange(seen, seen + batch.num_rows, dtype=np.int64)
        seen += batch.num_rows
        kafka_part, offset = batch.column(POSITION).flatten()  # NULL where the source has no offsets
        part = pc.fill_null(kafka_part, spark_part).to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.where(offset.is_valid().to_numpy(zero_copy_only=False), pc.fill_null(offset, 0).to_numpy(zero_copy_only=False), position)
        unshifted = (position + part) % partitions
        keys = [
            (part << ORDER_BITS) + (order.astype(np.int64) & ((1 << ORDER_BITS) - 1)),
            ((unshifted + shift) % partitions).astype(np.int32),
            route_of[unshifted % len(routes)],
        ]
        columns = [*verdict_columns(batch.column("value"), batch.column(LENGTH), data), *(pa.array(a) for a in keys)]
        yield pa.RecordBatch.from_arrays(columns, names=[*data.feature_columns(), "label", "reason", "raw", "raw_length", *KEYED])


def verdict_columns(values: pa.Array, lengths: pa.Array, data: DataConfig) -> list[pa.Array]:
    """Rows' verdicts as the plan's columns: the features and ``label`` (NULL where rejected),
    ``reason``, and a dead letter's ``raw`` and ``raw_length`` (NULL on valid and header rows)."""
    v = arrow_parse.verdicts(values, data)
    valid = np.array([r is None for r in v.reason], bool)
    dead = [i for i, r in enumerate(v.reason) if r is not None and r != HEADER]
    raw: list[bytes | None] = [None] * len(v.reason)
    length: list[int | None] = [None] * len(v.reason)
    for i in dead:
        n = lengths[i].as_py()
        length[i] = n
        raw[i] = None if n is None else arrow_parse.spark_prefix(values[i].as_py(), n)
    features = [pa.array(v.x[:, j], mask=~valid) for j in range(v.x.shape[1])]
    return [*features, pa.array(v.label, pa.int32(), mask=~valid), pa.array(v.reason, pa.string()), pa.array(raw, pa.binary()), pa.array(length, pa.int32())]


_MODEL: dict[tuple[Any, ...], executor.TaskModel] = {}  # the newest model this Python worker read


def model_at(cfg: AppConfig, model_dir: str, version: int) -> executor.TaskModel:
    """Version ``version`` of the store at ``model_dir`` as a batch's starting model, cached by
    the version file's identity (a checkpoint removed and started again reuses version numbers)
    and the config (version 0 is the config's initial model)."""
    store = ModelStore(model_dir)
    json_path = store.paths(version)[1]
    stamp = os.stat(json_path).st_mtime_ns if version > 0 and os.path.exists(json_path) else None
    key = (model_dir, version, stamp, id(cfg))
    if key not in _MODEL:
        state = TrainerState.open(cfg, store, version)
        _MODEL.clear()
        _MODEL[key] = executor.start_model(state)
    return _MODEL[key]


_ARROW_TYPES = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "binary": pa.binary()}
RESULT_ARROW = pa.schema([(n, _ARROW_TYPES[t]) for n, t in (field.split() for field in RESULT_SCHEMA.split(", "))])


def planned_batches(batches: Iterator[pa.RecordBatch], *, config_dict: dict[str, Any], threads: int, model_dir: str) -> Iterator[pa.RecordBatch]:
    """The training stage's ``mapInArrow`` body: a task's rows, valid and rejected, in; its
    :func:`result_rows`, as one Arrow batch of :data:`RESULT_ARROW`, out.

    Why Arrow in and out rather than ``mapInPandas``: PySpark converts every frame a task yields
    column by column through pandas, which for one-row results of 20 columns cost more CPU than
    training a small batch; ``RecordBatch.from_pylist`` builds each result in one call."""
    entered = time.perf_counter()
    received = list(batches)
    if not received or not sum(b.num_rows for b in received):
        return
    cfg = executor.task_config(config_dict)
    ticket = Ticket.taken()
    executor.maybe_fail(ticket.batch_id)
    model = functools.partial(model_at, cfg, model_dir, ticket.version)
    rows = list(result_rows(pa.Table.from_batches(received), cfg, model, ticket, threads, entered))
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=RESULT_ARROW)  # one batch: a dead letter is a row


def result_rows(
    table: pa.Table, cfg: AppConfig, model: Callable[[], executor.TaskModel], ticket: Ticket, threads: int, entered: float
) -> Iterator[dict[str, Any]]:
    """Keyed rows (:func:`keyed_plan`'s columns), valid and rejected, trained from ``model()``
    (asked for only when there are valid rows): their rejected rows (kind ``dead``), header count
    (``headers``), and each key's result and each task group's fold (executor.group_rows), as
    result rows. A training task runs it on its keys; the driver (``stream.train_in``) on the
    whole batch, its task groups side by side."""
    frame = table.to_pandas()
    valid = frame["reason"].isna().to_numpy()
    yield from rejected_rows(frame.loc[~valid])
    rows = frame.loc[valid].reset_index(drop=True)
    if rows.empty:
        return
    yield from executor.group_rows(cfg, rows, model(), batch_id=ticket.batch_id, epochs=ticket.epochs, threads=threads, entered=entered)


def rejected_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A task's rejected rows as result rows: one count of header rows, one row per dead letter
    (in source order); event mode's tally rows never reach a planned task."""
    if frame.empty:
        return []
    headers = int((frame["reason"] == HEADER).sum())
    out = [blank_row(HEADERS, rows=headers)] if headers else []
    dead = frame.loc[frame["reason"] != HEADER].sort_values("_idx", kind="stable")
    texts = zip(dead["reason"], dead["raw"], dead["raw_length"], strict=True)
    return out + [blank_row(DEAD, rows=1, reason=r, raw=t, raw_length=None if pd.isna(n) else int(n)) for r, t, n in texts]


Letter = tuple[int, str, bytes | None, int | None]  # a row of LETTER_SCHEMA


def decode_planned(rows: list[Mapping[str, Any]], lstm: LSTMConfig, batch_id: int) -> tuple[list[PartitionResult], list[Fold], BatchCounts, list[Letter]]:
    """A planned batch's result rows: the keys' results and folds (results.decode), its exact
    counts, and its dead letters as rows of :data:`LETTER_SCHEMA`."""
    results, folds = decode(rows, lstm)
    dead = [r for r in rows if r["kind"] == DEAD]
    headers = sum(int(r["rows"]) for r in rows if r["kind"] == HEADERS)
    counts = BatchCounts(sum(r.rows for r in results), dict(Counter(r["reason"] for r in dead)), headers)
    letters = [(batch_id, r["reason"], r["raw"], r["raw_length"]) for r in dead]
    return results, folds, counts, letters


def dead_letter_frame(spark: SparkSession, letters: list[Letter]) -> DataFrame:
    """The tasks' dead letters with spark_parse.dead_letters' columns, the text a string again
    (Spark's own bytes, so the JSON written is what the per-batch plan writes)."""
    frame = spark.createDataFrame(letters, LETTER_SCHEMA)
    return frame.select("batch_id", "reason", F.col("raw").cast("string").alias("raw"), "raw_length")
