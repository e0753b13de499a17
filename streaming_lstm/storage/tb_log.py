"""TensorBoard event files for the trainer: prequential accuracy and loss, train loss, rows/s, batch
latency, drift alarms and weight histograms, one step per batch id.

Not named tensorboard.py on purpose: under ``spark-submit streaming_lstm/cli.py`` this directory is
first on sys.path, and the module would shadow the real ``tensorboard`` package.

Local event files are written without TensorFlow (:class:`EventFile`), so the trainer's driver never
imports it; gs:// goes through TensorFlow's writer.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from streaming_lstm.storage.fs import local_path

SCALARS = {
    "prequential/accuracy": "prequential_accuracy",
    "prequential/loss": "prequential_loss",
    "train/loss": "train_loss",
    "throughput/rows_per_s": "rows_per_s",
    "latency/batch_s": "latency_s",
    "rows/valid": "rows_valid",
    "rows/dead_lettered": "rows_dead",
    "drift/alarm": "drift",
    # forecasts (event mode): errors in the targets' units, the naive forecast's, the skill
    "prequential/mae": "prequential_mae",
    "prequential/rmse": "prequential_rmse",
    "prequential/naive_mae": "naive_mae",
    "prequential/skill": "skill",
    "rows/events_accepted": "events_accepted",
}


def unsupported(logdir: str) -> str | None:
    """Why TensorFlow's event writer cannot write to ``logdir``, or None if it can."""
    from streaming_lstm.storage.fs import is_local

    scheme = logdir.split("://", 1)[0] if "://" in logdir else ""
    if is_local(logdir) or scheme == "gs":
        return None
    return f"TensorFlow's event writer cannot write to {scheme}:// (it writes local paths and gs://); TensorBoard events are off for {logdir}"


def batch_summary(metrics: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> Any:
    """One batch's scalars and weight histograms as one ``Summary`` proto, built in numpy.

    Why not ``tf.summary.scalar``/``histogram``: they run eager TensorFlow ops per value (the
    histograms' bucketing most of all), a visible share of a small batch in the driver; this is
    the same protocol buffer TensorBoard reads, written by one op.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.histogram.summary_v2 import histogram_pb
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    parts = [scalar_pb(tag, float(metrics[key])) for tag, key in SCALARS.items() if metrics.get(key) is not None and np.isfinite(float(metrics[key]))]
    parts += [histogram_pb(f"weights/{name}", np.asarray(w, dtype=np.float64)) for name, w in weights.items()]
    return Summary(value=[v for p in parts for v in p.value])


class EventFile:
    """A TensorBoard event file written without TensorFlow: TFRecord framing (TensorBoard's own
    ``RecordWriter``) of ``Event`` protos, named as TensorFlow names them. Why: importing TensorFlow
    in the driver only to write events costs seconds in the first batch and half a gigabyte of memory."""

    def __init__(self, logdir: str) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        os.makedirs(logdir, exist_ok=True)
        name = f"{PREFIX}{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.0"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        self._writer = RecordWriter(self._file)
        self._writer.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def write(self, step: int, summary: Any) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer.write(Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())
        self._writer.flush()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._writer.close()


PREFIX = "events.out.tfevents."


def event_files(logdir: str) -> list[str]:
    """The event files in ``logdir``, oldest first (by the creation time in their names)."""

    def created(name: str) -> float:
        try:
            return float(".".join(name[len(PREFIX) :].split(".")[:2]))
        except ValueError:
            return 0.0

    return sorted((n for n in os.listdir(logdir) if n.startswith(PREFIX)), key=created)


class TensorBoardLog:
    """One step per batch id. Local event files roll to a new file at ``roll_bytes`` (0: never),
    keeping the newest ``kept`` full ones besides the file being written (TensorBoard reads every
    event file of a directory as one run)."""

    def __init__(self, logdir: str | os.PathLike[str], roll_bytes: int = 0, kept: int = 0) -> None:
        self.logdir = os.fspath(logdir)
        self.roll_bytes = roll_bytes
        self.kept = kept
        self._writer: Any = None

    def write(self, step: int, metrics: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        from streaming_lstm.storage.fs import filesystem, is_local

        summary = batch_summary(metrics, weights)
        if is_local(self.logdir):
            if self._writer is not None and self.roll_bytes and self._writer.size() >= self.roll_bytes:
                self._roll()
            if self._writer is None:
                self._writer = EventFile(local_path(self.logdir))
            self._writer.write(step, summary)
            return
        from streaming_lstm.core.tf_import import tf  # gs://: TensorFlow's own file systems

        if self._writer is None:
            # On a scheme TensorFlow lacks (hdfs://, s3a:// without tensorflow-io) this raises, and
            # the trainer turns TensorBoard off with a warning (unsupported() says so up front).
            filesystem(self.logdir).mkdirs(self.logdir)
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default(step=step):
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        self._writer.flush()

    def _roll(self) -> None:
        """Close the full file and delete the oldest beyond ``kept`` (the next write opens a new one)."""
        self._writer.close()
        self._writer = None
        directory = local_path(self.logdir)
        files = event_files(directory)
        for name in files[: max(0, len(files) - self.kept)]:
            os.unlink(os.path.join(directory, name))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
