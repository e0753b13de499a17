"""How much each streaming partition task trains, as a function of how much the model has seen.

An online learner is scored on every row from the first one on (prequential), so its first few
batches weigh on the whole stream's accuracy. A freshly initialised LSTM trained
``train.local_epochs`` times on 50 rows is still near chance: the warm-up gives the first rows more
epochs, decaying linearly to none once ``train.warmup_rows`` rows have been trained::

    epochs(rows_seen) = local_epochs + round(warmup_epochs * max(0, 1 - rows_seen / warmup_rows))

(``round`` is Python's: halves go to the even neighbour.)

Contract: the count depends only on ``rows_seen`` *before* the batch, which every model version
persists; a batch replayed after a crash therefore trains exactly as many epochs as its first
attempt did, and deterministic replay (the kill tests' weight equality) holds with the warm-up on.
"""

from __future__ import annotations

from streaming_lstm.core.config import TrainConfig


def local_epochs(train: TrainConfig, rows_seen: int) -> int:
    """Epochs each partition task trains for a batch that starts after ``rows_seen`` trained rows."""
    if train.warmup_epochs <= 0 or train.warmup_rows <= 0:
        return train.local_epochs
    left = max(0.0, 1.0 - rows_seen / train.warmup_rows)
    return train.local_epochs + round(train.warmup_epochs * left)


def mini_batch(train: TrainConfig, rows_seen: int, rows: int) -> int:
    """The mini-batch a partition task trains its ``rows`` new rows in, when the model has trained
    ``rows_seen`` rows before them (the normaliser's count, saved in every model version).

    ``train.warmup_batch_size`` at the first row, growing linearly to ``train.batch_size`` at
    ``train.warmup_rows``, rounded down to a power of two; a task runs them in the trace of
    ``train.batch_size`` (training.fit's ``trace_size``), so they add no trace. Measured at the
    partition's last row, ``rows_seen + rows``: a first batch that is a backlog of ``warmup_rows`` rows or more
    trains in full mini-batches, only a stream's first few rows in small ones. Small mini-batches
    are many small optimiser steps: a model that has seen nothing learns within its first batch
    (what ``train.prequential = "step"`` then scores), where one step of ``batch_size`` rows
    would not."""
    first, full = train.warmup_batch_size, train.batch_size
    at = rows_seen + rows
    if first <= 0 or first >= full or train.warmup_rows <= 0 or at >= train.warmup_rows:
        return full
    grown = first + (full - first) * at / train.warmup_rows
    return min(full, 1 << (int(grown).bit_length() - 1))
