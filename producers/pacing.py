"""Pacing and progress for the replay producers: each item leaves at its due time (no drift, no
bursts), and a progress line every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def paced(items: Iterable[T], due: Callable[[int, T], float], stop: threading.Event) -> Iterator[T]:
    """Yield item ``n`` at ``start + due(n, item)`` seconds (at once when that has passed), until
    ``stop`` is set."""
    started = time.monotonic()
    for n, item in enumerate(items):
        delay = started + due(n, item) - time.monotonic()
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            return
        yield item


def at_rate(rate: float) -> Callable[[int, object], float]:
    """Item n at n / rate seconds; a rate of 0 sends as fast as possible."""
    return lambda n, _item: n / rate if rate > 0 else 0.0


class ProgressLog:
    """``sent N what (detail), R what/s`` every ``every`` seconds, through ``log`` (if any)."""

    def __init__(self, log: Callable[[str], None] | None, every: float, what: str) -> None:
        self.log, self.every, self.what = log, every, what
        self.started = self.last = time.monotonic()

    def sent(self, n: int, detail: str) -> None:
        now = time.monotonic()
        if self.log and now - self.last >= self.every:
            self.log(f"sent {n} {self.what} ({detail}), {n / (now - self.started):.1f} {self.what}/s")
            self.last = now

    def elapsed(self) -> float:
        return time.monotonic() - self.started
