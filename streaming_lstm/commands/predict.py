"""``streaming-lstm predict``: score a CSV file, or a stream, with the newest model version."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from streaming_lstm.commands.common import add_remote, interrupt_exits_quietly, source_parent, strict_parent
from streaming_lstm.commands.output import warn
from streaming_lstm.core.config import ConfigError, parse_duration
from streaming_lstm.storage.metrics import accuracy_note


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        parents=[strict_parent(), source_parent(required=False)],
        help="score a CSV file, or a stream, with the newest model",
        description=(
            "Score rows with the newest model version: a CSV file (--data), or a stream (--source), picking up "
            "new versions as the trainer writes them. JSON lines out, one per row: value, class, probabilities, "
            'model_version, scored_at; a row that cannot be parsed gets an "error" line instead. Each micro-batch '
            "checks for a newer version before and after scoring, so a version is in use within about one trigger. "
            "A stream's predictions can also go to a Kafka topic and a Parquet table (--sink); a batch replayed "
            "after a crash is scored by the version recorded for it and writes the same records."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="trainer checkpoint or model directory")
    p.add_argument("--data", metavar="CSV", help="score this file and exit: one output line per row, in order")
    p.add_argument("--out", metavar="PATH", help="--sink jsonl: append JSON lines to this file (default: standard output); --sink parquet: the directory")
    out = p.add_argument_group("where stream predictions go (trainer/prediction_sinks.py has each sink's guarantee)")
    out.add_argument(
        "--sink",
        action="append",
        choices=("jsonl", "kafka", "parquet"),
        help="jsonl (default), kafka (a topic: key = the row's id, value = the JSON line) or parquet (DIR/batch_id=N/, exactly once); repeatable",
    )
    out.add_argument("--out-topic", metavar="TOPIC", help="--sink kafka: the topic to write")
    out.add_argument("--out-bootstrap", metavar="SERVERS", help="--sink kafka: its brokers (default: --bootstrap, with the same --kafka-option settings)")
    p.add_argument("--checkpoint", default="runs/predict-checkpoint", metavar="DIR", help="the prediction query's own Spark checkpoint")
    p.add_argument(
        "--trigger",
        default="1s",
        help="micro-batch interval, e.g. 1s or 500ms (default 1s); also how long a new model version can wait before it scores rows",
    )
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without new rows (counted from the end of the last batch)")
    add_remote(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.data and args.source:
        raise ConfigError(f"predict takes --data CSV or --source {args.source}, not both")
    if not args.data and not args.source:
        raise ConfigError("predict needs --data CSV, or --source socket|kafka|file for a stream")
    if args.data and (args.sink or args.out_topic):
        raise ConfigError("--sink and --out-topic are for streams (--source); predict --data writes JSON lines to --out or standard output")
    trigger_ms = int(parse_duration(args.trigger, "--trigger") * 1000)  # before Spark starts: fail fast
    if args.source:  # the sink flags, before --out is opened
        from streaming_lstm.trainer.predictor import sink_spec
        from streaming_lstm.trainer.sources import SourceSpec

        sink_spec(args, SourceSpec.from_args(args))
    jsonl = args.data or "jsonl" in (args.sink or ["jsonl"])
    out = open(args.out, "a") if args.out and jsonl else sys.stdout  # noqa: SIM115 - closed below
    try:
        if args.data:
            return score_file(args, out)
        interrupt_exits_quietly()
        from streaming_lstm.trainer.predictor import run_cli

        run_cli(args, out, trigger_ms)
        return 0
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(Exception):
                out.close()


def score_file(args: argparse.Namespace, out: Any) -> int:
    from streaming_lstm.commands.standalone import PredictSummary, predict_csv

    summary = PredictSummary()
    for record in predict_csv(args.model, args.data, summary, strict=args.strict):
        out.write(json.dumps(record, allow_nan=False) + "\n")
    warn(summary.warnings)
    skipped = f", {summary.headers_skipped} header line{'s' if summary.headers_skipped != 1 else ''} skipped" if summary.headers_skipped else ""
    accuracy = accuracy_note(summary.rows_labelled, summary.rows_correct)
    print(f'streaming-lstm: scored {summary.rows_scored} rows, {summary.rows_rejected} rejected (an "error" line each){skipped}{accuracy}', file=sys.stderr)
    return 0
