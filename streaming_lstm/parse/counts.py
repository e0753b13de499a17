"""A micro-batch's row counts, one vocabulary for every counter: ``rows_in``, ``rows_valid``,
``rows_dead``, ``headers_skipped``, ``events_accepted``.

Two counters use it. :func:`with_counts` puts the counts into the streaming plan as the query's
observed metrics (``lastProgress["observedMetrics"]["streaming_lstm"]``, for users and any
``StreamingQueryListener``). The trainer's own count, below, is counted inside the training job
where that is exact.

The trainer needs, per batch: valid rows (to check that each was trained exactly once), rejected
rows per reason (the batch line, the dead letters), header rows and, in event mode, the events the
window operator accepted (its tally rows). :func:`observe` attaches these counts to the parsed
batch as a Spark ``Observation``, so the training job counts them as it reads the rows: no job of
its own. :func:`settle` then decides whether the observed figures can be trusted:

* Observed metrics are accumulators, and Spark merges every attempt of a re-executed stage into
  them (a lost executor's shuffle output, a fetch failure: SPARK-58183), so a figure can only be
  *too large*, never too small.
* The training tasks' own row counts arrive with the job's result, which Spark delivers exactly once.
  If every observed row is a valid row and their number equals the rows the tasks trained, the
  observation is exact: the common batch costs one Spark job.
* Otherwise (rejected rows, header or tally rows, or a mismatch) :func:`exact_counts` counts the
  cached batch in a small aggregation, as every batch did before: exact under any retry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from streaming_lstm.parse.rows import ACCEPTED, HEADER

OBSERVATION = "streaming_lstm"  # the name of the query's observed metrics
ROWS_IN, VALID, DEAD, HEADERS, EVENTS = "rows_in", "rows_valid", "rows_dead", "headers_skipped", "events_accepted"


def count_columns(parsed: DataFrame) -> list[Column]:
    """The counts of ``parsed`` (a ``reason`` column; event mode's tally rows also ``events``) as
    aggregate columns. Header rows and tally rows are counted, not dead."""
    reason = F.col("reason")
    cols = [
        F.count_if(reason.isNull()).alias(VALID),
        F.count_if(reason.isNotNull() & ~reason.isin(HEADER, ACCEPTED)).alias(DEAD),
        F.count_if(reason == HEADER).alias(HEADERS),
    ]
    if "events" in parsed.columns:
        cols.append(F.coalesce(F.sum(F.when(reason == ACCEPTED, F.col("events"))), F.lit(0)).cast("long").alias(EVENTS))
    return cols


def with_counts(parsed: DataFrame) -> DataFrame:
    """``parsed`` with its counts (and ``rows_in``) as the streaming query's observed metrics."""
    return parsed.observe(OBSERVATION, F.count(F.lit(1)).alias(ROWS_IN), *count_columns(parsed))


@dataclass(frozen=True)
class BatchCounts:
    """A parsed batch's row counts: valid rows, rejected rows per reason, header rows and (event
    mode) the events that went into their entity's windows."""

    rows_valid: int
    dead_by_reason: dict[str, int]
    headers_skipped: int = 0
    events_accepted: int = 0
    exact_job: bool = False  # counted by exact_counts' own job (not the observation alone)

    @property
    def rows_dead(self) -> int:
        return sum(self.dead_by_reason.values())

    @property
    def empty(self) -> bool:
        return self.rows_valid == 0 and self.rows_dead == 0 and self.headers_skipped == 0 and self.events_accepted == 0


def observe(parsed: DataFrame) -> tuple[DataFrame, Observation]:
    """``parsed`` (a ``reason`` column; event mode also ``events``) with its counts observed by
    whichever action runs on it or on a frame derived from it."""
    obs = Observation(f"streaming_lstm_counts_{uuid.uuid4().hex}")  # one-shot: a new name per batch
    return parsed.observe(obs, *count_columns(parsed)), obs


def settle(obs: Observation, rows_trained: int, parsed: DataFrame) -> BatchCounts:
    """The batch's counts: the observation's when it is provably exact (module docstring), else
    :func:`exact_counts` on ``parsed`` (cached, so no source is read twice)."""
    try:
        seen = obs.get
    except Exception:
        # Spark may prune the observed node from an empty batch's plan; classic PySpark then fails
        # converting the empty metrics row (an AssertionError in PythonSQLUtils.toPyRow).
        return exact_counts(parsed)
    valid, dead, headers, events = (int(seen.get(k) or 0) for k in (VALID, DEAD, HEADERS, EVENTS))
    if valid == rows_trained and dead == 0 and headers == 0 and events == 0:
        return BatchCounts(valid, {})
    return exact_counts(parsed)


def exact_counts(parsed: DataFrame) -> BatchCounts:
    """One small aggregation over the batch: rows per reason, tally rows' events."""
    events = F.sum("events") if "events" in parsed.columns else F.lit(0)
    rows = parsed.groupBy("reason").agg(F.count(F.lit(1)).alias("count"), events.alias("events")).collect()  # a few rows: one per reason
    by_reason = {r["reason"]: int(r["count"]) for r in rows}
    accepted = sum(int(r["events"] or 0) for r in rows if r["reason"] == ACCEPTED)
    valid = by_reason.pop(None, 0)
    headers = by_reason.pop(HEADER, 0)
    by_reason.pop(ACCEPTED, 0)
    return BatchCounts(valid, by_reason, headers, accepted, exact_job=True)
