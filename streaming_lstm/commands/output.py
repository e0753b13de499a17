"""What the commands print: a text summary, or with ``--json`` one object of strict JSON (NaN and
infinities as ``null``: ``jq``, browsers and most languages reject ``NaN``); warnings on stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinity as None: ``--json`` output is strict JSON (``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def print_result(result: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(strict_json(result), sort_keys=True, allow_nan=False) if as_json else text)


def warn(warnings: list[str]) -> None:
    for line in warnings:
        print(f"streaming-lstm: {line}", file=sys.stderr, flush=True)
