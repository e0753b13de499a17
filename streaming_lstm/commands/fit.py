"""``streaming-lstm fit``: train in one process (no Spark) on a CSV file and save a model directory."""

from __future__ import annotations

import argparse
from typing import Any

from streaming_lstm.commands.common import config_from_args, config_parent, json_parent, strict_parent
from streaming_lstm.commands.output import print_result, warn
from streaming_lstm.storage.fs import filesystem
from streaming_lstm.storage.store import check_compatible


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "fit",
        parents=[strict_parent(), json_parent(), config_parent()],
        help="train in one process (no Spark) and save a model directory",
        description="Train the LSTM in one process on a CSV file; optionally hold out a stratified, seeded share of each class and report its accuracy.",
    )
    p.add_argument("--data", required=True, metavar="CSV", help="labelled rows (a header line is optional)")
    p.add_argument("--out", default="runs/model", metavar="DIR", help="model directory to write; a new version is added (default runs/model)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION", help="share of each class held out for scoring, e.g. 0.3 (default 0: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # these three answer before TensorFlow loads
    if not filesystem(args.data).exists(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file")
    check_compatible(args.out, cfg, "--out")
    from streaming_lstm.commands import standalone

    r = standalone.fit(cfg, args.data, args.out, args.holdout, strict=args.strict)
    warn(r["warnings"])
    lines = [f"trained {r['rows_trained']} rows for {r['epochs']} epochs in {r['seconds']:.1f} s, final train loss {r['train_loss']:.4f}"]
    if r["rows_rejected"] or r["headers_skipped"]:
        lines.append(f"rejected rows: {r['rows_rejected'] or 0}; header lines skipped: {r['headers_skipped']}")
    if "holdout_accuracy" in r:
        lines.append(f"held-out accuracy {r['holdout_accuracy']:.4f} on {r['holdout_rows']} rows (loss {r['holdout_loss']:.4f})")
    lines.append(f"model version {r['version']} written to {r['model']}")
    print_result(r, args.json, "\n".join(lines))
    return 0
