"""TensorBoard event files for the trainer: prequential accuracy and loss, train loss, rows/s, batch
latency, drift alarms and weight histograms, one step per batch id.

Not named tensorboard.py on purpose: under ``spark-submit streaming_lstm/cli.py`` this directory is
first on sys.path, and the module would shadow the real ``tensorboard`` package.

TensorFlow is imported on first use only, so a trainer with ``stream.tensorboard = false`` never
loads it in the driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

SCALARS = {
    "prequential/accuracy": "prequential_accuracy",
    "prequential/loss": "prequential_loss",
    "train/loss": "train_loss",
    "throughput/rows_per_s": "rows_per_s",
    "latency/batch_s": "latency_s",
    "rows/valid": "rows_valid",
    "rows/dead_lettered": "rows_dead",
    "drift/alarm": "drift",
}


class TensorBoardLog:
    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self._writer: Any = None

    def write(self, step: int, metrics: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        import tensorflow as tf

        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        with self._writer.as_default(step=step):
            for tag, key in SCALARS.items():
                value = metrics.get(key)
                if value is not None and np.isfinite(float(value)):
                    tf.summary.scalar(tag, float(value))
            for name, w in weights.items():
                tf.summary.histogram(f"weights/{name}", w)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
