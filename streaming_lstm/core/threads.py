"""How many TensorFlow threads a training process uses (no TensorFlow import: the driver asks too).

TensorFlow splits one op across its intra-op threads and runs independent ops side by side on its
inter-op threads. A step of this LSTM is a chain of small ops (per timestep: one recurrent matmul
and a few element-wise ones per layer); below a size, splitting a matmul costs more in handing
work over than it saves. A stack of layers has independent ops to overlap without splitting any
(layer 2's step t beside layer 1's step t + 1), so the break-even size grows with the layers.
Measured on 2 cores, ``training.fit`` in fresh processes, one against two intra-op threads
(docs/benchmarks.md, "threads"): one layer of 256 gains 1.55x from two threads at mini-batch 32
(8.4 M multiply-adds per recurrent matmul) and none at 16; layers 128,256 lose 7 % with two at
mini-batch 32 and gain 1.2x at 64 (16.8 M) and 1.6x at 256.
"""

from __future__ import annotations

import os

from streaming_lstm.core.weights import LSTMConfig

# Multiply-adds of the widest recurrent matmul, (B, H) x (H, 4H), per layer of the stack, from which
# splitting it across threads pays (the measurements above).
SPLIT_MATMUL_MACS = 1 << 23
INTER_OP_THREADS = 2


def intra_op_threads(model: LSTMConfig, batch_size: int, cores: int | None = None) -> int:
    """Intra-op threads for training ``model`` at mini-batches of ``batch_size`` with ``cores``
    cores to itself (default: the machine's): all of them once the widest layer's recurrent
    matmul has :data:`SPLIT_MATMUL_MACS` multiply-adds per layer, else one."""
    cores = max(1, cores if cores is not None else os.cpu_count() or 1)
    widest = max(model.hidden)
    return cores if batch_size * widest * 4 * widest >= SPLIT_MATMUL_MACS * len(model.hidden) else 1
