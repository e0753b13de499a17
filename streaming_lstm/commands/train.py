"""``streaming-lstm train``: the Spark Structured Streaming trainer."""

from __future__ import annotations

import argparse
from typing import Any

from streaming_lstm.commands.common import ConfigFlag, add_remote, config_from_args, config_parent, interrupt_exits_quietly, source_parent


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        parents=[source_parent(required=True), config_parent()],
        help="the Spark Structured Streaming trainer",
        description=(
            "Learn online from a stream: each micro-batch is split into balanced partitions, each trains the LSTM "
            "from the current global weights (mapInPandas over Arrow), and the driver averages the results. "
            "Ctrl-C finishes the current batch, saves and exits 0."
        ),
    )
    kafka = p.add_argument_group("kafka")
    kafka.add_argument("--starting-offsets", action=ConfigFlag, key="stream.starting_offsets", help="earliest, latest or a JSON offsets object")
    kafka.add_argument("--max-offsets-per-trigger", type=int, action=ConfigFlag, key="stream.max_offsets_per_trigger", help="cap on rows per micro-batch")
    run_group = p.add_argument_group("run")
    run_group.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="checkpoint directory: Spark's offsets, the model versions, metrics.jsonl, dead letters"
    )
    run_group.add_argument("--partitions", type=int, action=ConfigFlag, key="stream.partitions", help="training partitions per micro-batch")
    run_group.add_argument("--trigger", action=ConfigFlag, key="stream.trigger", help="micro-batch interval, e.g. 2s")
    run_group.add_argument("--master", action=ConfigFlag, key="spark.master", help="Spark master; ignored under spark-submit")
    run_group.add_argument(
        "--mlflow", metavar="URI", action=ConfigFlag, key="mlflow.tracking_uri", help="track the run in MLflow: 'local' (SQLite in the checkpoint) or a URI"
    )
    add_remote(run_group)
    run_group.add_argument("--max-batches", type=int, metavar="N", help="stop after N applied micro-batches")
    run_group.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without new rows (from the end of the last batch)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # before anything heavy: a bad key or value answers at once
    interrupt_exits_quietly()
    from streaming_lstm.trainer import runner

    return runner.run_cli(cfg, args)
