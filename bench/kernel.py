"""kernel: the training kernel of this checkout against the one of an earlier commit, side by side.

``training.fit`` of the working tree and ``training.fit`` of ``--against`` (a git revision; its
``model.py``, ``compiled.py`` and ``training.py`` are copied out of git into a temporary package,
so both kernels live in one process) train the same rows from the same weights. Each shape runs
in a fresh process on the thread pools this checkout's policy (``core/threads.py``) picks for it,
set before either kernel runs: a revision's own first call would otherwise pick them for both
(7e360e5's left TensorFlow's defaults, two intra-op threads at every shape). The kernels
alternate ``--runs`` times (each kernel first in every other run), per shape: the seed's 128,256
at mini-batch 10 and 256, and a 64-unit model at mini-batch 10 with 4 steps of one feature and
one step of 18 features. Reports rows/s of each, the ratio new / old per
alternation (min/median/max) and the largest weight difference between the two kernels' results
(float rounding of a different but equal computation; replay within one kernel stays exact).
Then the first call of each kernel (``fit`` of 64 rows: building the model and tracing the training
loop, what every process pays once per shape), each in a fresh process after TensorFlow's import,
alternating ``--trace-runs`` times per shape. Writes bench/results/kernel.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parser as bench_parser
from bench.common import write

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [  # name, timesteps, features per step, hidden, rows (about a second of training each), mini-batch
    ("128,256 mini-batch 10", 4, 1, (128, 256), 1500, 10),
    ("64 mini-batch 10", 4, 1, (64,), 15000, 10),
    ("64 one step of 18 features, mini-batch 10", 1, 18, (64,), 30000, 10),
    ("128,256 mini-batch 256", 4, 1, (128, 256), 10000, 256),
]


# Copied from the revision, their imports of each other rewritten; every other module is shared.
# ``compiled`` holds the traced step (it imports ``model``); older revisions kept it in ``training``.
KERNEL_MODULES = ("model", "compiled", "training")


def git_show(rev: str, name: str) -> str | None:
    """``name``.py of the kernel at ``rev`` (the modules moved into ``core/``), None where it has none."""
    for path in (f"streaming_lstm/core/{name}.py", f"streaming_lstm/{name}.py"):
        done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
    return None


def old_training(rev: str, into: Path) -> Any:
    """``streaming_lstm.core.training`` as of ``rev``, importable beside the current one as ``kernel_old``."""
    write_old_kernel(rev, into)
    sys.path.insert(0, str(into))
    return importlib.import_module("kernel_old.training")


def write_old_kernel(rev: str, into: Path) -> None:
    """The package ``kernel_old`` under ``into``: the kernel's modules of ``rev``, importing each other."""
    pkg = into / "kernel_old"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in KERNEL_MODULES:
        text = git_show(rev, name)
        if text is None:
            if name != "compiled":
                raise SystemExit(f"{rev} has no streaming_lstm/core/{name}.py")
            continue
        for module in KERNEL_MODULES:
            text = text.replace(f"from streaming_lstm.core.{module} import", f"from kernel_old.{module} import")
        (pkg / f"{name}.py").write_text(text)


def same_threads(shape: int = 0) -> int:
    """Set this process's TensorFlow pools as this checkout's policy does for ``SHAPES[shape]``
    (before either kernel runs, so that both measure on them); returns the intra-op threads."""
    from streaming_lstm.core.compiled import configure_threads
    from streaming_lstm.core.tf_import import tf
    from streaming_lstm.core.threads import intra_op_threads
    from streaming_lstm.core.weights import LSTMConfig

    _, steps, feats, hidden, _, batch = SHAPES[shape]
    threads = intra_op_threads(LSTMConfig(timesteps=steps, features_per_step=feats, hidden=hidden, num_classes=3), batch)
    configure_threads(threads)
    tf.zeros(())  # TensorFlow starts its pools now: a revision's own settings come too late to apply
    return threads


FIRST_CALL = """
import importlib, json, sys, time
import numpy as np
training = importlib.import_module(sys.argv[1])
from streaming_lstm.core.weights import LSTMConfig, init_weights
steps, feats, hidden, batch = json.loads(sys.argv[2])
cfg = LSTMConfig(timesteps=steps, features_per_step=feats, hidden=tuple(hidden), num_classes=3)
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, steps * feats)).astype(np.float32), rng.integers(0, 3, 64).astype(np.int32)
spec = training.TrainSpec(cfg, "adam", 0.01, 5.0, 0.0)
started = time.perf_counter()
training.fit(init_weights(cfg), x, y, spec, epochs=1, batch_size=batch, seed=0)
print(json.dumps(time.perf_counter() - started))
"""


def first_calls(old_dir: Path, runs: int, say: Any) -> dict[str, Any]:
    """Seconds of each kernel's first ``fit`` per shape, each in a fresh process (FIRST_CALL)."""
    modules = {"old": "kernel_old.training", "new": "streaming_lstm.core.training"}
    env_path = f"{old_dir}:{ROOT}"
    results: dict[str, Any] = {}
    for name, steps, feats, hidden, _n, batch in SHAPES:
        seconds: dict[str, list[float]] = {"old": [], "new": []}
        for run in range(runs):
            for k in ("old", "new") if run % 2 == 0 else ("new", "old"):
                shape = json.dumps([steps, feats, list(hidden), batch])
                done = subprocess.run(
                    [sys.executable, "-c", FIRST_CALL, modules[k], shape],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": env_path},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds[k].append(float(done.stdout.strip().splitlines()[-1]))
        ratios = [a / b for a, b in zip(seconds["new"], seconds["old"], strict=True)]
        results[name] = {"old_first_call_s": seconds["old"], "new_first_call_s": seconds["new"], "new_over_old": ratios}
        old_s, new_s = statistics.median(seconds["old"]), statistics.median(seconds["new"])
        say(f"{name}, first call: old {old_s:.2f} s, new {new_s:.2f} s; new/old median {statistics.median(ratios):.2f}", flush=True)
    return results


def measure_shape(rev: str, index: int, runs: int) -> dict[str, Any]:
    """``SHAPES[index]``: both kernels alternating ``runs`` times in this (fresh) process, on the
    pools this checkout's policy picks for the shape (:func:`same_threads`)."""
    from streaming_lstm.core import training
    from streaming_lstm.core.weights import LSTMConfig, init_weights

    threads = same_threads(index)
    _name, steps, feats, hidden, n, batch = SHAPES[index]
    with tempfile.TemporaryDirectory() as tmp:
        kernels = {"old": old_training(rev, Path(tmp)), "new": training}
        cfg = LSTMConfig(timesteps=steps, features_per_step=feats, hidden=hidden, num_classes=3)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, steps * feats)).astype(np.float32)
        y = rng.integers(0, 3, n).astype(np.int32)
        w = init_weights(cfg)
        specs = {k: m.TrainSpec(cfg, "adam", 0.01, 5.0, 0.0) for k, m in kernels.items()}
        for k, m in kernels.items():
            m.fit(w, x[:64], y[:64], specs[k], epochs=1, batch_size=batch, seed=0)  # trace
        rps: dict[str, list[float]] = {"old": [], "new": []}
        out: dict[str, Any] = {}
        for run in range(runs):
            for k in ("old", "new") if run % 2 == 0 else ("new", "old"):  # neither always runs first
                started = time.perf_counter()
                out[k], _loss = kernels[k].fit(w, x, y, specs[k], epochs=1, batch_size=batch, seed=1)
                rps[k].append(n / (time.perf_counter() - started))
    ratios = [a / b for a, b in zip(rps["new"], rps["old"], strict=True)]
    diff = max(float(np.abs(out["old"][k] - out["new"][k]).max()) for k in out["old"])
    return {"intra_op_threads": threads, "old_rows_per_s": rps["old"], "new_rows_per_s": rps["new"], "new_over_old": ratios, "max_weight_difference": diff}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("kernel", __doc__)
    p.add_argument("--against", default="HEAD", help="git revision whose kernel is the baseline (default HEAD: measure uncommitted changes)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--trace-runs", type=int, default=3, help="fresh processes per kernel and shape timing the first call (0: skip)")
    p.add_argument("--shape", type=int, help=argparse.SUPPRESS)  # a child process: one shape, its result as JSON
    args = p.parse_args(argv)
    say = (lambda *_a, **_k: None) if args.json else print
    rev = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()

    if args.shape is not None:
        print(json.dumps(measure_shape(rev, args.shape, args.runs)))
        return {}
    results = {}
    for index, (name, *_shape) in enumerate(SHAPES):
        argv_child = [sys.executable, "-m", "bench", "kernel", "--against", rev, "--runs", str(args.runs), "--shape", str(index)]
        done = subprocess.run(argv_child, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench kernel: the shape {name!r} failed:\n{done.stderr[-3000:]}")
        r = results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        old_rps, new_rps, ratios = r["old_rows_per_s"], r["new_rows_per_s"], r["new_over_old"]
        say(
            f"{name} ({r['intra_op_threads']} intra-op thread(s)): {rev} {statistics.median(old_rps):.0f} rows/s, this checkout "
            f"{statistics.median(new_rps):.0f}; new/old min {min(ratios):.2f} median {statistics.median(ratios):.2f} max "
            f"{max(ratios):.2f}; max |weight diff| {r['max_weight_difference']:.1e}",
            flush=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        write_old_kernel(rev, Path(tmp))  # for the first calls' processes
        first = first_calls(Path(tmp), args.trace_runs, say) if args.trace_runs > 0 else {}
    payload = {"against": rev, "runs": args.runs, "shapes": results, "first_call": first}
    path = write("kernel", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
