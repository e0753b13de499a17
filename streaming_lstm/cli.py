"""The ``streaming-lstm`` command. Heavy imports (TensorFlow, Spark) happen inside subcommands so
that ``--help`` and configuration errors answer at once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming_lstm.config import AppConfig, ConfigError, load_config

DEFAULT_CONF = "conf/iris.toml"

EPILOG = """\
configuration: typed defaults in code, then the TOML file given by --conf (default
conf/iris.toml), then command-line flags; --set section.key=value sets any key.
Unknown keys and impossible values are errors that name the key.

examples:
  streaming-lstm fit --data data/iris.csv --out runs/iris --holdout 0.3
  streaming-lstm evaluate --model runs/iris --data data/iris.csv
  streaming-lstm train --source file --path incoming/ --checkpoint runs/ck --idle-timeout 20
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--conf", metavar="TOML", help=f"configuration file (default: {DEFAULT_CONF} if it exists)")
    g.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="settings", help="override any key, e.g. --set train.learning_rate=0.003 (repeatable)"
    )
    g.add_argument("--epochs", type=int, help="standalone training epochs (train.epochs)")
    g.add_argument("--local-epochs", type=int, help="epochs per streaming partition task (train.local_epochs)")
    g.add_argument("--hidden", metavar="H1,H2,..", help="LSTM layer sizes, e.g. 128,256 (model.hidden)")
    g.add_argument("--seed", type=int, help="model seed (model.seed)")


FLAG_KEYS = {
    "epochs": "train.epochs",
    "local_epochs": "train.local_epochs",
    "hidden": "model.hidden",
    "seed": "model.seed",
    "partitions": "stream.partitions",
    "trigger": "stream.trigger",
    "master": "spark.master",
    "max_offsets_per_trigger": "stream.max_offsets_per_trigger",
    "starting_offsets": "stream.starting_offsets",
}


def config_from_args(args: argparse.Namespace) -> AppConfig:
    overrides: dict[str, Any] = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    path = args.conf
    if path is None:
        if not Path(DEFAULT_CONF).exists():
            raise ConfigError(f"no --conf given and {DEFAULT_CONF} not found in {Path.cwd()}: pass --conf FILE")
        path = DEFAULT_CONF
    return load_config(path, overrides)


def _print(result: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(result, sort_keys=True) if as_json else text)


def cmd_fit(args: argparse.Namespace) -> int:
    from streaming_lstm import standalone

    cfg = config_from_args(args)
    r = standalone.fit(cfg, args.data, args.out, args.holdout)
    lines = [f"trained {r['rows_trained']} rows for {r['epochs']} epochs in {r['seconds']:.1f} s, final train loss {r['train_loss']:.4f}"]
    if r["rows_rejected"]:
        lines.append(f"rejected rows: {r['rows_rejected']}")
    if "holdout_accuracy" in r:
        lines.append(f"held-out accuracy {r['holdout_accuracy']:.4f} on {r['holdout_rows']} rows (loss {r['holdout_loss']:.4f})")
    lines.append(f"model version {r['version']} written to {r['model']}")
    _print(r, args.json, "\n".join(lines))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from streaming_lstm import standalone

    saved, ev = standalone.evaluate(args.model, args.data)
    result = {"model": str(args.model), "version": saved.version, **ev.to_dict()}
    _print(result, args.json, f"model version {saved.version}\n{ev.format()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from streaming_lstm import runner

    cfg = config_from_args(args)
    return runner.run_cli(cfg, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streaming-lstm",
        description="Learn a from-scratch TensorFlow LSTM online from a live stream with Spark Structured Streaming.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "fit",
        help="train in one process (no Spark) and save a model directory",
        description="Train the LSTM in one process on a CSV file; optionally hold out a stratified, seeded share of each class and report its accuracy.",
    )
    p.add_argument("--data", required=True, metavar="CSV", help="labelled rows (a header line is optional)")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (a new version is added)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION", help="share of each class held out for scoring, e.g. 0.3 (default 0: none)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_config_args(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "evaluate",
        help="score a saved model on a CSV file",
        description="Print accuracy, loss and the confusion matrix of the newest version in a model directory (or a trainer checkpoint).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory, or a trainer checkpoint directory")
    p.add_argument("--data", required=True, metavar="CSV", help="labelled rows in the model's column layout")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "train",
        help="the Spark Structured Streaming trainer",
        description=(
            "Learn online from a stream: each micro-batch is split into balanced partitions, each trains the LSTM "
            "from the current global weights (mapInPandas over Arrow), and the driver averages the results. "
            "Ctrl-C finishes the current batch, saves and exits 0."
        ),
    )
    src = p.add_argument_group("source")
    src.add_argument("--source", choices=("socket", "file", "kafka", "memory"), required=True, help="where rows come from (memory: tests only)")
    src.add_argument("--host", default="127.0.0.1", help="socket source host (default 127.0.0.1)")
    src.add_argument("--port", type=int, help="socket source port")
    src.add_argument("--path", metavar="DIR", help="file source: directory of CSV (or JSON lines) files")
    src.add_argument("--bootstrap", metavar="SERVERS", help="Kafka bootstrap servers (default: $STREAMING_LSTM_BOOTSTRAP or $KAFKA_BOOTSTRAP_SERVERS)")
    src.add_argument("--topic", help="Kafka topic")
    src.add_argument(
        "--kafka-option", metavar="KEY=VALUE", action="append", default=[], help="passed to Kafka as is, e.g. kafka.security.protocol=SASL_SSL (repeatable)"
    )
    src.add_argument("--starting-offsets", help="Kafka: earliest, latest or a JSON offsets object")
    src.add_argument("--max-offsets-per-trigger", type=int, help="Kafka: cap on rows per micro-batch")
    run = p.add_argument_group("run")
    run.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="checkpoint directory: Spark's offsets, the model versions, metrics.jsonl, dead letters"
    )
    run.add_argument("--partitions", type=int, help="training partitions per micro-batch (stream.partitions)")
    run.add_argument("--trigger", help="micro-batch interval, e.g. 2s (stream.trigger)")
    run.add_argument("--master", help="Spark master (spark.master); ignored under spark-submit")
    run.add_argument("--max-batches", type=int, metavar="N", help="stop after N applied micro-batches")
    run.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without new rows")
    _add_config_args(p)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"streaming-lstm: configuration error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"streaming-lstm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("streaming-lstm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
