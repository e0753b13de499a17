"""The ``streaming-lstm`` command line: every subcommand's flags and help. The commands themselves
are in cli.py, which hands them in (so this module imports nothing heavy, nor cli.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from streaming_lstm.commands import broker, init_config

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


def _add_strict_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="any rejected row is an error (default: rejected rows are counted by reason, with a warning above 1%%)",
    )


def _add_remote_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--remote",
        metavar="URL",
        help="run over Spark Connect: sc://HOST:PORT, or 'local' to start a local Connect server for this run (default: $SPARK_REMOTE; unset: classic Spark)",
    )


def _add_source_args(p: argparse.ArgumentParser, *, required: bool) -> argparse._ArgumentGroup:
    """The stream source options shared by ``train`` and ``predict``."""
    src = p.add_argument_group("source")
    choices = ("socket", "file", "kafka", "memory") if required else ("socket", "file", "kafka")
    src.add_argument(
        "--source", choices=choices, required=required, help="where rows come from" + (" (memory: tests only)" if required else "; omit to score --data")
    )
    src.add_argument("--host", default="127.0.0.1", help="socket source host (default 127.0.0.1)")
    src.add_argument("--port", type=int, help="socket source port")
    src.add_argument("--path", metavar="DIR", help="file source: directory of CSV (or JSON lines) files")
    src.add_argument("--bootstrap", metavar="SERVERS", help="Kafka bootstrap servers (default: $STREAMING_LSTM_BOOTSTRAP or $KAFKA_BOOTSTRAP_SERVERS)")
    src.add_argument("--topic", help="Kafka topic")
    src.add_argument(
        "--kafka-option", metavar="KEY=VALUE", action="append", default=[], help="passed to Kafka as is, e.g. kafka.security.protocol=SASL_SSL (repeatable)"
    )
    _add_reader_arg(src)
    return src


def _add_reader_arg(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument(
        "--kafka-reader",
        choices=("auto", "spark", "python"),
        help="Kafka: spark = Spark's own connector (fetched by scripts/setup.sh), python = the project's Python data source; "
        "auto (default) = the connector when its jar is on the classpath (stream.kafka_reader)",
    )


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The whole command line; ``commands`` maps each subcommand to its function (cli.py)."""
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
    p.add_argument("--out", default="runs/model", metavar="DIR", help="model directory to write; a new version is added (default runs/model)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION", help="share of each class held out for scoring, e.g. 0.3 (default 0: none)")
    _add_strict_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_config_args(p)
    p.set_defaults(func=commands["fit"])

    p = sub.add_parser(
        "evaluate",
        help="score a saved model on a CSV file",
        description="Print accuracy, loss and the confusion matrix of the newest version in a model directory (or a trainer checkpoint).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory, or a trainer checkpoint directory")
    p.add_argument("--data", required=True, metavar="CSV", help="labelled rows in the model's column layout")
    _add_strict_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=commands["evaluate"])

    p = sub.add_parser(
        "train",
        help="the Spark Structured Streaming trainer",
        description=(
            "Learn online from a stream: each micro-batch is split into balanced partitions, each trains the LSTM "
            "from the current global weights (mapInPandas over Arrow), and the driver averages the results. "
            "Ctrl-C finishes the current batch, saves and exits 0."
        ),
    )
    src = _add_source_args(p, required=True)
    src.add_argument("--starting-offsets", help="Kafka: earliest, latest or a JSON offsets object")
    src.add_argument("--max-offsets-per-trigger", type=int, help="Kafka: cap on rows per micro-batch")
    run = p.add_argument_group("run")
    run.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="checkpoint directory: Spark's offsets, the model versions, metrics.jsonl, dead letters"
    )
    run.add_argument("--partitions", type=int, help="training partitions per micro-batch (stream.partitions)")
    run.add_argument("--trigger", help="micro-batch interval, e.g. 2s (stream.trigger)")
    run.add_argument("--master", help="Spark master (spark.master); ignored under spark-submit")
    _add_remote_arg(run)
    run.add_argument("--max-batches", type=int, metavar="N", help="stop after N applied micro-batches")
    run.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without new rows")
    _add_config_args(p)
    p.set_defaults(func=commands["train"])

    p = sub.add_parser(
        "demo",
        help="the main job: a local Kafka broker + replay producer + streaming trainer, with a summary",
        description=(
            "Start a local Apache Kafka broker (or Tansu), replay the dataset into it (shuffled, looping, at a steady rate) "
            "and train on the stream, read by Spark's Kafka connector, until every produced row is trained; print one line "
            "per batch and a summary."
        ),
    )
    p.add_argument("--source", choices=("kafka", "socket"), default="kafka", help="kafka (a local broker, default) or socket")
    p.add_argument(
        "--broker",
        choices=("apache-kafka", "tansu"),
        default="apache-kafka",
        help="apache-kafka (default: the broker users run, from the jars scripts/setup.sh fetched) or tansu (Python-packaged, no Java jars; "
        "read by the Python source unless --kafka-reader says otherwise: Tansu under-reports the offsets Spark's connector plans with)",
    )
    _add_reader_arg(p)
    p.add_argument("--data", metavar="CSV", help="dataset to replay and to score the final model on (default data/iris.csv; --events: data/solar-hourly.csv)")
    p.add_argument("--rows", type=int, help="rows to produce (default 900: six shuffled passes over Iris; --events: every event once)")
    p.add_argument(
        "--events",
        action="store_true",
        help="event mode: replay an event stream in event-time order keyed by entity (default conf/solar.toml, data/solar-hourly.csv), "
        "windows per entity in Spark state, forecast and report MAE, the naive forecast's MAE and the skill",
    )
    p.add_argument("--jitter", default="0s", help="--events: out-of-order delay of up to this much event time (default 0s)")
    p.add_argument("--late-rate", type=float, default=0.0, help="--events: share of events sent too late on purpose (default 0)")
    p.add_argument("--rate", type=float, default=150.0, help="rows per second (default 150)")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="share of malformed rows mixed in (default 0)")
    p.add_argument("--replay-seed", type=int, default=0, help="shuffle seed of the replay (default 0)")
    p.add_argument("--topic-partitions", type=int, default=3, help="Kafka partitions of the demo topic (default 3)")
    p.add_argument("--checkpoint", metavar="DIR", help="where the run goes (default runs/demo-<time>; must be new)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="give up after this long without new rows (default 120)")
    p.add_argument("--partitions", type=int, help="training partitions per micro-batch (stream.partitions)")
    p.add_argument("--trigger", default="1s", help="micro-batch interval (default 1s)")
    p.add_argument("--master", help="Spark master (spark.master)")
    _add_remote_arg(p)
    p.add_argument("--json", action="store_true", help="print only the summary, as one JSON object")
    _add_config_args(p)
    p.set_defaults(func=commands["demo"])

    p = sub.add_parser(
        "export",
        help="write the newest model as a TensorFlow SavedModel",
        description=(
            "Export the newest version of a trainer checkpoint (or model directory) as a SavedModel whose serving "
            "signature takes raw feature rows and returns class probabilities."
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="trainer checkpoint or model directory")
    p.add_argument("--out", required=True, metavar="PATH", help="SavedModel directory to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands["export"])

    p = sub.add_parser(
        "predict",
        help="score a CSV file, or a stream, with the newest model",
        description=(
            "Score rows with the newest model version: a CSV file (--data), or a stream (--source), picking up "
            "new versions as the trainer writes them. JSON lines out, one per row: value, class, probabilities, "
            'model_version, scored_at; a row that cannot be parsed gets an "error" line instead. Each micro-batch '
            "checks for a newer version before and after scoring, so a version is in use within about one trigger."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="trainer checkpoint or model directory")
    p.add_argument("--data", metavar="CSV", help="score this file and exit: one output line per row, in order")
    _add_strict_arg(p)
    p.add_argument("--out", metavar="FILE", help="append JSON lines here (default: standard output)")
    _add_source_args(p, required=False)
    p.add_argument("--checkpoint", default="runs/predict-checkpoint", metavar="DIR", help="the prediction query's own Spark checkpoint")
    p.add_argument(
        "--trigger",
        default="1s",
        help="micro-batch interval, e.g. 1s or 500ms (default 1s); also how long a new model version can wait before it scores rows",
    )
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without new rows")
    _add_remote_arg(p)
    p.set_defaults(func=commands["predict"])

    p = sub.add_parser(
        "report",
        help="PNG charts and a markdown summary of a training run",
        description=(
            "Read CHECKPOINT/metrics.jsonl and write prequential accuracy and loss against rows seen, batch "
            "latency and rows per batch as PNG charts, with a markdown summary."
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--out", metavar="DIR", help="where to write (default CHECKPOINT/report)")
    p.add_argument("--data", metavar="CSV", help="event mode: an event file; also chart the model's forecasts against its actual values")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands["report"])

    p = sub.add_parser("produce", help="replay a CSV into a socket or Kafka (python -m producers.replay)", add_help=False)
    p.add_argument("replay_args", nargs=argparse.REMAINDER, help="see 'streaming-lstm produce --help'")
    p.set_defaults(func=commands["produce"])

    broker.add_command(sub)
    init_config.add_command(sub)

    p = sub.add_parser(
        "jars",
        help="fetch the JVM parts (Kafka connector, Kafka broker, HDFS minicluster) with Maven",
        add_help=False,
        description="python -m streaming_lstm.local.jvm_deps",
    )
    p.add_argument("jar_args", nargs=argparse.REMAINDER, help="see 'streaming-lstm jars --help'")
    p.set_defaults(func=commands["jars"])
    return parser
