"""drift: labels permuted mid-stream; batches until ADWIN raises the alarm and until the prequential
accuracy recovers (>= 0.9 over a batch), with and without a shorter half-life during the alarm.

Like bench/averaging.py it runs the trainer's pure pieces (train_partition per balanced key,
TrainerState.apply, Adwin) batch after batch without Spark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parser as bench_parser
from bench.common import write
from streaming_lstm.core import training
from streaming_lstm.core.config import decay_for_half_life
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.drift import Adwin
from streaming_lstm.core.schedule import local_epochs, mini_batch
from streaming_lstm.core.seeds import task_seed
from streaming_lstm.parse.data import load_csv
from streaming_lstm.trainer.state import TrainerState, Update

ROOT = Path(__file__).resolve().parent.parent


def run(drift_half_life: float, batches_before: int, batches_after: int, batch_rows: int, partitions: int, seed: int) -> dict[str, Any]:
    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.partitions": partitions})
    data = load_csv(ROOT / "data" / "iris.csv", cfg.data)
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    state = TrainerState(cfg, store=None)
    adwin = Adwin(cfg.stream.drift_delta)
    rng = np.random.default_rng(seed)
    permuted = (data.y + 1) % 3  # every class becomes the next one
    accs, alarms = [], []
    left = 0
    for b in range(batches_before + batches_after):
        idx = rng.integers(0, len(data.y), batch_rows)
        y = data.y[idx] if b < batches_before else permuted[idx]
        keys = np.arange(len(idx)) % partitions
        ups, correct = [], 0
        for k in range(partitions):
            sel = keys == k
            r = training.train_partition(
                k,
                state.training_weights(),
                state.norm,
                data.x[idx][sel],
                y[sel],
                spec,
                epochs=local_epochs(cfg.train, state.rows_seen),  # as the trainer: warm-up included
                batch_size=mini_batch(cfg.train, int(state.norm.count), len(data.x[idx][sel])),
                score_steps=cfg.scores_in_steps(),
                trace_size=cfg.train.batch_size,  # as the trainer: the warm-up sizes in the full size's trace
                seed=task_seed(0, b, k),
            )
            ups.append(Update(r.rows, r.weights, r.norm, k))
            correct += r.prequential.correct
        alarm = adwin.update(len(idx), len(idx) - correct)
        if alarm:
            left = cfg.stream.drift_batches
        if drift_half_life > 0:
            state.decay = decay_for_half_life(drift_half_life) if left > 0 else state.base_decay
        left = max(0, left - 1)
        state.apply(b, ups)
        accs.append(correct / len(idx))
        alarms.append(alarm)
    after = range(batches_before, batches_before + batches_after)
    detect = next((b - batches_before + 1 for b in after if alarms[b]), None)
    recover = next((b - batches_before + 1 for b in after if accs[b] >= 0.9), None)
    final = training.score(state.weights, state.norm.transform(data.x), permuted, spec).accuracy
    return {
        "batches_to_detection": detect,
        "batches_to_recovered_accuracy": recover,
        "false_alarms_before": int(sum(alarms[:batches_before])),
        "final_accuracy_on_permuted_iris": final,
        "accuracy_per_batch": accs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = bench_parser("drift", __doc__)
    p.add_argument("--before", type=int, default=12)
    p.add_argument("--after", type=int, default=12)
    p.add_argument("--batch-rows", type=int, default=50)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args(argv)
    results = []
    for hl in (0.0, 0.5):
        runs = [run(hl, args.before, args.after, args.batch_rows, args.partitions, s) for s in range(args.seeds)]
        row = {"drift_half_life_batches": hl, "runs": runs}
        results.append(row)
        if not args.json:
            print(
                f"half-life during alarm {hl or 'unchanged'}: detection after "
                + ", ".join(str(r["batches_to_detection"]) for r in runs)
                + " batches; recovered (>= 0.9) after "
                + ", ".join(str(r["batches_to_recovered_accuracy"]) for r in runs)
                + " batches; false alarms before "
                + ", ".join(str(r["false_alarms_before"]) for r in runs),
                flush=True,
            )
    payload = {"before": args.before, "after": args.after, "batch_rows": args.batch_rows, "partitions": args.partitions, "results": results}
    path = write("drift", payload)
    print(json.dumps(payload) if args.json else f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
