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

Processes training side by side on one machine (a local master's Spark tasks) each take up to
twice their share of the cores (:func:`task_threads`): while one runs a step's element-wise ops
or its Python, the other's split matmul has both cores. Measured on 2 cores, two tasks of
layers 128,256 (``stream.train_in = workers``, 100 000 rows at mini-batch 256): two threads each
1.2x one each; 20 000 rows at 64 1.1x; at 32 equal. The driver's task groups, which train side by
side in one process (``stream.train_in``), share that process's one pool: it gets all the cores
the policy gives (two groups at mini-batch 256 on two: 10.1 s against 12.5 s with one thread).
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


def task_threads(model: LSTMConfig, batch_size: int, cores: int, tasks: int) -> int:
    """Intra-op threads for each of ``tasks`` processes training side by side on ``cores`` cores:
    :func:`intra_op_threads` on twice a process's share of the cores, at most all of them."""
    share = max(1, cores // max(1, tasks))
    return intra_op_threads(model, batch_size, min(max(1, cores), 2 * share))
