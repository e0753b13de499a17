"""Windows per entity inside the streaming query: Spark's ``transformWithStateInPandas`` keyed by
entity, with each entity's recent events in the query's state store (so in its checkpoint).

Contract, for the micro-batch with id N of an event-mode query:

* Every event of the batch that events.py accepts goes to its entity's :class:`WindowProcessor`,
  which calls windows.py's :func:`~streaming_lstm.core.windows.advance` with the entity's carried state
  and Spark's current event-time watermark (the largest event time of the earlier batches minus
  ``data.allowed_lateness``). A window is formed exactly once, in the batch that brings its last
  event (windows.py's contract), and the state is saved in the same batch's state-store version:
  a replayed batch N starts from version N-1 again and forms the same windows, a committed batch
  is never formed twice, and a restart resumes every entity where it stopped.
* Late events (older than the watermark) and events older than their entity's latest accepted
  event from an earlier batch are dead letters (``late event``, ``out of order``); events out of
  order within a batch are sorted into place (windows.py).
* Rows events.py rejected pass through as dead letters with their reason; each entity that
  accepted events in the batch also sends one *tally row* (reason ``events accepted``, ``events``
  = how many), so the trainer can account for every event: in, accepted or dead.
* Idle entities: when ``data.entity_ttl`` > 0 an event-time timer at (latest event + ttl) drops
  the entity's state once the watermark passes it. It is event time, not Spark's processing-time
  state TTL (which transformWithState allows only in processing-time mode): a replay of the
  same events then expires the same entities, so the windows stay deterministic.

Why the watermark column is dropped before the operator: Spark drops input rows older than the
watermark in a stateful operator whose input carries the watermark column, silently apart from a
counter; without that column every event reaches the processor, which dead-letters late ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.streaming.stateful_processor import ExpiredTimerInfo, TimerValues

from streaming_lstm.core.config import AppConfig, parse_duration
from streaming_lstm.core.windows import Advance, Answers, EntityState, WindowSpec, advance, answer_requests, window_arrays
from streaming_lstm.parse.rows import ACCEPTED
from streaming_lstm.parse.spark_parse import POSITION
from streaming_lstm.spark.connect import default_parallelism
from streaming_lstm.spark.session import setting

STATE_SCHEMA = "times array<double>, vals array<double>, width int, accepted long, last double"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def output_schema(cfg: AppConfig, *, predict: bool = False) -> str:
    """What the operator emits: windows (``reason`` NULL), dead events and tally rows. ``predict``:
    windows of inputs only (the last ``timesteps`` events, forecasting what comes next)."""
    d = cfg.data
    inputs = [f"{c} double" for c in cfg.input_columns()]
    extra = [] if predict else [f"{c} double" for c in (*d.target_columns(), *d.naive_columns())]
    return ", ".join(["value string", "reason string", "entity string", "end_time double", "events long", *inputs, "label int", *extra])


class WindowProcessor(StatefulProcessor):
    """One entity's events in, its windows out (module contract). Picklable: plain settings only."""

    def __init__(
        self,
        columns: list[tuple[str, str]],
        timesteps: int,
        features: int,
        horizon: int,
        stride: int,
        forecast: bool,
        targets: int,
        ttl_seconds: float,
        known: tuple[int, ...] = (),
        requests: bool = False,
    ) -> None:
        self.columns = columns  # the output schema's (name, type), in order
        self.known = list(known)  # feature positions read `horizon` events ahead (data.known)
        self.requests = requests  # predict with data.known: answer forecast requests (windows.answer_requests)
        self.spec = WindowSpec(timesteps, stride, 1 if requests else horizon if forecast else 0)
        self.features, self.forecast, self.targets, self.ttl = features, forecast, targets, ttl_seconds

    def _frame(self, values: dict[str, Any]) -> pd.DataFrame:
        """Every output column present (Spark matches them by name), each with its schema's dtype
        (Arrow refuses a column whose pandas dtype does not fit), the absent ones NULL."""
        frame = pd.DataFrame(values)
        n = len(frame)
        out = {}
        for name, kind in self.columns:
            column = frame[name] if name in frame.columns else pd.Series([None] * n)
            dtype: Any = {"string": object, "double": "float64"}.get(kind, "Int64")
            out[name] = column.reset_index(drop=True).astype(dtype)
        return pd.DataFrame(out)

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.state = handle.getValueState("entity", STATE_SCHEMA)

    def _load(self) -> EntityState:
        if not self.state.exists():
            return EntityState()
        times, vals, width, accepted, last = self.state.get() or ((), (), 0, 0, None)
        t = np.asarray(times, np.float64)
        return EntityState(t, np.asarray(vals, np.float64).reshape(len(t), width), int(accepted), last)

    def _save(self, s: EntityState, width: int) -> None:
        vals = s.tail_values if s.tail_values is not None else np.zeros((0, width))
        self.state.update((s.tail_times.tolist(), vals.ravel().tolist(), width, s.accepted, s.last_time))

    def _rows(self, key: str, windows: np.ndarray, ends: np.ndarray) -> dict[str, Any]:
        """Window rows: inputs flattened time-major, label or targets and naive forecasts."""
        T, F, n = self.spec.timesteps, self.features, len(windows)
        out: dict[str, Any] = {"entity": [key] * n, "end_time": ends.tolist()}
        x, y, naive = window_arrays(windows, self.spec, F, self.targets if self.forecast else 0, self.known)
        for i in range(T * F):
            out[f"f{i}"] = x[:, i]
        for i in range(y.shape[1]):  # none in predict (horizon 0) and classification
            out[f"y{i}"], out[f"n{i}"] = y[:, i], naive[:, i]
        out["label"] = [0] * n if self.forecast else windows[:, T - 1, F].astype(np.int32)
        return out

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame] | Iterator[Any], timerValues: TimerValues) -> Iterator[pd.DataFrame]:  # noqa: N802 (Spark's name)
        frame = pd.concat(list(rows), ignore_index=True)
        entity = str(key[0])
        dead = frame[frame["reason"].notna()]
        if len(dead):
            yield self._frame({"value": dead["value"], "reason": dead["reason"], "entity": dead["entity"]})
        ok = frame[frame["reason"].isna()].reset_index(drop=True)
        if ok.empty:
            return
        width = sum(1 for c in ok.columns if c.startswith("v") and c[1:].isdigit())
        watermark_ms = timerValues.getCurrentWatermarkInMs()
        watermark = watermark_ms / 1000.0 if watermark_ms > 0 else None  # 0: no watermark yet (first batch)
        times, values = ok["t"].to_numpy(np.float64), ok[[f"v{i}" for i in range(width)]].to_numpy(np.float64)
        step: Advance | Answers
        if self.requests:  # predict with data.known: events whose targets are NaN ask for forecasts
            asked = np.isnan(values[:, self.features : self.features + self.targets]).all(axis=1)
            step = answer_requests(self._load(), times, values, asked, self.spec, watermark)
            accepted = step.accepted
        else:
            step = advance(self._load(), times, values, self.spec, watermark)
            accepted = len(ok) - len(step.rejected)
        if step.rejected:
            where = [i for i, _ in step.rejected]
            yield self._frame({"value": ok["value"].to_numpy()[where].tolist(), "reason": [why for _, why in step.rejected], "entity": entity})
        if accepted:
            yield self._frame({"reason": [ACCEPTED], "entity": [entity], "events": [accepted]})
        if len(step.windows):
            yield self._frame(self._rows(entity, step.windows, step.window_end_times))
        self._save(step.state, width)
        if self.ttl > 0 and step.state.last_time is not None:
            for timer in list(self.handle.listTimers()):
                self.handle.deleteTimer(timer)
            self.handle.registerTimer(int((step.state.last_time + self.ttl) * 1000))

    def handleExpiredTimer(self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo) -> Iterator[pd.DataFrame]:  # noqa: N802
        self.state.clear()  # idle for data.entity_ttl of event time: forget the entity
        return iter([])

    def close(self) -> None:
        pass


def windowed(events: DataFrame, cfg: AppConfig, *, predict: bool = False) -> DataFrame:
    """events.py's parsed events -> the operator's rows (:func:`output_schema`) plus ``_pos`` (NULL:
    the operator's output partitions, fixed by the checkpoint, are already in a fixed order).

    Sets the session's state store provider to RocksDB, which transformWithState requires, and
    turns off batches without data."""
    d = cfg.data
    events.sparkSession.conf.set("spark.sql.streaming.stateStore.providerClass", ROCKSDB)
    # No batches without data: Spark would run one whenever the watermark moves (for timers), each
    # a full trigger of fixed cost; entity expiry then happens with the next batch that has data.
    events.sparkSession.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    lateness = parse_duration(d.allowed_lateness, "data.allowed_lateness")
    width = len(d.event_values())
    watermarked = events.withColumn("_event_ts", F.timestamp_seconds(F.col("t"))).withWatermark("_event_ts", f"{int(lateness * 1000)} milliseconds")
    keyed = watermarked.select(F.coalesce(F.col("entity"), F.lit("")).alias("key"), "value", "entity", "t", *[f"v{i}" for i in range(width)], "reason")
    schema = output_schema(cfg, predict=predict)
    processor = WindowProcessor(
        [(c.split()[0], c.split()[1]) for c in schema.split(", ")],
        cfg.model.timesteps,
        len(d.features),
        0 if predict else d.horizon,
        d.stride,
        d.task == "forecast",
        len(d.targets),
        parse_duration(d.entity_ttl, "data.entity_ttl"),
        tuple(d.known_positions()),
        requests=predict and bool(d.known),
    )
    out = keyed.groupBy("key").transformWithStateInPandas(processor, schema, "Append", "EventTime")
    return out.withColumn(POSITION, F.lit(None).cast("struct<p:bigint,o:bigint>"))


SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"


@contextmanager
def operator_partitions(session: SparkSession, cfg: AppConfig) -> Iterator[None]:
    """Around an event-mode query's ``start()``: its window operator gets one state partition per
    core (unless ``[spark.conf]`` sets ``spark.sql.shuffle.partitions``); the session's setting is
    restored after. A checkpoint keeps the count its query started with, so this only shapes new ones.

    Why: every state partition is a task in every batch, and Spark 4.2.0's transformWithState server
    never closes the socket it accepts from a task's Python worker (SPARK-58932, fixed in Spark's
    branches after 4.2.0): the JVM holds one file descriptor per task until it exits, so one per
    state partition and batch (``python -m bench soak`` shows it). One partition per core slows
    the leak to the core count, and the batches run fewer RocksDB stores.
    """
    if cfg.data.mode != "events" or SHUFFLE_PARTITIONS in cfg.spark.conf:
        yield
        return
    with setting(session, SHUFFLE_PARTITIONS, str(default_parallelism(session))):
        yield


def in_window_order(batch: DataFrame) -> DataFrame:
    """A micro-batch of the operator's rows in one partition, windows by (end time, entity).

    Routing (routing.py) numbers rows by their Spark partition and position; the operator's output
    partitions follow ``spark.sql.shuffle.partitions`` and the hash of the entity, so without this a
    run with another partition count would key the same windows differently. A batch's windows are
    few (one per event at most), so one partition costs little."""
    return batch.repartition(1).sortWithinPartitions(F.col("end_time").asc_nulls_first(), F.col("entity").asc_nulls_first())


FD_CHECK_EVERY = 100  # batches


def descriptor_warning(session: SparkSession, batches: int, share: float = 0.5) -> str | None:
    """Every ``FD_CHECK_EVERY`` batches of an event-mode run in local mode (where the driver's JVM
    runs the tasks): a warning when that JVM holds more than ``share`` of the file descriptors it may open,
    naming the cause (:func:`operator_partitions`) and the remedy. None otherwise, and under Spark
    Connect or on a cluster, where the executors' JVMs are not this process's to ask."""
    if batches % FD_CHECK_EVERY or not str(session.sparkContext.master).startswith("local"):
        return None
    try:
        bean = session._jvm.java.lang.management.ManagementFactory.getOperatingSystemMXBean()  # type: ignore[union-attr]
        used, most = int(bean.getOpenFileDescriptorCount()), int(bean.getMaxFileDescriptorCount())
    except Exception:  # not a Unix JVM, or no py4j
        return None
    if used < share * most:
        return None
    return (
        f"the Spark JVM holds {used} of its {most} file descriptors: Spark 4.2.0's transformWithState leaks one per state "
        "partition and batch (SPARK-58932, fixed after 4.2.0). Restart the trainer before it runs out (it resumes exactly "
        "where it stopped), raise the limit (ulimit -n), or run a Spark release with the fix"
    )
