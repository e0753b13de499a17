"""The ``streaming-lstm`` command line: the top-level parser, one subcommand per module of this
package (each module's ``add_command`` builds its parser and names its ``run``), and the error
handling every subcommand shares. Heavy imports (TensorFlow, Spark) happen inside the subcommands,
so ``--help`` and configuration errors answer at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from streaming_lstm import __version__
from streaming_lstm.commands import broker, demo, evaluate, export, fit, init_config, jars, predict, produce, report, train
from streaming_lstm.core.config import ConfigError

# The order of ``streaming-lstm --help``.
COMMANDS = (fit, evaluate, train, demo, export, predict, report, produce, broker, init_config, jars)

EPILOG = """\
configuration: typed defaults in code, then the TOML file given by --conf (default
conf/iris.toml), then command-line flags; --set section.key=value sets any key.
Unknown keys and impossible values are errors that name the key.

examples:
  streaming-lstm fit --data data/iris.csv --out runs/iris --holdout 0.3
  streaming-lstm evaluate --model runs/iris --data data/iris.csv
  streaming-lstm train --source file --path incoming/ --checkpoint runs/ck --idle-timeout 20
"""


def verbose_parent() -> argparse.ArgumentParser:
    """``-v`` after the subcommand as well as before it (SUPPRESS: absent, it leaves the top-level value)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streaming-lstm",
        description="Learn a from-scratch TensorFlow LSTM online from a live stream with Spark Structured Streaming.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"streaming-lstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    shared = verbose_parent()
    for command in COMMANDS:
        command.add_command(_WithParents(sub, shared))
    return parser


class _WithParents:
    """The subparsers object, adding the flags every subcommand shares (``-v``) to each."""

    def __init__(self, sub: argparse._SubParsersAction, shared: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
        self.sub, self.shared = sub, shared

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        parents = [*kwargs.pop("parents", []), self.shared]  # type: ignore[misc]
        return self.sub.add_parser(name, parents=parents, **kwargs)  # type: ignore[arg-type]


STARTED = time.monotonic()  # about when the process started: "first batch applied N s after start"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter
    args = build_parser().parse_args(argv)
    args.started_at = STARTED if argv is None else time.monotonic()
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
