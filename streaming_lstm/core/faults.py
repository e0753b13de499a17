"""Fault injection for the fault-tolerance tests (tests/test_faults.py). Inert unless configured.

``STREAMING_LSTM_FAULT="point@batch_id[,point@batch_id...]"`` kills this process with SIGKILL (no
cleanup, like ``kill -9``) when it reaches ``point`` while handling ``batch_id``:

* ``mid_train``  (driver) while the partition tasks of the batch are running
* ``before_save`` (driver) after training, before the new model version is written
* ``mid_save``   (driver) after the weights file is written, before its metadata (the commit marker)
* ``after_save`` (driver) after the version is saved, before Spark commits the batch
* ``worker``     (Python worker) in a training task's first attempt; Spark retries the task
* ``predict_before_write`` (predict) after the batch's model version is recorded, before any sink is written
* ``predict_after_write``  (predict) after every sink is written, before Spark commits the batch
"""

from __future__ import annotations

import os
import signal
import threading
import time

ENV = "STREAMING_LSTM_FAULT"


def _armed(point: str, batch_id: int) -> bool:
    spec = os.environ.get(ENV, "")
    return bool(spec) and f"{point}@{batch_id}" in {s.strip() for s in spec.split(",")}


def kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hit(point: str, batch_id: int) -> None:
    """SIGKILL this process if ``point@batch_id`` is configured."""
    if _armed(point, batch_id):
        kill_now()


def hit_later(point: str, batch_id: int, delay: float = 0.1) -> None:
    """SIGKILL this process ``delay`` seconds from now (while the caller is busy), if configured."""
    if _armed(point, batch_id):

        def _kill() -> None:
            time.sleep(delay)
            kill_now()

        threading.Thread(target=_kill, daemon=True).start()
