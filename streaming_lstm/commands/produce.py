"""``streaming-lstm produce``: replay a CSV (rows or events) into a socket or Kafka; the producer
itself is :mod:`producers.replay` (also ``python -m producers.replay``)."""

from __future__ import annotations

import argparse
from typing import Any

from producers import replay


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "produce",
        help="replay a CSV into a socket or Kafka (= python -m producers.replay)",
        description=replay.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_arguments(p)
    p.set_defaults(func=replay.run)
