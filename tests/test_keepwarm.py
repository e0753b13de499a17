"""The trainer's Python workers across pauses: Spark stops idle workers after a minute (and with
them the models compiled in them); the keep-alive task runs while the query idles and keeps them."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from streaming_lstm.trainer.keepwarm import WorkerKeepAlive, start_workers_beside

pytestmark = pytest.mark.spark


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_task_runs_in_a_python_worker_only_when_due_and_idle(spark: Any) -> None:
    clock = Clock()
    keep = WorkerKeepAlive(spark, 45.0, clock)
    clock.now = 44.0
    keep.check(lambda: False)
    assert keep.runs == 0, "not due yet"
    clock.now = 46.0
    keep.check(lambda: True)
    assert keep.runs == 0, "due, but a trigger is running"
    keep.check(lambda: False)
    assert keep.runs == 1 and keep.pid not in (0, os.getpid()), "a Python worker ran it"
    keep.saw_batch(80.0)  # a batch ran tasks: the next keep-alive is 45 s after it
    clock.now = 100.0
    keep.check(lambda: False)
    assert keep.runs == 1
    clock.now = 126.0
    keep.check(lambda: False)
    assert (keep.runs, keep.failures) == (2, 0)
    never = WorkerKeepAlive(spark, 0.0, clock)
    clock.now = 1e9
    never.check(lambda: False)
    assert never.runs == 0


def test_the_workers_started_beside_the_query_run_a_job_and_a_failure_is_only_logged(spark: Any, caplog: pytest.LogCaptureFixture) -> None:
    """``train``'s head start for the parsing workers: a job of one Python task per worker, in a
    thread; where the session cannot run it, the thread ends quietly (the first batch starts them)."""
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None))
    assert start_workers_beside(spark, 2).result(timeout=120) is None
    jobs = [tracker.getJobInfo(j) for j in set(tracker.getJobIdsForGroup(None)) - before]
    assert any(j is not None and j.status == "SUCCEEDED" and tracker.getStageInfo(j.stageIds[0]).numTasks == 2 for j in jobs), jobs

    class Stopped:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the session was stopped")

    with caplog.at_level("DEBUG", logger="streaming_lstm.trainer.keepwarm"):
        assert start_workers_beside(Stopped(), 2).result(timeout=10) is None  # type: ignore[arg-type]
    assert "the session was stopped" in caplog.text


class Query:
    """What the predict loop's tick reads of a StreamingQuery: progress and whether a trigger runs."""

    def __init__(self) -> None:
        self.lastProgress: dict[str, Any] | None = None
        self.recentProgress: list[dict[str, Any]] = []
        self.status = {"isTriggerActive": False}


def test_the_predict_loop_keeps_its_workers_too(spark: Any) -> None:
    """``predict``'s tick runs the keep-alive when idle; a batch with rows, or a running trigger, defers it."""
    import threading

    from streaming_lstm.trainer.predictor import PredictFollower
    from streaming_lstm.trainer.runner import IdleClock

    clock, query = Clock(), Query()
    keep = WorkerKeepAlive(spark, 45.0, clock)
    follow = PredictFollower(query, None, IdleClock(None), threading.Event(), keep)  # type: ignore[arg-type]
    clock.now = 30.0
    query.recentProgress = [{"batchId": 0, "sources": [{"numInputRows": 5}]}]
    assert follow.tick() is None and keep.runs == 0
    clock.now = 70.0  # 40 s after the batch with rows
    assert follow.tick() is None and keep.runs == 0
    clock.now = 76.0
    query.status = {"isTriggerActive": True}
    follow.tick()
    assert keep.runs == 0, "a trigger is running"
    query.status = {"isTriggerActive": False}
    follow.tick()
    assert keep.runs == 1 and keep.pid not in (0, os.getpid()), "ran in a Python worker"


@pytest.mark.slow
def test_workers_outlive_spark_s_idle_minute_only_with_the_keep_alive(spark: Any) -> None:
    """Without it, the worker of a task 70 s after the last is a new process; with it (every 20 s
    of idleness), the same one."""

    def pid_after_pause(every: float) -> tuple[int, int]:
        keep = WorkerKeepAlive(spark, every)
        probe = WorkerKeepAlive(spark, 1.0)
        probe.last = -1e9
        probe.check(lambda: False)  # the pool's worker now
        first, started = probe.pid, time.monotonic()
        keep.last = started
        while time.monotonic() - started < 70:
            keep.check(lambda: False)
            time.sleep(0.5)
        probe.last = -1e9
        probe.check(lambda: False)
        return first, probe.pid

    before, after = pid_after_pause(20.0)
    assert before == after, "the keep-alive kept the worker"
    before, after = pid_after_pause(0.0)
    assert before != after, "Spark replaced the idle worker: the keep-alive is what kept it"
