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
