"""Replay an event dataset in event-time order, keyed by entity (event mode's producer).

    streaming-lstm produce --events --conf conf/solar.toml --data data/solar-hourly.csv \
        --sink kafka --topic solar --rate 200 --jitter 2h --late-rate 0.01

The events of a CSV file (RFC 4180, one event per line; the entity and time columns named by the
config's ``[data]``) are sent in event-time order, each with its entity as the Kafka key, so one
entity's events stay in one partition, in order. Pacing is ``--rate`` events per second, or
``--speedup`` times real time (the gaps between event times, divided). Disorder on purpose:

* ``--jitter D``: each event's send position moves by up to D of event time (sorted by time plus
  a uniform random delay), so events arrive out of order by at most D;
* ``--late-rate p``: that share of events is held back and sent ``--late-by`` of event time later
  (default twice ``data.allowed_lateness``): late events, counted in ``late_sent``.

Nothing here is dataset-specific: columns come from the config.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producers.pacing import ProgressLog, at_rate, paced
from streaming_lstm.core.config import SINGLE_ENTITY, DataConfig, data_columns
from streaming_lstm.parse.rows import MALFORMED_QUOTING, csv_fields


@dataclass(frozen=True)
class Event:
    time: float  # seconds since the epoch
    entity: str
    line: str  # the row as sent


@dataclass
class EventStats:
    events_sent: int = 0
    late_sent: int = 0  # held back on purpose (--late-rate)
    seconds: float = 0.0


def event_time(text: str) -> float:
    """A time field as events.py reads it: a number of seconds, or an ISO-8601 timestamp. Without an
    offset this reads UTC, Spark its session time zone (``spark.sql.session.timeZone``): the two
    agree where that is UTC; the order only matters for pacing and disorder here."""
    try:
        return float(text)
    except ValueError:
        stamp = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()


def read_events(path: str | Path, data: DataConfig) -> list[Event]:
    """The file's events in event-time order (ties keep file order); a header line is skipped."""
    columns = list(data_columns(data))
    at_entity, at_time = (columns.index(data.entity) if data.entity else None), columns.index(data.time)
    out: list[Event] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = csv_fields(line)  # RFC 4180, exactly as the trainer reads it (rows.py)
        if fields is None:
            raise ValueError(f"{path}:{n}: {MALFORMED_QUOTING} (RFC 4180: a quoted field must be the whole field, quotes inside doubled)")
        if [f.strip() for f in fields] == columns:
            continue
        if len(fields) != len(columns):
            raise ValueError(f"{path}:{n}: expected {len(columns)} fields ({', '.join(columns)}), got {len(fields)}")
        try:
            out.append(Event(event_time(fields[at_time]), fields[at_entity] if at_entity is not None else SINGLE_ENTITY, line))
        except ValueError:
            raise ValueError(f"{path}:{n}: invalid time {fields[at_time]!r} in column '{data.time}'") from None
    if not out:
        raise ValueError(f"{path}: no events to replay")
    return sorted(out, key=lambda e: e.time)


def event_schedule(events: Sequence[Event], *, seed: int = 0, jitter: float = 0.0, late_rate: float = 0.0, late_by: float = 0.0) -> list[tuple[Event, bool]]:
    """(event, is_late) in send order: event time plus up to ``jitter`` (uniform), and for a
    ``late_rate`` share plus ``late_by``. Seeded: same arguments, same order."""
    rng = random.Random(seed)
    keyed = []
    for i, e in enumerate(events):
        late = late_rate > 0 and rng.random() < late_rate
        shift = (rng.uniform(0.0, jitter) if jitter > 0 else 0.0) + (late_by if late else 0.0)
        keyed.append((e.time + shift, i, e, late))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(e, late) for _, _, e, late in keyed]


def replay_events(
    schedule: Sequence[tuple[Event, bool]],
    sink: Any,
    *,
    rate: float = 0.0,
    speedup: float = 0.0,
    stop: threading.Event | None = None,
    stats: EventStats | None = None,
    log: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> EventStats:
    """Send each event to ``sink.send(line, entity)``: ``rate`` events/s, or ``speedup`` x real
    time (0 and 0: as fast as possible). ``stats`` is updated in place (read it after a stop)."""
    stop = stop or threading.Event()
    stats = stats if stats is not None else EventStats()
    first = schedule[0][0].time if schedule else 0.0
    due = at_rate(rate) if rate > 0 or speedup <= 0 else (lambda _n, item: max(0.0, item[0].time - first) / speedup)
    progress = ProgressLog(log, progress_every, "events")
    for event, late in paced(schedule, due, stop):
        sink.send(event.line, event.entity)
        stats.events_sent += 1
        stats.late_sent += int(late)
        progress.sent(stats.events_sent, f"{stats.late_sent} late on purpose")
    stats.seconds = progress.elapsed()
    return stats
