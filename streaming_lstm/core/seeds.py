"""Seeds: every random choice of a training run derives from the model seed, the batch id and a
stream number, so a replayed batch makes exactly the same choices (numpy only)."""

from __future__ import annotations

import numpy as np

KEYING_STREAM = 2**32 - 1  # seed stream of a batch's key shift, apart from the partition keys 0..P-1


def task_seed(base_seed: int, batch_id: int, key: int) -> int:
    """The seed of one training call, from the model seed, the batch id and the partition key.

    A replayed batch gets the same seed, so it reproduces the same weights. The standalone trainer
    is "batch 0, partition 0".
    """
    return int(np.random.SeedSequence([base_seed, batch_id, key]).generate_state(1)[0])


def key_shift(base_seed: int, batch_id: int, partitions: int) -> int:
    """How far a batch's keys are rotated: seeded by the batch id, so no key always gets the remainder."""
    return task_seed(base_seed, batch_id, KEYING_STREAM) % partitions
