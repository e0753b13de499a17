"""Warming the Python workers (or the driver's model) before the first batch, and keeping the
workers, and the models compiled in them, across long pauses.

Before the first batch: :func:`warm_workers` imports TensorFlow and traces the model in each
training worker; where the driver trains (``stream.train_in``), :func:`trace_in_background`
traces it in the driver and :func:`start_workers` starts the workers that parse and key
(:func:`start_workers_beside`: while the query starts).

Spark stops every idle Python worker once none of them has run a task for a minute (the idle
timeout of ``PythonWorkerFactory``, fixed in its code; ``spark.python.factory.idleWorkerMaxPoolSize``
only caps the pool). A worker keeps its compiled model (``core/compiled.py``): traced, or compiled
by XLA, on its first task. A stream whose trigger or pauses exceed a minute would trace again in
fresh workers at every batch. While the query is idle, :class:`WorkerKeepAlive` runs a one-row
Python task on the session every ``stream.keep_workers`` (the trainer's run loop and the
``predict`` loop call it): the pool sees a task within the minute, and its workers stay.

Classic sessions only: a Spark Connect client's Python jobs run in the server's worker pool for
the client's own environment, which need not be the one the streaming query's tasks use.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from streaming_lstm.core.config import AppConfig
from streaming_lstm.spark import connect, zygote
from streaming_lstm.trainer import executor, planned
from streaming_lstm.trainer.routing import driver_threads, plan_tasks_for

log = logging.getLogger(__name__)


def touch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The keep-alive task's body (in a Python worker): the worker's process id."""
    for _ in batches:
        pass
    yield pa.RecordBatch.from_pydict({"pid": pa.array([os.getpid()], pa.int64())})


class WorkerKeepAlive:
    """Runs the keep-alive task when nothing has run Python for ``every`` seconds (0: never).

    :meth:`check` is called from the run loop's tick with how to ask whether the query is busy (a
    trigger running or the handler applying), asked only when a task is due; :meth:`saw_batch` when a batch ran tasks. Failures are
    logged and counted, never raised: the stream does not depend on it.
    """

    def __init__(self, spark: Any, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        from streaming_lstm.spark.connect import is_remote

        self.spark = spark
        self.every = every if every > 0 and not is_remote(spark) else 0.0
        self.clock = clock
        self.last = clock()
        self.runs = 0
        self.failures = 0
        self.pid = 0  # the Python worker the last keep-alive task ran in

    def saw_batch(self, at: float) -> None:
        self.last = max(self.last, at)

    def check(self, busy: Callable[[], bool]) -> None:
        if not self.every or self.clock() - self.last < self.every or busy():
            return
        try:
            self.pid = int(self.spark.range(1, numPartitions=1).mapInArrow(touch, "pid long").collect()[0]["pid"])
            self.runs += 1
        except Exception as exc:  # a session stopping under it, a killed executor: the next check tries again
            self.failures += 1
            log.warning("keeping the Python workers alive failed (%s); the next batch may start them anew", str(exc).splitlines()[0] if str(exc) else exc)
        self.last = self.clock()


def warm_workers(spark: SparkSession, cfg: AppConfig, tasks: int, threads: int) -> float:
    """Start the Python workers and trace the model in each before the first batch (seconds).

    Spark reuses Python workers, so TensorFlow's import (in the daemon, spark/daemon.py) and the
    tracing are paid here once instead of inside the first micro-batch. One task for each of the
    ``tasks`` a batch trains in, as one stage of ``spark.range``: they run side by side as the
    training tasks do, each in a worker of its own. No shuffle: in a JVM that has run no job yet,
    a job with one costs about half a second more to plan and run.
    """
    started = time.perf_counter()
    connect.describe(spark, "streaming-lstm: warm up the Python workers")
    fn = functools.partial(executor.warm_frames, config_dict=cfg.to_dict(), threads=threads)
    spark.range(0, tasks, 1, tasks).mapInPandas(fn, executor.WARM_SCHEMA).collect()
    return time.perf_counter() - started


_STARTED: dict[tuple[str, int, int], Future[None]] = {}  # traces started before a trainer took them


def trace_in_background(cfg: AppConfig, threads: int, slots: int) -> Future[None]:
    """Trace the model in this process (the driver trains, ``stream.train_in``) in a thread, once
    per task group it trains side by side (compiled.model_slot): the trace mostly runs in
    TensorFlow's C++ with the GIL released, beside whatever Spark does. A trace started earlier
    for the same arguments (``train`` starts one before Spark, :func:`trace_early`) is taken over."""
    started = _STARTED.pop(_trace_key(cfg, threads, slots), None)
    if started is not None:
        return started
    return _in_a_thread("streaming-lstm-trace", _trace, cfg, threads, slots)


def trace_early(cfg: AppConfig, *, remote: bool) -> None:
    """Where the driver may train (planned.driver_may_train), import TensorFlow and trace the model
    before Spark starts, so both run while the JVM starts, for the tasks and threads a local
    master's cores give (routing.plan_tasks_for, routing.driver_threads; a trainer whose plan
    differs traces again). The workers, which then only parse and key, do not import TensorFlow
    beside them (spark/zygote.py): on 2 cores a third import slowed the start (``python -m bench
    coldstart``)."""
    if not planned.driver_may_train(cfg, cfg.spark.master, remote=remote):
        return
    os.environ[zygote.WORKERS_TF] = "0"
    cores = local_cores(cfg.spark.master)
    if cores is not None:
        tasks, threads = plan_tasks_for(cfg, cores)[0], driver_threads(cfg, cores)
        _STARTED[_trace_key(cfg, threads, tasks)] = trace_in_background(cfg, threads, tasks)


def driver_cores(master: str) -> int:
    """The cores the driver trains on: a local master's, else this machine's."""
    return local_cores(master) or os.cpu_count() or 1


def local_cores(master: str) -> int | None:
    """The cores of a ``local``, ``local[N]``, ``local[*]`` or ``local[N,F]`` master; else None."""
    found = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master.strip())
    if found is None:
        return None
    n = found.group(1)
    return 1 if n is None else (os.cpu_count() or 1) if n == "*" else int(n)


def _trace_key(cfg: AppConfig, threads: int, slots: int) -> tuple[str, int, int]:
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str), threads, slots


def _trace(cfg: AppConfig, threads: int, slots: int) -> None:
    executor._training()  # TensorFlow's import, then one trace per slot
    from streaming_lstm.core.compiled import model_slot

    for slot in range(slots):
        with model_slot(slot):
            list(executor.warm_frames(iter(()), config_dict=cfg.to_dict(), threads=threads))


def start_workers(spark: SparkSession, tasks: int) -> None:
    """Start ``tasks`` Python workers for the parsing and keying tasks, as one stage of ``spark.range``."""
    connect.describe(spark, "streaming-lstm: start the Python workers")
    spark.range(0, tasks, 1, tasks).mapInArrow(touch, "pid long").collect()  # the keep-alive task's body


def start_workers_beside(spark: SparkSession, tasks: int) -> Future[None]:
    """:func:`start_workers` in a thread, beside the query's start: the daemon's start and the
    workers' forks then overlap the query's first trigger instead of running inside the first
    batch's job. Only a head start: a failure (the session stopped meanwhile) is logged, and the
    first batch's job starts whatever workers it still needs."""

    def run() -> None:
        try:
            start_workers(spark, tasks)
        except Exception as e:  # any: the first batch starts the workers instead
            log.debug("starting the Python workers ahead of the first batch failed: %s", e)

    return _in_a_thread("streaming-lstm-workers", run)


def _in_a_thread(name: str, fn: Callable[..., None], *args: Any) -> Future[None]:
    """``fn(*args)`` in a thread of its own, which ends with it; its result or error in the future."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    done = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return done
