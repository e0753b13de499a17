"""Replay a CSV dataset into a TCP socket or a Kafka topic: shuffled, looping, at a steady rate.

    streaming-lstm produce --data data/iris.csv --sink kafka --bootstrap 127.0.0.1:9092 --topic iris --rate 50 --loops 0
    streaming-lstm produce --data data/iris.csv --sink socket --port 9999 --limit 600

Each loop is a fresh seeded shuffle of the rows. Rows are sent at ``--rate`` rows per second, paced
row by row (steady, not bursty). ``--corrupt-rate`` replaces that share of rows by malformed ones
(for demos and tests of the dead-letter path); how many were sent is reported. Ctrl-C stops cleanly
(Kafka: after a flush).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from producers.pacing import ProgressLog, at_rate, paced
from streaming_lstm.kafka.settings import BOOTSTRAP_ENV, authentication_named, client_config, ensure_topic, kafka_options


@dataclass
class ReplayStats:
    rows_sent: int = 0
    corrupt_sent: int = 0
    seconds: float = 0.0

    @property
    def valid_sent(self) -> int:
        return self.rows_sent - self.corrupt_sent


def read_rows(path: str | Path, header: bool = True) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    lines = [line for line in lines if line]
    rows = lines[1:] if header else lines
    if not rows:
        raise ValueError(f"{path}: no rows to replay")
    return rows


def corrupt(row: str, rng: random.Random) -> str:
    """One malformed variant of ``row``: a field dropped, text, NaN, an unknown label, or empty."""
    fields = row.split(",")
    kind = rng.randrange(5)
    if kind == 0:
        return ",".join(fields[:-1])
    if kind == 1:
        return ",".join(["not-a-number", *fields[1:]])
    if kind == 2:
        return ",".join(["NaN", *fields[1:]])
    if kind == 3:
        return ",".join([*fields[:-1], "no-such-label"])
    return ""


def schedule(rows: Sequence[str], *, seed: int, loops: int, limit: int | None, corrupt_rate: float) -> Iterator[tuple[str, bool]]:
    """(row, is_corrupt) in replay order: a seeded shuffle per loop; loops = 0 means forever."""
    rng = random.Random(seed)
    sent = 0
    loop = 0
    while loops == 0 or loop < loops:
        order = list(range(len(rows)))
        rng.shuffle(order)
        for i in order:
            if limit is not None and sent >= limit:
                return
            if corrupt_rate > 0 and rng.random() < corrupt_rate:
                yield corrupt(rows[i], rng), True
            else:
                yield rows[i], False
            sent += 1
        loop += 1


class SocketSink:
    """A TCP server on host:port; Spark's socket source connects to it. Survives reconnects.

    Not fault-tolerant, like Spark's socket source itself: a row written to a connection that
    drops may be lost. Binds to loopback by default.
    """

    def __init__(self, host: str, port: int, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.server = socket.create_server((host, port))
        self.server.settimeout(0.5)
        self.port = int(self.server.getsockname()[1])
        self.stop = stop
        self.log = log
        self.conn: socket.socket | None = None

    def _connect(self) -> bool:
        while not self.stop.is_set():
            try:
                self.conn, addr = self.server.accept()
                self.log(f"socket: client {addr[0]}:{addr[1]} connected")
                return True
            except TimeoutError:
                continue
        return False

    def send(self, row: str, key: int | str) -> None:
        data = (row + "\n").encode()
        while not self.stop.is_set():
            if self.conn is None and not self._connect():
                return
            assert self.conn is not None
            try:
                self.conn.sendall(data)
                return
            except OSError:
                self.log("socket: client went away; waiting for it to reconnect")
                self.conn.close()
                self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


class KafkaSink:
    """kafka-python producer, ``acks=all``; key = the row's sequence number."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, config: dict[str, Any]) -> None:
        from kafka import KafkaProducer

        ensure_topic(bootstrap, topic, partitions, config)
        self.topic = topic
        with authentication_named(bootstrap, config):
            self.producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5, **config)

    def send(self, row: str, key: int | str) -> None:
        """Key: the row's sequence number, or (event mode) its entity: one entity, one partition."""
        self.producer.send(self.topic, key=str(key).encode(), value=row.encode())

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()


def replay(
    rows: Sequence[str],
    sink: Any,
    *,
    rate: float,
    seed: int = 0,
    loops: int = 1,
    limit: int | None = None,
    corrupt_rate: float = 0.0,
    stop: threading.Event | None = None,
    progress_every: float = 5.0,
    log: Callable[[str], None] | None = None,
    stats: ReplayStats | None = None,
) -> ReplayStats:
    """Send the schedule to ``sink`` (anything with ``send(row, key)``); returns what was sent.

    ``stats`` (updated in place) lets a caller read the counts after an interruption.
    """
    stop = stop or threading.Event()
    stats = stats if stats is not None else ReplayStats()
    progress = ProgressLog(log, progress_every, "rows")
    for row, bad in paced(schedule(rows, seed=seed, loops=loops, limit=limit, corrupt_rate=corrupt_rate), at_rate(rate), stop):
        sink.send(row, stats.rows_sent)
        stats.rows_sent += 1
        stats.corrupt_sent += int(bad)
        progress.sent(stats.rows_sent, f"{stats.corrupt_sent} corrupt")
    stats.seconds = progress.elapsed()
    return stats


DESCRIPTION = __doc__ or ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m producers.replay", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The replay's flags, on ``python -m producers.replay`` and on ``streaming-lstm produce``."""
    p.add_argument("--data", default="data/iris.csv", help="CSV file to replay (default data/iris.csv)")
    p.add_argument("--no-header", action="store_true", help="the file has no header line")
    p.add_argument("--sink", choices=("socket", "kafka"), required=True)
    p.add_argument("--host", default="127.0.0.1", help="socket: address to bind (default loopback)")
    p.add_argument("--port", type=int, default=9999, help="socket: port to listen on (default 9999)")
    p.add_argument("--bootstrap", help=f"kafka: bootstrap servers (default ${BOOTSTRAP_ENV[0]} or ${BOOTSTRAP_ENV[1]})")
    p.add_argument("--topic", default="iris", help="kafka: topic (created if missing)")
    p.add_argument("--partitions", type=int, default=3, help="kafka: partitions of a topic it creates (default 3)")
    p.add_argument(
        "--kafka-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Kafka client setting as for 'streaming-lstm train', e.g. kafka.security.protocol=SASL_SSL (repeatable)",
    )
    p.add_argument("--kafka-properties", metavar="FILE", help="kafka: a Kafka client properties file (security settings; --kafka-option wins)")
    p.add_argument("--rate", type=float, default=50.0, help="rows per second, steady (0 = as fast as possible; default 50)")
    p.add_argument("--loops", type=int, default=1, help="passes over the data, each freshly shuffled (0 = forever; default 1)")
    p.add_argument("--limit", type=int, help="stop after this many rows")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="share of rows replaced by malformed ones (default 0)")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    ev = p.add_argument_group("event mode (event_replay.py): in event-time order, keyed by entity")
    ev.add_argument("--events", action="store_true", help="replay events in event-time order, Kafka key = entity (needs --conf)")
    ev.add_argument("--conf", metavar="TOML", help="the trainer's config: which columns are the entity and the time")
    ev.add_argument("--speedup", type=float, default=0.0, help="pace at this many times real time instead of --rate (0 = use --rate)")
    ev.add_argument("--jitter", default="0s", help="send each event up to this much event time late, out of order (e.g. 2h; default 0s)")
    ev.add_argument("--late-rate", type=float, default=0.0, help="share of events held back past the lateness allowed (default 0)")
    ev.add_argument("--late-by", help="how much event time a held-back event is late (default twice data.allowed_lateness)")


def _replay_events(args: argparse.Namespace, sink: Any, stop: threading.Event, log: Callable[[str], None]) -> dict[str, Any]:
    """``--events``: event_replay.py's schedule and pacing; the summary as a dict."""
    from producers.event_replay import EventStats, event_schedule, read_events, replay_events
    from streaming_lstm.core.config import parse_duration
    from streaming_lstm.core.config_load import load_config

    if not args.conf:
        raise ValueError("--events needs --conf (the config names the entity and time columns)")
    data = load_config(args.conf).data
    if data.mode != "events":
        raise ValueError(f"--conf {args.conf}: data.mode is {data.mode!r}; --events replays an event-mode dataset")
    if not 0.0 <= args.late_rate <= 1.0:
        raise ValueError(f"--late-rate must be in [0, 1], got {args.late_rate}")
    late_by = parse_duration(args.late_by, "--late-by") if args.late_by else 2 * parse_duration(data.allowed_lateness)
    plan = event_schedule(
        read_events(args.data, data), seed=args.seed, jitter=parse_duration(args.jitter, "--jitter"), late_rate=args.late_rate, late_by=late_by
    )
    plan = plan[: args.limit] if args.limit else plan
    stats = EventStats()
    try:
        replay_events(plan, sink, rate=0.0 if args.speedup > 0 else args.rate, speedup=args.speedup, stop=stop, stats=stats, log=log)
    except KeyboardInterrupt:
        stop.set()
        log("interrupted")
    return asdict(stats)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:

    def log(msg: str) -> None:
        print(f"replay: {msg}", file=sys.stderr, flush=True)

    if not 0.0 <= args.corrupt_rate <= 1.0:
        print(f"replay: error: --corrupt-rate must be in [0, 1], got {args.corrupt_rate}", file=sys.stderr)
        return 2
    stop = threading.Event()
    try:
        rows = [] if args.events else read_rows(args.data, header=not args.no_header)
        if args.sink == "socket":
            sink: Any = SocketSink(args.host, args.port, stop, log)
            log(f"listening on {args.host}:{sink.port}; waiting for a client")
        else:
            bootstrap = args.bootstrap or next((os.environ[e] for e in BOOTSTRAP_ENV if os.environ.get(e)), None)  # as kafka.settings.bootstrap_servers
            if not bootstrap:
                print(f"replay: error: --bootstrap is required for --sink kafka (or set {BOOTSTRAP_ENV[0]})", file=sys.stderr)
                return 2
            config = client_config(kafka_options(args.kafka_option, args.kafka_properties))
            sink = KafkaSink(bootstrap, args.topic, args.partitions, config)
            log(f"producing to topic '{args.topic}' on {bootstrap}")
    except (OSError, ValueError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # kafka-python's errors: name them, no traceback
        print(f"replay: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.events:
        try:
            summary = _replay_events(args, sink, stop, log)
        except ValueError as exc:
            print(f"replay: error: {exc}", file=sys.stderr)
            return 2
        finally:
            sink.close()
        print(
            json.dumps(summary)
            if args.json
            else f"replay: sent {summary['events_sent']} events ({summary['late_sent']} late on purpose) in {summary['seconds']:.1f} s"
        )
        return 0
    stats = ReplayStats()
    try:
        replay(rows, sink, rate=args.rate, seed=args.seed, loops=args.loops, limit=args.limit, corrupt_rate=args.corrupt_rate, stop=stop, log=log, stats=stats)
    except KeyboardInterrupt:
        stop.set()
        log("interrupted")
    finally:
        sink.close()
    summary = asdict(stats)
    print(json.dumps(summary) if args.json else f"replay: sent {stats.rows_sent} rows ({stats.corrupt_sent} corrupt) in {stats.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
