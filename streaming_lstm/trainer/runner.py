"""Running the streaming trainer: build the source, start the query, stop cleanly.

Stopping (Ctrl-C, SIGTERM, ``--max-batches``, ``--idle-timeout``) waits for the batch in flight to
be trained and saved, then stops the query; a batch that Spark starts after that is refused (not
committed) and replayed on the next start. Exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from streaming_lstm.core.config import AppConfig, parse_duration
from streaming_lstm.kafka.reader import READERS, BrokerWatch, choose_reader, records_skipped
from streaming_lstm.parse.events import observed_events
from streaming_lstm.spark import connect
from streaming_lstm.spark.session import adaptive_execution_off
from streaming_lstm.storage.fs import is_local, join
from streaming_lstm.storage.metrics import BatchCallback, BatchMetrics, History, forecast_last, prequential_span, print_line
from streaming_lstm.storage.store import check_compatible
from streaming_lstm.trainer.keepwarm import WorkerKeepAlive, trace_early
from streaming_lstm.trainer.remote import make_trainer
from streaming_lstm.trainer.sources import SourceSpec, open_source
from streaming_lstm.trainer.window_state import operator_partitions, windowed


class Trainer(Protocol):
    """What the runner needs of a trainer: :class:`~streaming_lstm.trainer.handler.StreamingTrainer`
    (the handler runs in this process) or :class:`~streaming_lstm.trainer.remote.RemoteTrainer`
    (it runs in a Spark Connect server, and this process follows its metrics log)."""

    cfg: AppConfig
    checkpoint: Any
    state: Any  # its version and last_batch_id
    history: History
    batches_applied: int
    busy: bool
    last_rows_at: float

    def handle(self, df: DataFrame, batch_id: int) -> None: ...
    def training_plan(self, source: DataFrame) -> DataFrame:
        """The query's plan from the source's rows on: parsed, counted, maybe trained (planned.py)."""

    def warm_up(self) -> float: ...
    def get_ready(self) -> str: ...  # warm up as ``train`` does before its query starts; the line that says how

    def follow(self, query: StreamingQuery) -> None:
        """Take in what was applied elsewhere since the last call (a trainer in this process has nothing to take in)."""

    def request_stop(self) -> None:
        """Refuse batches from now on (a remote trainer's server-side handler stops with its query)."""


log = logging.getLogger("streaming_lstm.trainer.runner")


@dataclass
class RunResult:
    batches: int
    rows_trained: int
    rows_dead: int
    version: int
    stopped_by: str
    seconds: float
    history: History = field(default_factory=History)
    records_skipped: int = 0  # Kafka records gone before they were read (failOnDataLoss=false)
    last_batch_id: int = -1  # the last batch applied (in this run or before it)
    refused_batch: int | None = None  # a batch Spark started after the stop: not committed, replayed on restart


@contextmanager
def session_scope(cfg: AppConfig, remote_flag: str | None, log_dir: str | os.PathLike[str] | None = None) -> Iterator[connect.Session]:
    """The Spark session of one run (classic, or a Connect client of ``--remote``; ``local`` starts
    a Connect server logging into ``log_dir``), stopped when the run ends, however it ends.

    Stopping is not left to the interpreter's exit: without it the JVM's shutdown hooks race a
    cluster relaunching executors."""
    remote = connect.remote_from(remote_flag)
    server_log = os.path.join(os.fspath(log_dir), "connect-server.log") if remote == "local" and log_dir is not None else None
    session = connect.open_session(cfg.spark, remote, server_log=server_log)
    try:
        yield session
    finally:
        session.stop()


class IdleClock:
    """``--idle-timeout``: the time since the last batch that had rows ended. A trigger in flight is
    never idleness, however long it takes (a cold start, a slow Connect batch)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.rows = 0
        self.since = time.monotonic()

    def saw(self, rows: int) -> None:
        """``rows``: rows handled so far; a change restarts the clock."""
        if rows != self.rows:
            self.rows, self.since = rows, time.monotonic()

    def expired(self, query: StreamingQuery) -> bool:
        if self.timeout is None:
            return False
        if trigger_active(query):
            self.since = time.monotonic()
            return False
        return time.monotonic() - self.since > self.timeout


def start_query(trainer: Trainer, source: DataFrame) -> StreamingQuery:
    """Start the foreachBatch query; Spark's own checkpoint lives in ``CHECKPOINT/spark``.

    Rows are parsed in the streaming plan so that each batch's row counts are also the query's
    observed metrics (:func:`~streaming_lstm.parse.counts.with_counts`). In event mode the events are
    parsed (events.py) and formed into windows per entity (window_state.py) in the plan too.
    """
    trigger = parse_duration(trainer.cfg.stream.trigger, "stream.trigger")
    d = trainer.cfg.data
    plan = windowed(observed_events(source, d), trainer.cfg) if d.mode == "events" else trainer.training_plan(source)
    # Adaptive execution off for the query's own session (cloned at start): it would run the
    # training plan's shuffle while Spark prepares the batch, before the handler can give the
    # batch's tasks their ticket (planned.py), and it re-plans small batches for nothing.
    with operator_partitions(source.sparkSession, trainer.cfg), adaptive_execution_off(source.sparkSession):
        return (
            plan.writeStream.foreachBatch(trainer.handle)
            .option("checkpointLocation", join(trainer.checkpoint, "spark"))
            .trigger(processingTime=f"{int(trigger * 1000)} milliseconds")
            .queryName(f"streaming-lstm-{os.getpid()}-{id(trainer)}")
            .start()
        )


def query_error(error: Any) -> str:
    """One line for a failed streaming query, naming the cause rather than Spark's wrappers
    ("[STREAM_FAILED] ... Job aborted due to stage failure ...")."""
    text = str(error)
    lost = re.findall(r"Could not read records in offset \[(\d+), (\d+)\) for topic partition (\S+)", text)
    if lost:  # Spark's connector, failOnDataLoss=true
        where = ", ".join(f"partition {tp} offsets [{a}, {b})" for a, b, tp in dict.fromkeys(lost))
        return (
            f"Kafka records were gone before they were read (retention, or a deleted topic): could not read {where}; "
            "set stream.fail_on_data_loss = false (failOnDataLoss=false) to skip them and go on"
        )
    for pattern in (r"KafkaSourceError: (.+)", r"(KafkaIllegalStateException: .+)", r"(Kafka\w*Exception: .+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()[:600]
    return (text.strip().splitlines() or ["unknown error"])[0][:600]


class ProgressWatch:
    """Reads the query's progress reports as they come: counts Kafka records skipped (gone from the
    broker before they were read, ``failOnDataLoss=false``) and says so once per batch.

    Batches up to ``applied`` (the state's last applied batch id when the query starts) are the
    ones Spark replays after a restart and the handler skips unread: their records were trained
    by an earlier run, not lost, so they are not counted."""

    def __init__(self, applied: int = -1) -> None:
        self.last_batch = applied
        self.records_skipped = 0

    def scan(self, query: StreamingQuery) -> None:
        for progress in query.recentProgress:
            batch = int(progress["batchId"])
            if batch <= self.last_batch or "addBatch" not in progress.get("durationMs", {}):
                continue
            self.last_batch = batch
            skipped = records_skipped(progress)
            if skipped:
                self.records_skipped += skipped
                log.warning("batch %d: %d Kafka records were gone before they were read (retention); skipped (failOnDataLoss=false)", batch, skipped)


def wait(query: StreamingQuery, tick: Callable[[], str | None]) -> str:
    """Wait for ``query`` in 0.2 s steps, calling ``tick`` after each, until ``tick`` returns a reason
    to stop (returned) or the query ends, failed or not ("query ended"; see ``query.exception()``)."""
    while query.isActive:
        try:
            query.awaitTermination(0.2)  # type: ignore[arg-type]  # PySpark's stub says int; it takes seconds as a float
        except StreamingQueryException:
            break  # the caller reports query.exception()
        reason = tick()
        if reason:
            return reason
    return "query ended"


def stop_after_commit(query: StreamingQuery, batch_id: int, timeout: float = 10.0) -> None:
    """Stop ``query`` once Spark has committed ``batch_id`` (or after ``timeout`` seconds).

    Our handler returns before Spark writes the batch's commit file; stopping right then interrupts
    that write (Hadoop logs an InterruptedException with a stack trace) and leaves the batch to be
    replayed and skipped on the next start. Spark reports a batch's progress after its commit, so
    waiting for that report makes a normal stop quiet and leaves nothing to replay.
    """
    deadline = time.monotonic() + timeout
    while batch_id >= 0 and query.isActive and time.monotonic() < deadline:
        progress = query.lastProgress
        if progress and progress["batchId"] >= batch_id and "addBatch" in progress["durationMs"]:
            break  # a report of an executed batch (idle triggers have no addBatch) at or after ours
        time.sleep(0.05)
    # With more data waiting, Spark plans the next batch right after the commit, writing its offsets
    # file; stopping then interrupts that write as well (the same InterruptedException). That batch
    # reaches our handler, which refuses it (StopRequested) and so ends the query without an
    # interrupt; only an idle query (no trigger running, twice in a row) is stopped from here.
    idle = 0
    while query.isActive and time.monotonic() < deadline + timeout and idle < 2:
        idle = idle + 1 if not query.status["isTriggerActive"] else 0
        time.sleep(0.05)
    query.stop()


def run(
    trainer: Trainer,
    source: DataFrame,
    *,
    max_batches: int | None = None,
    idle_timeout: float | None = None,
    stop_event: threading.Event | None = None,
    on_tick: Callable[[], str | None] | None = None,
    on_first_trigger: Callable[[], None] | None = None,
    broker_watch: BrokerWatch | None = None,
) -> RunResult:
    """Run the query until a stop condition; return what was trained in this run.

    ``on_tick`` is called every ~0.2 s; a string it returns stops the run with that reason.
    ``on_first_trigger`` is called once, when the query has reported its first trigger (the demo
    starts its producer then, so that rows arrive batch by batch, also when the query takes long to
    start, as under Spark Connect).
    ``broker_watch`` (Kafka through Spark's connector) says when the broker stops answering.
    """
    started = time.monotonic()
    stop_event = stop_event or threading.Event()
    progress = ProgressWatch(applied=trainer.state.last_batch_id)  # read before the first batch can apply
    query = start_query(trainer, source)
    trainer.last_rows_at = time.monotonic()
    first = [on_first_trigger]
    keep = WorkerKeepAlive(source.sparkSession, parse_duration(trainer.cfg.stream.keep_workers, "stream.keep_workers"))

    def tick() -> str | None:
        if first[0] is not None and query.lastProgress is not None:
            first[0]()
            first[0] = None
        trainer.follow(query)
        progress.scan(query)
        if broker_watch is not None:
            broker_watch.check()
        keep.saw_batch(trainer.last_rows_at)
        keep.check(lambda: trainer.busy or trigger_active(query))
        reason = on_tick() if on_tick else None
        return reason or stop_reason(trainer, query, stop_event, max_batches, idle_timeout)

    try:
        stopped_by = wait(query, tick)
    finally:
        trainer.request_stop()
        trainer.follow(query)
        stop_after_commit(query, trainer.state.last_batch_id)
        trainer.follow(query)
        progress.scan(query)
    error = query.exception()
    if error is not None and "StopRequested" not in str(error):
        raise RuntimeError(f"the streaming query failed: {query_error(error)}")
    refused = re.search(r"batch (\d+) not started", str(error)) if error is not None else None
    rows, dead = trainer.history.rows_valid, trainer.history.rows_dead
    seconds = time.monotonic() - started
    return RunResult(
        trainer.batches_applied, rows, dead, trainer.state.version, stopped_by, seconds, trainer.history, progress.records_skipped,
        trainer.state.last_batch_id, int(refused.group(1)) if refused else None,
    )  # fmt: skip


def stop_reason(trainer: Trainer, query: StreamingQuery, stop_event: threading.Event, max_batches: int | None, idle_timeout: float | None) -> str | None:
    """Why the run should stop now, if it should: a signal, the batch limit, or idleness: no rows
    for ``idle_timeout`` since the last batch that had rows, and no trigger running (the first
    batch of a stateful query plans and starts its workers before the handler sees it)."""
    if stop_event.is_set():
        return "signal"
    if max_batches is not None and trainer.batches_applied >= max_batches:
        return f"max batches ({max_batches})"
    if idle_timeout is not None and not trainer.busy and time.monotonic() - trainer.last_rows_at > idle_timeout and not trigger_active(query):
        return f"idle for {idle_timeout:g} s"
    return None


def trigger_active(query: StreamingQuery) -> bool:
    try:
        return bool(query.status.get("isTriggerActive"))
    except Exception:  # a query that just stopped has no status to give; it is not running a trigger
        return False


def install_signal_handlers(event: threading.Event) -> None:
    def _handler(signum: int, _frame: FrameType | None) -> None:
        if event.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        log.warning("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
        event.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def summarize(result: RunResult, checkpoint: str, started_at: float | None = None) -> str:
    """The closing lines: why it stopped, the time since ``started_at`` (the process's start), what
    was trained, the learning figure, the last applied batch (and a refused one) and the files."""
    skipped = f", {result.records_skipped} Kafka records skipped (gone before they were read)" if result.records_skipped else ""
    if result.history and "prequential_mae" in result.history[-1]:  # forecasts over event windows
        f = forecast_last(result.history, max(1, result.rows_trained // 5))
        quality = f"over the last fifth of the windows MAE {f['prequential_mae']:.4g}, naive {f['naive_mae']:.4g}, skill {f['skill']:+.3f}"
        what = "windows"
    else:
        accuracy, span = prequential_span(result.history, 150)
        quality, what = (f"prequential accuracy over the last {span} rows {accuracy:.3f}" if span else "nothing scored yet"), "rows"
    total = time.monotonic() - started_at if started_at is not None else result.seconds
    last = f"last applied batch {result.last_batch_id}" if result.last_batch_id >= 0 else "no batch applied yet"
    if result.refused_batch is not None:
        last += f"; batch {result.refused_batch} had started and was refused: it is replayed on restart"
    files = f"model: {join(checkpoint, 'model')}   metrics: {join(checkpoint, 'metrics.jsonl')}"
    if result.rows_dead:
        files += f"   dead letters: {join(checkpoint, 'deadletter')}"
    return (
        f"stopped ({result.stopped_by}) after {result.batches} batches in {total:.1f} s ({result.seconds:.1f} s streaming): "
        f"{result.rows_trained} {what} trained, {result.rows_dead} dead-lettered{skipped}, model version {result.version}; {quality}\n"
        f"{last}\n{files}"
    )


def announce_first_batch(started_at: float, then: BatchCallback) -> BatchCallback:
    """``then``, and once, after the first applied batch: how long after the start that was."""
    first = [True]

    def on_batch(m: BatchMetrics) -> None:
        then(m)
        if first[0]:
            first[0] = False
            print(f"streaming-lstm: first batch applied {time.monotonic() - started_at:.1f} s after start", flush=True)

    return on_batch


def run_cli(cfg: AppConfig, args: argparse.Namespace) -> int:
    """``streaming-lstm train``: the source and the checkpoint are checked before Spark starts."""
    checkpoint = str(args.checkpoint)
    started_at = getattr(args, "started_at", time.monotonic())
    spec = SourceSpec.from_args(args)
    spec.check()
    check_checkpoint(checkpoint, cfg)
    trace_early(cfg, remote=connect.remote_from(getattr(args, "remote", None)) is not None)  # where the driver trains
    print(f"streaming-lstm: starting Spark ({describe_master(cfg, getattr(args, 'remote', None))}) ...", flush=True)
    with session_scope(cfg, getattr(args, "remote", None), checkpoint) as session:
        spark = session.spark
        source = open_source(spark, cfg, spec)
        trainer = make_trainer(spark, cfg, checkpoint, on_batch=announce_first_batch(started_at, print_line))
        where = f" over Spark Connect at {session.url}" if session.kind == "connect" else ""
        print(
            f"streaming-lstm: training from {args.source} into {checkpoint}{where} with {cfg.stream.partitions} partitions, "
            f"trigger {cfg.stream.trigger}; starting at model version {trainer.state.version} (batch {trainer.state.last_batch_id})",
            flush=True,
        )
        print(f"streaming-lstm: {trainer.get_ready()}", flush=True)
        event = threading.Event()
        install_signal_handlers(event)
        watch = BrokerWatch(spec.bootstrap) if spec.kind == "kafka" and spec.bootstrap and choose_reader(spark, cfg) == READERS["spark"] else None
        result = run(trainer, source, max_batches=args.max_batches, idle_timeout=args.idle_timeout, stop_event=event, broker_watch=watch)
    print(summarize(result, checkpoint, started_at), flush=True)
    return 0


def describe_master(cfg: AppConfig, remote_flag: str | None) -> str:
    remote = connect.remote_from(remote_flag)
    if remote == "local":
        return f"a local Spark Connect server, {cfg.spark.master}"
    if remote is not None:
        return f"Spark Connect at {connect.shown(remote)}"
    return "the spark-submit session" if "PYSPARK_GATEWAY_PORT" in os.environ else cfg.spark.master


def check_checkpoint(checkpoint: str, cfg: AppConfig) -> None:
    """A local checkpoint whose model has another shape is refused before anything starts (a
    Hadoop URI is checked once Spark runs, by the trainer's state)."""
    if is_local(checkpoint):
        check_compatible(join(checkpoint, "model"), cfg, "--checkpoint")
