"""``streaming-lstm evaluate``: accuracy, loss and the confusion matrix of a saved model on a CSV file."""

from __future__ import annotations

import argparse
from typing import Any

from streaming_lstm.commands.common import json_parent, strict_parent
from streaming_lstm.commands.output import print_result, warn
from streaming_lstm.storage.fs import filesystem
from streaming_lstm.storage.store import ModelStore


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[strict_parent(), json_parent()],
        help="score a saved model on a CSV file",
        description="Print accuracy, loss and the confusion matrix of the newest version in a model directory (or a trainer checkpoint).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory, or a trainer checkpoint directory")
    p.add_argument("--data", required=True, metavar="CSV", help="labelled rows in the model's column layout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ModelStore.load_latest_or_raise(args.model)  # a missing or broken model answers before TensorFlow loads
    if not filesystem(args.data).exists(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file")
    from streaming_lstm.commands import standalone

    saved, ev = standalone.evaluate(args.model, args.data, strict=args.strict)
    warn(ev.warnings)
    result = {"model": str(args.model), "version": saved.version, **ev.to_dict()}
    print_result(result, args.json, f"model version {saved.version}\n{ev.format()}")
    return 0
