"""Keeping the Python workers, and the models compiled in them, across long pauses.

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

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

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
