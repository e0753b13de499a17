"""``bench kernel``'s baseline is the kernel of the revision it names: its model, its traced step
and its training loop, none of them the working tree's; and its FLOP counts follow the layers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import lstm_flops_per_row
from bench.kernel import KERNEL_MODULES, old_training


@pytest.fixture
def baseline(tmp_path: Path) -> Iterator[object]:
    module = old_training("HEAD", tmp_path)
    yield module
    for name in [n for n in sys.modules if n == "kernel_old" or n.startswith("kernel_old.")]:
        del sys.modules[name]
    sys.path.remove(str(tmp_path))


def test_the_baseline_trains_with_the_revisions_own_model(baseline: object) -> None:
    """The step (``compiled``) imports the model; a baseline whose copied step imported the working
    tree's model would measure the working tree against itself."""
    compiled = sys.modules["kernel_old.compiled"]
    assert compiled.LSTMStack.__module__ == "kernel_old.model"
    assert baseline.compiled is compiled.compiled  # type: ignore[attr-defined]
    assert {n.split(".")[-1] for n in sys.modules if n.startswith("kernel_old.")} == set(KERNEL_MODULES)


def test_performed_flops_leave_out_what_the_step_does_not_multiply() -> None:
    one_step = lstm_flops_per_row(1, 18, [64], 3)
    # One timestep: no recurrent gradient (h_{-1} = 0), no gradient for the data.
    assert one_step["train_performed"] == one_step["forward"] + 2 * 18 * 256 + 2 * 2 * 64 * 3
    # Two layers, T = 2, counted by hand: forward 96 + 240 + head 6; backward, layer 1: dW 32,
    # dU and dh 64; layer 2: dW and dX 192, dU and dh 144; the head's two products 12.
    two = lstm_flops_per_row(2, 1, [2, 3], 1)
    assert (two["forward"], two["train_performed"]) == (342, 342 + 96 + 336 + 12)
    assert two["train_performed"] < two["train"]


SAME_THREADS = """
import sys, tempfile
from pathlib import Path
import numpy as np
import tensorflow as tf
from bench.kernel import old_training, same_threads
from streaming_lstm.core.weights import LSTMConfig, init_weights
threads = same_threads()
old = old_training("HEAD", Path(tempfile.mkdtemp()))
cfg = LSTMConfig(timesteps=1, features_per_step=2, hidden=(4,), num_classes=2)
spec = old.TrainSpec(cfg, "adam", 0.01, 5.0, 0.0)
x, y = np.zeros((8, 2), np.float32), np.zeros(8, np.int32)
old.fit(init_weights(cfg), x, y, spec, epochs=1, batch_size=4, seed=0, threads=2)  # asks for two
print(threads, tf.config.threading.get_intra_op_parallelism_threads())
"""


def test_both_kernels_measure_on_the_pools_of_this_checkouts_policy() -> None:
    """``same_threads`` fixes TensorFlow's pools before either kernel runs (in a fresh process, as
    ``bench kernel`` runs): a baseline's own first call, asking for other pools, cannot change them."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", SAME_THREADS], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen, in_effect = done.stdout.split()[-2:]
    assert chosen == "1"  # the first shape: layers 128,256 at mini-batch 10 (core/threads.py)
    assert in_effect == "1"
