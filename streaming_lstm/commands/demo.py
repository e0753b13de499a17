"""``streaming-lstm demo``: a local Kafka broker, a replay producer and the trainer in one command.

The dataset is replayed (shuffled, looping) into a fresh topic of a local Apache Kafka broker (or
Tansu with ``--broker tansu``, or a local socket with ``--source socket``) while the streaming
trainer learns from it, reading the topic with Spark's Kafka connector (``--kafka-reader``); the run
stops once every produced row has been trained (or dead-lettered), and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from producers.event_replay import Event, EventStats, event_schedule, read_events, replay_events
from producers.replay import KafkaSink, ReplayStats, SocketSink, read_rows, replay
from streaming_lstm.core.config import AppConfig, parse_duration
from streaming_lstm.spark import connect
from streaming_lstm.storage.metrics import forecast_last, prequential_last
from streaming_lstm.trainer import runner, sources
from streaming_lstm.trainer.remote import make_trainer

TOPIC = "demo"
EVENTS_CONF, EVENTS_DATA = "conf/solar.toml", "data/solar-hourly.csv"


def run_demo(cfg: AppConfig, args: argparse.Namespace) -> dict[str, Any]:
    from streaming_lstm.commands.standalone import evaluate
    from streaming_lstm.kafka.reader import READERS, choose_reader, read_kafka
    from streaming_lstm.local.broker import make_broker

    started = time.monotonic()
    checkpoint = Path(args.checkpoint or f"runs/demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    if (checkpoint / "spark").exists():
        raise ValueError(f"--checkpoint {checkpoint} already holds a run; the demo's broker starts empty, so use a new directory")
    events = bool(getattr(args, "events", False))
    if events != (cfg.data.mode == "events"):
        raise ValueError(f'--events {"needs" if events else "is needed for"} a config with data.mode = "events" (got {cfg.data.mode!r})')
    rows = [] if events else read_rows(args.data)
    plan = event_plan(cfg, args) if events else []
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, flush=True))
    stop_producer = threading.Event()
    stats = ReplayStats()
    event_stats = EventStats()
    broker: Any = None
    reader: str | None = None
    try:
        remote = connect.remote_from(getattr(args, "remote", None))
        session = connect.open_session(cfg.spark, remote, server_log=str(checkpoint / "connect-server.log") if remote == "local" else None)
        spark = session.spark
        if args.source == "kafka":
            # Tansu under-reports ListOffsets for multi-record batches, which Spark's connector plans
            # with: the last records of a burst wait for more data (seen: 899 of 900 trained). The
            # Python source reads Fetch's high watermark too, so "auto" picks it on Tansu.
            tansu_auto = args.broker == "tansu" and cfg.stream.kafka_reader == "auto"
            reader = READERS["python"] if tansu_auto else choose_reader(spark, cfg)
            broker = make_broker(args.broker).start()
            sink: Any = KafkaSink(broker.bootstrap, TOPIC, args.topic_partitions, {})
            source = read_kafka(spark, cfg, broker.bootstrap, TOPIC, {}, reader)
            where = f"Kafka topic '{TOPIC}' ({args.topic_partitions} partitions) on {broker.description} at {broker.bootstrap}, read by the {reader}"
        else:
            sink = SocketSink("127.0.0.1", 0, stop_producer, say)
            source = sources.socket_source(spark, "127.0.0.1", sink.port)
            where = f"a local socket on 127.0.0.1:{sink.port}"
        trainer = make_trainer(spark, cfg, checkpoint, echo=not args.json)
        say(f"demo: Python workers ready in {trainer.warm_up():.1f} s")
        say(f"demo: replaying {len(plan) if events else args.rows} {'events' if events else 'rows'} of {args.data} at {args.rate:g} rows/s into {where}")
        say(f"demo: training with {cfg.stream.partitions} partitions, trigger {cfg.stream.trigger}; checkpoint {checkpoint}")

        def produce() -> None:
            try:
                if events:
                    replay_events(plan, sink, rate=args.rate, stop=stop_producer, stats=event_stats)
                    stats.rows_sent = event_stats.events_sent
                    return
                replay(
                    rows,
                    sink,
                    rate=args.rate,
                    seed=args.replay_seed,
                    loops=0,
                    limit=args.rows or 900,
                    corrupt_rate=args.corrupt_rate,
                    stop=stop_producer,
                    stats=stats,
                    progress_every=1e9,
                )
            finally:
                if args.source == "kafka":
                    sink.close()

        producer = threading.Thread(target=produce, name="replay-producer", daemon=True)

        def done() -> str | None:
            if producer.is_alive() or producer.ident is None:
                return None
            handled = sum(int(m["rows_in"]) for m in trainer.history)
            what = "event was accepted into windows" if events else "row was trained"
            return f"every produced {what} or dead-lettered" if handled >= stats.rows_sent else None

        result = runner.run(trainer, source, stop_event=threading.Event(), on_tick=done, idle_timeout=args.timeout, on_first_trigger=producer.start)
    finally:
        stop_producer.set()
        if args.source == "socket" and "sink" in locals():
            sink.close()
        if broker is not None:
            broker.stop()
        if "session" in locals():
            session.stop()
    if events:
        return {
            "spark": session.kind,
            "source": args.source,
            "kafka_reader": reader,
            **event_summary(result, event_stats),
            "elapsed_s": time.monotonic() - started,
            "checkpoint": str(checkpoint),
        }
    _, ev = evaluate(checkpoint, args.data)
    return {
        "spark": session.kind,
        "source": args.source,
        "broker": broker.description if broker is not None else None,
        "kafka_reader": reader,
        "records_skipped": result.records_skipped,
        "rows_produced": stats.rows_sent,
        "corrupt_produced": stats.corrupt_sent,
        "rows_trained": result.rows_trained,
        "rows_dead_lettered": result.rows_dead,
        "batches": result.batches,
        "prequential_accuracy_last_150": prequential_last(result.history, 150),
        "final_accuracy": ev.accuracy,
        "final_accuracy_rows": ev.rows,
        "model_version": result.version,
        "stopped_by": result.stopped_by,
        "elapsed_s": time.monotonic() - started,
        "checkpoint": str(checkpoint),
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


def event_summary(result: runner.RunResult, sent: EventStats) -> dict[str, Any]:
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
