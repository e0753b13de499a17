"""Which averaging defaults learn best: prequential accuracy on a shuffled, looping Iris replay.

Runs the trainer's own pure pieces (training.train_partition per balanced key, then
TrainerState.apply) in one process, batch after batch, without Spark: the Spark path computes the
same thing (tests/test_streaming.py ties the two). Reports, per setting, the prequential accuracy
over the last 150 rows, the rows until the rolling 150-row prequential accuracy first reaches 0.95,
and the final model's accuracy on Iris.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parser as bench_parser
from bench.common import write
from streaming_lstm.core import training
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.schedule import local_epochs, mini_batch
from streaming_lstm.core.seeds import key_shift, task_seed
from streaming_lstm.parse.data import load_csv
from streaming_lstm.trainer.state import TrainerState, Update

ROOT = Path(__file__).resolve().parent.parent

SETTINGS: list[dict[str, Any]] = [
    {"stream.decay": 0.0, "stream.train_from": "batch", "train.local_learning_rate": 0.003},
    {"stream.half_life_batches": 2.0, "stream.train_from": "batch", "train.local_learning_rate": 0.003},
    {"stream.half_life_batches": 2.0, "stream.train_from": "running", "train.local_learning_rate": 0.003},
    {"stream.decay": 1.0, "stream.train_from": "batch", "train.local_learning_rate": 0.003},
    {"stream.decay": 1.0, "stream.train_from": "running", "train.local_learning_rate": 0.003},
    {"stream.decay": 0.0, "train.local_learning_rate": 0.01},  # a = 0: the running average is the batch's
    {"stream.half_life_batches": 2.0, "stream.train_from": "batch", "train.local_learning_rate": 0.01},
    {"stream.half_life_batches": 4.0, "stream.train_from": "batch", "train.local_learning_rate": 0.01},
    {"stream.half_life_batches": 2.0, "stream.train_from": "batch", "train.local_learning_rate": 0.01, "train.local_epochs": 10},
    {"stream.half_life_batches": 2.0, "stream.train_from": "batch", "train.local_learning_rate": 0.02},
    {},  # the defaults: half-life 2, train from the running average, local lr 0.01 (conf/iris.toml)
    {"stream.half_life_batches": 1.0},
    {"stream.half_life_batches": 4.0},
    # Robust aggregation: what it costs in learning (4 partitions, so a median has something to do).
    {"stream.partitions": 4, "stream.aggregation": "mean"},
    {"stream.partitions": 4, "stream.aggregation": "median"},
    {"stream.partitions": 4, "stream.aggregation": "trimmed_mean", "stream.trim_fraction": 0.25},
]


def replay(overrides: dict[str, Any], copies: int, batch_rows: int, partitions: int, seed: int = 0) -> dict[str, Any]:
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.partitions": partitions, **overrides})
    partitions = cfg.stream.partitions
    data = load_csv(ROOT / "data" / "iris.csv", cfg.data)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(data.y)) for _ in range(copies)])
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    state = TrainerState(cfg, store=None)
    correct_per_row: list[float] = []
    started = time.perf_counter()
    for batch_id, start in enumerate(range(0, len(order), batch_rows)):
        idx = order[start : start + batch_rows]
        shift = key_shift(cfg.model.seed, batch_id, partitions)
        keys = (np.arange(len(idx)) + shift) % partitions
        updates, batch_correct = [], 0
        for key in range(partitions):
            rows = idx[keys == key]
            if len(rows) == 0:
                continue
            r = training.train_partition(
                key,
                state.training_weights(),
                state.norm,
                data.x[rows],
                data.y[rows],
                spec,
                epochs=local_epochs(cfg.train, state.rows_seen),  # as the trainer: warm-up included
                batch_size=mini_batch(cfg.train, int(state.norm.count), len(data.x[rows])),
                score_steps=cfg.scores_in_steps(),
                trace_size=cfg.train.batch_size,  # as the trainer: the warm-up sizes in the full size's trace
                seed=task_seed(cfg.model.seed, batch_id, key),
            )
            updates.append(Update(r.rows, r.weights, r.norm, key))
            batch_correct += r.prequential.correct
        # Per-row correctness is not kept by the trainer; spread the batch's count evenly.
        correct_per_row.extend([batch_correct / len(idx)] * len(idx))
        state.apply(batch_id, updates)
    seconds = time.perf_counter() - started
    c = np.array(correct_per_row)
    rolling = np.convolve(c, np.ones(150), "valid") / 150
    reached = int(np.argmax(rolling >= 0.95)) + 150 if (rolling >= 0.95).any() else None
    final = training.score(state.weights, state.norm.transform(data.x), data.y, spec)
    return {
        "settings": overrides,
        "prequential_last_150": float(c[-150:].mean()),
        "rows_to_rolling_095": reached,
        "final_iris_accuracy": final.accuracy,
        "seconds": round(seconds, 2),
    }


def aggregation_cost_ms(partitions: int = 15, hidden: tuple[int, ...] = (128, 256), reps: int = 5) -> dict[str, float]:
    """Driver time to aggregate ``partitions`` updates of the seed-sized model, per method (ms)."""
    from streaming_lstm.core.weights import LSTMConfig, flatten, init_weights
    from streaming_lstm.trainer.state import aggregate

    lstm = LSTMConfig(4, 1, hidden, 3)
    vectors = np.stack([flatten(init_weights(lstm, seed=k)) for k in range(partitions)])
    rows = np.full(partitions, 10.0)
    out = {"parameters": float(vectors.shape[1])}
    for method in ("mean", "median", "trimmed_mean"):
        started = time.perf_counter()
        for _ in range(reps):
            aggregate(vectors, rows, method, 0.2)
        out[method] = (time.perf_counter() - started) / reps * 1000
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("averaging", __doc__)
    p.add_argument("--copies", type=int, default=6, help="Iris replays (default 6 = 900 rows)")
    p.add_argument("--batch-rows", type=int, default=50)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2, help="replay orders averaged per setting")
    args = p.parse_args(argv)
    rows = []
    for s in SETTINGS:
        runs = [replay(s, args.copies, args.batch_rows, args.partitions, seed) for seed in range(args.seeds)]
        reached = [r["rows_to_rolling_095"] for r in runs]
        row = {
            "settings": s,
            "prequential_last_150": float(np.mean([r["prequential_last_150"] for r in runs])),
            "rows_to_rolling_095": None if None in reached else float(np.mean(reached)),
            "final_iris_accuracy": float(np.mean([r["final_iris_accuracy"] for r in runs])),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
        }
        rows.append(row)
        if not args.json:
            print(json.dumps(row), flush=True)
    cost = aggregation_cost_ms()
    if not args.json:
        print(
            f"aggregating 15 partitions of {cost['parameters']:.0f} parameters: "
            + ", ".join(f"{m} {cost[m]:.1f} ms" for m in ("mean", "median", "trimmed_mean"))
        )
    payload = {
        "copies": args.copies,
        "batch_rows": args.batch_rows,
        "partitions": args.partitions,
        "seeds": args.seeds,
        "results": rows,
        "aggregation_cost_ms": cost,
    }
    path = write("averaging", payload)
    if args.json:
        print(json.dumps(payload))
    else:
        print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
