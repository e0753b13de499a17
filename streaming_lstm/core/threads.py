"""How many TensorFlow threads a training process uses (no TensorFlow import: the driver asks too).

TensorFlow splits one op across its intra-op threads and runs independent ops side by side on its
inter-op threads. A step of this LSTM is a chain of small ops (per timestep: one recurrent matmul
and a few element-wise ones per layer); below a size, splitting a matmul costs more in handing
work over than it saves, while the unrolled graph always has independent ops to overlap (layer 2's
step t beside layer 1's step t + 1). Measured on 2 cores, layers 128,256, ``training.fit`` in
fresh processes (docs/benchmarks.md, "threads"): one intra-op thread and two inter-op threads
train mini-batches of 10 to 128 rows faster than two and two, and mini-batches of 256 slower.
"""

from __future__ import annotations

import os

from streaming_lstm.core.weights import LSTMConfig

# Multiply-adds of one recurrent matmul, (B, H) x (H, 4H), from which splitting it across threads
# pays: between the measured 128 x 256 x 1024 (one thread faster) and 256 x 256 x 1024 (two faster).
SPLIT_MATMUL_MACS = 1 << 26
INTER_OP_THREADS = 2


def intra_op_threads(model: LSTMConfig, batch_size: int, cores: int | None = None) -> int:
    """Intra-op threads for training ``model`` at mini-batches of ``batch_size`` with ``cores``
    cores to itself (default: the machine's): all of them once the largest layer's recurrent
    matmul is large enough to split, else one."""
    cores = max(1, cores if cores is not None else os.cpu_count() or 1)
    widest = max(model.hidden)
    return cores if batch_size * widest * 4 * widest >= SPLIT_MATMUL_MACS else 1
