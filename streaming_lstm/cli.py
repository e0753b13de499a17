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

from streaming_lstm.commands import parser as cli_parser
from streaming_lstm.commands.output import print_result as _print
from streaming_lstm.commands.output import warn as _warn
from streaming_lstm.commands.parser import DEFAULT_CONF
from streaming_lstm.core.config import AppConfig, ConfigError, parse_duration
from streaming_lstm.core.config_load import load_config

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
    "kafka_reader": "stream.kafka_reader",
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


def cmd_fit(args: argparse.Namespace) -> int:
    from streaming_lstm.commands import standalone

    cfg = config_from_args(args)
    r = standalone.fit(cfg, args.data, args.out, args.holdout, strict=args.strict)
    _warn(r["warnings"])
    lines = [f"trained {r['rows_trained']} rows for {r['epochs']} epochs in {r['seconds']:.1f} s, final train loss {r['train_loss']:.4f}"]
    if r["rows_rejected"] or r["headers_skipped"]:
        lines.append(f"rejected rows: {r['rows_rejected'] or 0}; header lines skipped: {r['headers_skipped']}")
    if "holdout_accuracy" in r:
        lines.append(f"held-out accuracy {r['holdout_accuracy']:.4f} on {r['holdout_rows']} rows (loss {r['holdout_loss']:.4f})")
    lines.append(f"model version {r['version']} written to {r['model']}")
    _print(r, args.json, "\n".join(lines))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from streaming_lstm.commands import standalone

    saved, ev = standalone.evaluate(args.model, args.data, strict=args.strict)
    _warn(ev.warnings)
    result = {"model": str(args.model), "version": saved.version, **ev.to_dict()}
    _print(result, args.json, f"model version {saved.version}\n{ev.format()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from streaming_lstm.trainer import runner

    cfg = config_from_args(args)
    return runner.run_cli(cfg, args)


def cmd_demo(args: argparse.Namespace) -> int:
    from streaming_lstm.commands import demo

    if args.events:  # the event-mode demo's own dataset, unless told otherwise
        args.conf = args.conf or demo.EVENTS_CONF
    args.data = args.data or (demo.EVENTS_DATA if args.events else "data/iris.csv")
    cfg = config_from_args(args)
    summary = demo.run_demo(cfg, args)
    _print(summary, args.json, demo.format_summary(summary))
    return 0


def cmd_jars(args: argparse.Namespace) -> int:
    from streaming_lstm.local import jvm_deps

    return jvm_deps.main(args.jar_args)


def cmd_produce(args: argparse.Namespace) -> int:
    from producers import replay

    return replay.main(args.replay_args)


def cmd_export(args: argparse.Namespace) -> int:
    from streaming_lstm.commands.export import export_saved_model

    r = export_saved_model(args.checkpoint, args.out)
    _print(r, args.json, f"model version {r['model_version']} exported as a SavedModel to {r['out']}\n  {r['signature']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from streaming_lstm.commands.report import write_report

    r = write_report(args.checkpoint, args.out, args.data)
    quality = (
        f"skill (last fifth of the windows) {r['skill_last_fifth']:+.3f}"
        if "skill_last_fifth" in r
        else f"prequential accuracy (last 150 rows) {r['prequential_accuracy_last_150']:.3f}"
    )
    text = (
        f"{r['batches']} batches, {r['rows_trained']} rows trained, {r['rows_dead_lettered']} dead-lettered; {quality}; "
        f"latency p50 {r['latency_p50_s']:.2f} s, p95 {r['latency_p95_s']:.2f} s; {r['drift_alarms']} drift alarms\n"
        f"wrote {r['summary']} and " + ", ".join(r["charts"])
    )
    _print(r, args.json, text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import contextlib

    out = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115 - closed below
    try:
        if args.data:
            from streaming_lstm.commands.standalone import PredictSummary, predict_csv

            summary = PredictSummary()
            for record in predict_csv(args.model, args.data, summary, strict=args.strict):
                out.write(json.dumps(record, allow_nan=False) + "\n")
            _warn(summary.warnings)
            skipped = f", {summary.headers_skipped} header lines skipped" if summary.headers_skipped else ""
            print(f'streaming-lstm: scored {summary.rows_scored} rows, {summary.rows_rejected} rejected (an "error" line each){skipped}', file=sys.stderr)
            return 0
        if not args.source:
            raise ConfigError("predict needs --data CSV, or --source socket|kafka|file for a stream")
        trigger_ms = int(parse_duration(args.trigger, "--trigger") * 1000)  # before Spark starts: fail fast
        from streaming_lstm.trainer.predictor import run_cli

        run_cli(args, out, trigger_ms)
        return 0
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(Exception):
                out.close()


def build_parser() -> argparse.ArgumentParser:
    return cli_parser.build_parser(
        {
            "fit": cmd_fit,
            "evaluate": cmd_evaluate,
            "train": cmd_train,
            "demo": cmd_demo,
            "export": cmd_export,
            "predict": cmd_predict,
            "report": cmd_report,
            "produce": cmd_produce,
            "jars": cmd_jars,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own loggers at INFO; kafka-python and py4j chatter only from WARNING (or with -v).
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("streaming_lstm").setLevel(logging.DEBUG if args.verbose else logging.INFO)
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
