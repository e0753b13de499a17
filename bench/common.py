"""Helpers shared by the benchmarks: machine facts and writing results."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(), "machine": platform.machine()}


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "date": _dt.date.today().isoformat(), "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def synthetic_rows(n: int, seed: int = 0) -> list[str]:
    """Iris-like CSV rows: real Iris rows plus small Gaussian noise, labels kept."""
    import numpy as np

    root = Path(__file__).resolve().parent.parent
    lines = (root / "data" / "iris.csv").read_text().splitlines()[1:]
    x = np.array([[float(v) for v in line.split(",")[:4]] for line in lines])
    y = [line.split(",")[4] for line in lines]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(lines), n)
    noisy = x[idx] + rng.normal(0, 0.05, (n, 4))
    return [f"{a:.3f},{b:.3f},{c:.3f},{d:.3f},{y[i]}" for (a, b, c, d), i in zip(noisy, idx, strict=True)]


class FileFeed:
    """A directory watched by the file source; each :meth:`batch` drops one file = one micro-batch."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def batch(self, rows: list[str]) -> None:
        tmp = self.dir / f".{self.n}.tmp"
        tmp.write_text("\n".join(rows) + "\n")
        tmp.rename(self.dir / f"b{self.n:05d}.csv")  # atomic: the source never sees half a file
        self.n += 1


def lstm_flops_per_row(timesteps: int, features_per_step: int, hidden: list[int], classes: int) -> dict[str, float]:
    """Matmul FLOPs of one row: forward = sum_l T * (2*F_l*4H_l + 2*H_l*4H_l) + 2*H_L*C;
    ``train`` ~ 3 x forward (the backward pass costs about twice the forward, the usual count);
    ``train_performed`` the FLOPs the hand-written step multiplies (model.py): the forward, then
    per layer dW = X^T dZ over T steps, dU = H^T dZ and dh = dz U^T over the T - 1 steps after
    the first (h_{-1} = 0), dX = dZ W^T for every layer but the first (its input is data), and
    the head's two. Element-wise gate arithmetic is left out (O(T*H), small against the O(T*H^2)
    matmuls)."""
    fwd = backward = 0.0
    fan_in = features_per_step
    for layer, h in enumerate(hidden):
        fwd += timesteps * (2 * fan_in * 4 * h + 2 * h * 4 * h)
        backward += timesteps * 2 * fan_in * 4 * h * (2 if layer > 0 else 1) + 2 * (timesteps - 1) * 2 * h * 4 * h
        fan_in = h
    fwd += 2 * fan_in * classes
    backward += 2 * 2 * fan_in * classes
    return {"forward": fwd, "train": 3 * fwd, "train_performed": fwd + backward}


def matmul_peak_gflops(threads: int = 0, n: int = 1024, seconds: float = 3.0) -> float:
    """Measured float32 matrix-multiply rate of TensorFlow on this machine (GFLOP/s)."""
    import time

    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    f()
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        f().numpy()
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e9


def panels(rows: int, height: float, cols: int = 1, width: float = 9.0) -> tuple[Any, Any, Any]:
    """A grid of matplotlib panels drawn without a display (Agg): (pyplot, figure, axes 2-D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    return plt, fig, axes


def setting(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: the value as JSON where it parses (numbers, booleans, lists), else text."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, ``python -m bench NAME``, with the ``--json`` every benchmark takes
    (one JSON object on standard output instead of the text summary)."""
    p = argparse.ArgumentParser(prog=f"python -m bench {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p
