"""``streaming-lstm demo``: a local Kafka broker, a replay producer and the trainer in one command.

The dataset is replayed (shuffled, looping) into a fresh topic of a local Apache Kafka broker (or
Tansu with ``--broker tansu``, or a local socket with ``--source socket``) while the streaming
trainer learns from it, reading the topic with Spark's Kafka connector (``--kafka-reader``); the run
stops once every produced row has been trained (or dead-lettered), and prints a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producers.event_replay import Event, EventStats, event_schedule, read_events, replay_events
from producers.replay import KafkaSink, ReplayStats, SocketSink, read_rows, replay
from streaming_lstm.commands.common import ConfigFlag, add_reader, add_remote, config_from_args, config_parent, interrupt_exits_quietly, json_parent
from streaming_lstm.commands.output import print_result
from streaming_lstm.core.config import AppConfig, parse_duration
from streaming_lstm.kafka.settings import client_config
from streaming_lstm.local.broker import ENGINES
from streaming_lstm.storage.metrics import forecast_last, prequential_last, print_line
from streaming_lstm.storage.tracking import RUN_FILE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from streaming_lstm.trainer.runner import RunResult

TOPIC = "demo"
ROWS_DATA = "data/iris.csv"
EVENTS_CONF, EVENTS_DATA = "conf/solar.toml", "data/solar-hourly.csv"
DEFAULT_ROWS = 900


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        parents=[json_parent("print only the summary, as one JSON object"), config_parent()],
        help="the main job: a local Kafka broker + replay producer + streaming trainer, with a summary",
        description=(
            "Start a local Apache Kafka broker (or Tansu), replay the dataset into it (shuffled, looping, at a steady rate) "
            "and train on the stream, read by Spark's Kafka connector, until every produced row is trained; print one line "
            "per batch and a summary. A batch holds at most one trigger's worth of rows at --rate, so the model learns "
            "batch by batch however slow the machine is."
        ),
    )
    p.add_argument("--source", choices=("kafka", "socket"), default="kafka", help="kafka (a local broker, default) or socket")
    p.add_argument(
        "--broker",
        choices=ENGINES,
        default="apache-kafka",
        help="apache-kafka (default: the broker users run, from the jars scripts/setup.sh fetched) or tansu (Python-packaged, no Java jars; "
        "read by the Python source unless --kafka-reader says otherwise: Tansu under-reports the offsets Spark's connector plans with)",
    )
    add_reader(p)
    p.add_argument(
        "--secure",
        action="store_true",
        help="the broker listens on SASL_SSL (SCRAM-SHA-512, TLS with a certificate made at start), and producer and trainer authenticate",
    )
    p.add_argument("--data", metavar="CSV", help=f"dataset to replay and to score the final model on (default {ROWS_DATA}; --events: {EVENTS_DATA})")
    p.add_argument("--rows", type=int, help=f"rows to produce (default {DEFAULT_ROWS}: six shuffled passes over Iris; --events: every event once)")
    p.add_argument(
        "--events",
        action="store_true",
        help=f"event mode: replay an event stream in event-time order keyed by entity (default {EVENTS_CONF}, {EVENTS_DATA}), "
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
    p.add_argument("--partitions", type=int, action=ConfigFlag, key="stream.partitions", help="training partitions per micro-batch")
    p.add_argument("--trigger", action=ConfigFlag, key="stream.trigger", help="micro-batch interval (default 1s)")
    p.add_argument("--master", action=ConfigFlag, key="spark.master", help="Spark master")
    p.add_argument(
        "--mlflow", metavar="URI", action=ConfigFlag, key="mlflow.tracking_uri", help="track the run in MLflow: 'local' (SQLite in the checkpoint) or a URI"
    )
    add_remote(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.events:  # the event-mode demo's own dataset, unless told otherwise
        args.conf = args.conf or EVENTS_CONF
    args.data = args.data or (EVENTS_DATA if args.events else ROWS_DATA)
    cfg = config_from_args(args, defaults={"stream.trigger": "1s"})
    if not args.events and not cfg.stream.max_offsets_per_trigger:
        cap = batch_cap(args.rate, parse_duration(cfg.stream.trigger, "stream.trigger"))
        cfg = dataclasses.replace(cfg, stream=dataclasses.replace(cfg.stream, max_offsets_per_trigger=cap))
    interrupt_exits_quietly()
    summary = run_demo(cfg, args)
    print_result(summary, args.json, format_summary(summary))
    return 0


def batch_cap(rate: float, trigger_s: float) -> int:
    """Rows a batch may hold: one trigger's worth at the replay rate (at least 10). Without a cap a
    slow first batch (a cold start, a busy machine) swallows the whole stream, and the model is
    scored on rows it has never learned from."""
    return max(10, round(rate * max(trigger_s, 1.0)))


class BoundedSink:
    """A sink that waits while more than ``cap`` rows are sent but not yet handled by the trainer:
    the socket source has no per-batch cap of its own, so the demo bounds what a batch can see."""

    def __init__(self, sink: Any, cap: int, handled: Any, stop: threading.Event) -> None:
        self.sink, self.cap, self.handled, self.stop, self.sent = sink, cap, handled, stop, 0
        self.port = getattr(sink, "port", None)

    def send(self, row: str, key: int | str) -> None:
        while self.sent - self.handled() >= self.cap and not self.stop.wait(0.02):
            pass
        self.sink.send(row, key)
        self.sent += 1

    def close(self) -> None:
        self.sink.close()


@dataclass
class Stream:
    """Where the demo's rows go and how the trainer reads them."""

    sink: Any
    source: DataFrame
    where: str
    reader: str | None = None
    broker: Any = None


def open_stream(stack: ExitStack, spark: SparkSession, cfg: AppConfig, args: argparse.Namespace, say: Any, stop: threading.Event) -> Stream:
    """A started broker and a Kafka sink, or a local socket, plus the trainer's streaming source."""
    from streaming_lstm.kafka.reader import READERS, choose_reader, read_kafka
    from streaming_lstm.local.broker import make_broker
    from streaming_lstm.trainer import sources

    if args.source == "socket":
        socket_sink = SocketSink("127.0.0.1", 0, stop, say)
        stack.callback(socket_sink.close)
        return Stream(socket_sink, sources.socket_source(spark, "127.0.0.1", socket_sink.port), f"a local socket on 127.0.0.1:{socket_sink.port}")
    # Tansu under-reports ListOffsets for multi-record batches, which Spark's connector plans
    # with: the last records of a burst wait for more data. The Python source reads Fetch's high
    # watermark too, so "auto" picks it on Tansu.
    tansu_auto = args.broker == "tansu" and cfg.stream.kafka_reader == "auto"
    reader = READERS["python"] if tansu_auto else choose_reader(spark, cfg)
    broker = make_broker(args.broker, secure=getattr(args, "secure", False))
    stack.enter_context(broker)
    options = getattr(broker, "client_options", {})  # a secured broker: the settings a user would pass
    sink = KafkaSink(broker.bootstrap, TOPIC, args.topic_partitions, client_config(options))
    source = read_kafka(spark, cfg, broker.bootstrap, TOPIC, options, reader)
    where = f"Kafka topic '{TOPIC}' ({args.topic_partitions} partitions) on {broker.description} at {broker.bootstrap}, read by the {reader}"
    return Stream(sink, source, where, reader, broker)


def run_demo(cfg: AppConfig, args: argparse.Namespace) -> dict[str, Any]:
    from streaming_lstm.spark import connect
    from streaming_lstm.trainer import runner
    from streaming_lstm.trainer.keepwarm import trace_early
    from streaming_lstm.trainer.remote import make_trainer

    started = time.monotonic()
    checkpoint = Path(args.checkpoint or f"runs/demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    if (checkpoint / "spark").exists():
        raise ValueError(f"--checkpoint {checkpoint} already holds a run; the demo's broker starts empty, so use a new directory")
    events = bool(getattr(args, "events", False))
    if events != (cfg.data.mode == "events"):
        raise ValueError(f'--events {"needs" if events else "is needed for"} a config with data.mode = "events" (got {cfg.data.mode!r})')
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
    producer = Producer(cfg, args, events)
    trace_early(cfg, remote=connect.remote_from(getattr(args, "remote", None)) is not None)  # as train does
    with ExitStack() as stack:
        session = stack.enter_context(runner.session_scope(cfg, getattr(args, "remote", None), checkpoint))
        stream = open_stream(stack, session.spark, cfg, args, say, producer.stop)
        stack.callback(producer.stop.set)  # unwound first: the producer stops before its sink and broker
        trainer = make_trainer(session.spark, cfg, checkpoint, on_batch=None if args.json else print_line)
        say(f"demo: {trainer.get_ready()}")
        say(f"demo: replaying {producer.count} {'events' if events else 'rows'} of {args.data} at {args.rate:g} rows/s into {stream.where}")
        say(f"demo: training with {cfg.stream.partitions} partitions, trigger {cfg.stream.trigger}; checkpoint {checkpoint}")
        thread = producer.thread(stream, trainer)
        stop = threading.Event()
        runner.install_signal_handlers(stop)  # from here Ctrl-C finishes the batch in flight, then the summary
        opts = {"on_tick": producer.done, "idle_timeout": args.timeout, "on_first_trigger": thread.start}
        result = runner.run(trainer, stream.source, stop_event=stop, **opts)
    head = {"spark": session.kind, "source": args.source, "kafka_reader": stream.reader}
    tail = {"elapsed_s": time.monotonic() - started, "checkpoint": str(checkpoint), **mlflow_run(checkpoint)}
    if events:
        return {**head, **event_summary(result, producer.event_stats), **tail}
    broker = stream.broker.description if stream.broker is not None else None
    return {**head, "broker": broker, **row_summary(result, producer.stats, checkpoint, args.data), **tail}


class Producer:
    """The replay thread of the demo: rows (looping, shuffled, capped per batch) or events."""

    def __init__(self, cfg: AppConfig, args: argparse.Namespace, events: bool) -> None:
        self.args, self.events = args, events
        self.rows = [] if events else read_rows(args.data)
        self.plan = event_plan(cfg, args) if events else []
        self.count = len(self.plan) if events else (args.rows or DEFAULT_ROWS)
        self.cap = cfg.stream.max_offsets_per_trigger or batch_cap(args.rate, parse_duration(cfg.stream.trigger))
        self.stop = threading.Event()
        self.stats = ReplayStats()
        self.event_stats = EventStats()
        self._thread: threading.Thread | None = None
        self._trainer: Any = None

    def handled(self) -> int:
        return int(self._trainer.history.rows_in)

    def thread(self, stream: Stream, trainer: Any) -> threading.Thread:
        self._trainer = trainer
        sink = stream.sink if self.events or self.args.source == "kafka" else BoundedSink(stream.sink, self.cap, self.handled, self.stop)
        self._thread = threading.Thread(target=self._produce, args=(sink, self.args.source == "kafka"), name="replay-producer", daemon=True)
        return self._thread

    def _produce(self, sink: Any, close: bool) -> None:
        a = self.args
        try:
            if self.events:
                replay_events(self.plan, sink, rate=a.rate, stop=self.stop, stats=self.event_stats)
                self.stats.rows_sent = self.event_stats.events_sent
                return
            opts = {"rate": a.rate, "seed": a.replay_seed, "loops": 0, "limit": self.count, "corrupt_rate": a.corrupt_rate}
            replay(self.rows, sink, **opts, stop=self.stop, stats=self.stats, progress_every=1e9)
        finally:
            if close:
                sink.close()

    def done(self) -> str | None:
        """The stop condition: the producer has finished and every row it sent was handled."""
        if self._thread is None or self._thread.is_alive() or self._thread.ident is None:
            return None
        what = "event was accepted into windows" if self.events else "row was trained"
        return f"every produced {what} or dead-lettered" if self.handled() >= self.stats.rows_sent else None


def mlflow_run(checkpoint: Path) -> dict[str, Any]:
    """The MLflow run id (``--mlflow``), read from the checkpoint: the trainer may run in a Connect server."""
    path = checkpoint / RUN_FILE
    return {"mlflow_run_id": json.loads(path.read_text())["run_id"]} if path.exists() else {}


def row_summary(result: RunResult, sent: ReplayStats, checkpoint: Path, data: str) -> dict[str, Any]:
    """Every row produced is trained or dead-lettered; the prequential and the final accuracy."""
    from streaming_lstm.commands.standalone import evaluate

    _, ev = evaluate(checkpoint, data)
    return {
        "records_skipped": result.records_skipped,
        "rows_produced": sent.rows_sent,
        "corrupt_produced": sent.corrupt_sent,
        "rows_trained": result.rows_trained,
        "rows_dead_lettered": result.rows_dead,
        "batches": result.batches,
        "prequential_accuracy_last_150": prequential_last(result.history, 150),
        "final_accuracy": ev.accuracy,
        "final_accuracy_rows": ev.rows,
        "model_version": result.version,
        "stopped_by": result.stopped_by,
        "model": str(checkpoint / "model"),
        "metrics": str(checkpoint / "metrics.jsonl"),
    }


def event_plan(cfg: AppConfig, args: argparse.Namespace) -> list[tuple[Event, bool]]:
    """The demo's event schedule: the dataset in event-time order, jittered and with late events as asked."""
    late_by = 2 * parse_duration(cfg.data.allowed_lateness)
    plan = event_schedule(
        read_events(args.data, cfg.data), seed=args.replay_seed, jitter=parse_duration(args.jitter, "--jitter"), late_rate=args.late_rate, late_by=late_by
    )
    return plan[: args.rows] if args.rows else plan


def event_summary(result: RunResult, sent: EventStats) -> dict[str, Any]:
    """Every event produced is accepted into windows or dead-lettered; the forecasts' figures over
    the whole run and over the last fifth of the windows."""
    h = result.history
    windows = sum(int(m["rows_valid"]) for m in h)
    last = forecast_last(h, windows // 5)
    return {
        "events_produced": sent.events_sent,
        "late_produced": sent.late_sent,
        "events_accepted": sum(int(m.get("events_accepted", 0)) for m in h),
        "events_dead": result.rows_dead,
        "dead_reasons": {k: sum(int(m.get("dead_reasons", {}).get(k, 0)) for m in h) for k in sorted({r for m in h for r in m.get("dead_reasons", {})})},
        "windows_trained": windows,
        "prequential_mae": last["prequential_mae"],
        "prequential_rmse": last["prequential_rmse"],
        "naive_mae": last["naive_mae"],
        "skill": last["skill"],
        "skill_windows": "last fifth",
        "skill_all": forecast_last(h, windows + 1)["skill"],
        "batches": result.batches,
        "model_version": result.version,
        "stopped_by": result.stopped_by,
    }


def format_summary(s: dict[str, Any]) -> str:
    if "events_produced" in s:
        return "\n".join(
            [
                "",
                f"demo finished ({s['stopped_by']}) in {s['elapsed_s']:.1f} s",
                f"  events produced      {s['events_produced']} ({s['late_produced']} late on purpose)",
                f"  events accepted      {s['events_accepted']}; dead-lettered {s['events_dead']} {s['dead_reasons'] or ''}",
                f"  windows trained      {s['windows_trained']} in {s['batches']} batches",
                f"  last fifth           MAE {s['prequential_mae']:.4g} (naive {s['naive_mae']:.4g}), skill {s['skill']:+.3f}",
                f"  whole run            skill {s['skill_all']:+.3f}; model version {s['model_version']}; checkpoint {s['checkpoint']}",
            ]
        )
    return "\n".join(
        [
            "",
            f"demo finished ({s['stopped_by']}) in {s['elapsed_s']:.1f} s",
            f"  spark                {s['spark']}",
            f"  source               {s['source']}" + (f" on {s['broker']}, read by the {s['kafka_reader']}" if s["broker"] else ""),
            f"  rows produced        {s['rows_produced']} ({s['corrupt_produced']} corrupt on purpose)",
            f"  rows trained         {s['rows_trained']} in {s['batches']} batches",
            f"  dead-lettered        {s['rows_dead_lettered']}",
            f"  prequential accuracy {s['prequential_accuracy_last_150']:.3f} over the last 150 rows",
            f"  final model          accuracy {s['final_accuracy']:.3f} on {s['final_accuracy_rows']} rows, version {s['model_version']}",
            f"  model                {s['model']}",
            f"  metrics              {s['metrics']}",
        ]
    )
