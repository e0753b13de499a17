"""``streaming-lstm predict`` on a stream: score rows with the newest model version as it appears.

Each micro-batch checks the model directory for a newer version (a directory listing) and loads it
before scoring, and once more after: a version written while a batch is being scored has that
batch scored again with it. So a version is in use by the end of the batch running when it is
written, or else by the end of the next batch: the lag is at most the wait for the next trigger
plus one batch. Output: one JSON line per row, ``{"batch_id", "value", "class", "probabilities",
"model_version", "scored_at"}``; a row that cannot be parsed gets ``"error"`` instead of a
prediction, in its place among the rows of its Spark partition (rows keep their order within a
partition; a source may deal them across partitions, as the socket source does round-robin). One
Spark job per micro-batch.

Event mode (a model trained with ``data.mode = "events"``): events are formed into windows of the
last ``timesteps`` events per entity in the query's state (window_state.py, as in training, with
no target events), and each window as it completes gets one line ``{"batch_id", "entity", "time"
(its last event's, seconds since the epoch), "forecast"`` (the next ``horizon`` values of each
target, horizon-major) ``or "class"/"probabilities", "model_version", "scored_at"}``; dead events
(late, out of order, malformed) get an ``"error"`` line. A model with columns known ahead
(``data.known``, horizon 1) forecasts when asked instead: an event whose targets are empty is a
forecast request carrying the known values of the step it asks for, answered with one line whose
``"time"`` is the request's (windows.answer_requests); requests never become the entity's events.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from streaming_lstm.core import faults
from streaming_lstm.core.config import AppConfig, ConfigError, parse_duration
from streaming_lstm.parse.events import observed_events
from streaming_lstm.parse.rows import ACCEPTED, HEADER
from streaming_lstm.parse.spark_parse import POSITION, observed, parsed_batch
from streaming_lstm.spark import connect
from streaming_lstm.storage.metrics import accuracy_note
from streaming_lstm.storage.store import ModelStore, SavedModel
from streaming_lstm.trainer import executor
from streaming_lstm.trainer.keepwarm import WorkerKeepAlive
from streaming_lstm.trainer.prediction_sinks import Scored, ScoredLog, SinkSpec
from streaming_lstm.trainer.remote import require_local_path
from streaming_lstm.trainer.routing import route_keys, with_model_rows
from streaming_lstm.trainer.sources import SourceSpec


class StreamPredictor:
    """Scores each micro-batch and hands its records to the sinks (prediction_sinks.py); with a
    checkpoint (:meth:`start`) a replayed batch is scored by the version recorded for it."""

    def __init__(
        self, spark: SparkSession, model_path: str | Path, out: IO[str] | None = None, sinks: SinkSpec | None = None, topic: str | None = None
    ) -> None:
        self.spark = spark
        self.store = ModelStore.resolve(model_path)
        self.sinks = (sinks or SinkSpec()).sinks(out)
        self.topic = topic  # a Kafka source's topic: rows are identified as topic/partition/offset
        self.scored: ScoredLog | None = None
        self.saved: SavedModel | None = None
        self.blob: bytes = b""
        self.shipped: Any = None
        self.routes = route_keys(connect.default_parallelism(spark))
        self.rows_scored = 0
        self.rows_rejected = 0
        self.rows_labelled = 0
        self.rows_correct = 0
        self.rescored_batches = 0  # batches scored again because a version appeared meanwhile
        self.last_batch_id = -1  # the last micro-batch handled (scored and written out)
        self._refresh()
        if self.saved is None:
            raise FileNotFoundError(f"no model found in {model_path}")

    def _refresh(self) -> bool:
        """Load the newest version if it is newer than the one in use; True if it was."""
        versions = self.store.versions()
        if not versions or (self.saved is not None and versions[-1] <= self.saved.version):
            return False
        saved = self.store.load_latest()
        if saved is None or (self.saved is not None and saved.version <= self.saved.version):
            return False
        self._use(saved)
        return True

    def _use(self, saved: SavedModel) -> None:
        self.saved = saved
        self.blob = executor.encode_model(saved.weights, saved.norm, gain=saved.gain)
        connect.release(self.shipped)
        self.shipped = connect.ship_model(self.spark, self.blob)  # a broadcast; None under Connect

    def _scorer(self) -> Any:
        saved = self.saved
        assert saved is not None
        return functools.partial(executor.score_frames, model_blob=self.shipped, config_dict=saved.config.to_dict(), threads=0)

    def _with_model_rows(self, rows: DataFrame) -> DataFrame:
        """``rows`` with ``_pos`` (partition, position: the input order). Classic mode scores them
        where they are, with the broadcast model. Under Connect, which has no broadcast, one model
        row per scoring task is added (executor.score_frames) and all are routed by ``_route``: each
        input partition goes whole to one task, and ``_pos`` restores the order afterwards."""
        numbered = rows.withColumn("_pos", F.monotonically_increasing_id())
        return numbered if self.shipped is not None else with_model_rows(numbered, self.routes, self.blob)

    def warm_up(self) -> float:
        """Import TF and trace the prediction function in every Python worker (seconds taken).

        Without it the first micro-batch pays ~4 s of TF import and tracing per worker, and the
        first new model version is picked up that much later.
        """
        started = time.perf_counter()
        saved = self.saved
        assert saved is not None
        feats = saved.config.input_columns()
        rows = self.spark.range(len(self.routes) * 2).select(
            F.lit("").alias("value"), *[F.lit(0.0).alias(f) for f in feats], F.lit(None).cast("string").alias("reason")
        )
        connect.describe(self.spark, "streaming-lstm predict: warm up the Python workers")
        self._with_model_rows(rows).mapInPandas(self._scorer(), executor.SCORE_SCHEMA).count()
        return time.perf_counter() - started

    def start(self, source: DataFrame, checkpoint: str | Path, trigger: str = "1 second", handler: Any = None) -> StreamingQuery:
        """Start the prediction query (parsed in the plan, row counts as observed metrics);
        ``handler`` replaces :meth:`handle` (RemotePredictHandler under Spark Connect)."""
        saved = self.saved
        assert saved is not None
        cfg = saved.config
        from streaming_lstm.trainer.window_state import operator_partitions, windowed

        if cfg.data.mode == "events":
            refuse_known_ahead(cfg)
            plan = windowed(observed_events(source, cfg.data, require_label=False), cfg, predict=True)
        else:
            plan = observed(source, cfg.data, require_label=False)
        self.scored = ScoredLog(str(checkpoint))
        with operator_partitions(source.sparkSession, cfg):
            return plan.writeStream.foreachBatch(handler or self.handle).option("checkpointLocation", str(checkpoint)).trigger(processingTime=trigger).start()

    def _score(self, parsed: DataFrame, batch_id: int) -> Any:
        saved = self.saved
        assert saved is not None
        connect.describe(self.spark, f"streaming-lstm predict batch {batch_id}: score (model v{saved.version})")
        # Arrow, not collect(): one round trip, no per-row pickling.
        return self._with_model_rows(parsed).mapInPandas(self._scorer(), executor.SCORE_SCHEMA).toArrow().sort_by("_pos")

    def _labelled(self, r: dict[str, Any], names: list[str]) -> dict[str, str]:
        """``label`` for a row that carried a known one (counted, with whether it was predicted)."""
        label = r.get("label")
        if label is None or label != label or label < 0:  # None or NaN: no known label
            return {}
        self.rows_labelled += 1
        self.rows_correct += int(int(label) == r["predicted"])
        return {"label": names[int(label)]}

    def handle(self, df: DataFrame, batch_id: int) -> None:
        """Score the batch (a replay: with the version recorded for it), record what scored it,
        then write its records to every sink."""
        replay = self.scored.replay(batch_id) if self.scored is not None else None
        if replay is not None:
            self._use(replay[1])
        else:
            self._refresh()
        parsed = self._parsed(df)
        table = self._score(parsed, batch_id)
        # A version written while this batch was scored would otherwise wait for the next trigger:
        # score the batch once more with it, so what goes out is the newest model's (once per
        # batch only, so a trainer faster than the predictor cannot stall it).
        if replay is None and table.num_rows and self._refresh():
            self.rescored_batches += 1
            table = self._score(parsed, batch_id)
        saved = self.saved
        assert saved is not None
        if table.num_rows == 0:
            self.last_batch_id = batch_id
            return
        if replay is not None:
            scored = replay[0]
        elif self.scored is not None:
            scored = self.scored.record(batch_id, saved, time.time())
        else:
            scored = Scored(batch_id, saved.version, time.time())
        records = self._records(table.to_pylist(), batch_id, saved, scored.scored_at)
        faults.hit("predict_before_write", batch_id)
        for sink in self.sinks:
            sink.write(df.sparkSession, batch_id, records)
        faults.hit("predict_after_write", batch_id)
        self.last_batch_id = batch_id

    def _parsed(self, df: DataFrame) -> DataFrame:
        """The batch's rows to score: parsed, header and tally rows left out, with ``_id``."""
        saved = self.saved
        assert saved is not None
        parsed = parsed_batch(df, saved.config.data, require_label=False).filter(F.col("reason").isNull() | ~F.col("reason").isin(HEADER, ACCEPTED))
        extra = ["entity", "end_time"] if saved.config.data.mode == "events" else ["label"] if saved.config.data.task == "classify" else []
        ident = F.lit(None).cast("string")
        if self.topic is not None and POSITION in parsed.columns:
            pos = F.col(POSITION)
            ident = F.when(pos.isNotNull(), F.concat_ws("/", F.lit(self.topic), pos["p"].cast("string"), pos["o"].cast("string")))
        return parsed.select("value", *saved.config.input_columns(), "reason", *extra, ident.alias("_id"))

    def _records(self, rows: list[dict[str, Any]], batch_id: int, saved: SavedModel, scored_at: float) -> list[dict[str, Any]]:
        """One record per scored row (the JSON line), in the batch's order, and the counts."""
        names = saved.config.data.class_labels()
        out = []
        for index, r in enumerate(rows):
            ident = r["_id"] or (f"{r['entity']}/{r['end_time']!r}" if r["entity"] is not None else f"{batch_id}/{index}")
            if r["error"] is not None:
                out.append(
                    {"id": ident, "batch_id": batch_id, "value": r["value"], "error": r["error"], "model_version": saved.version, "scored_at": scored_at}
                )
                continue
            where = {"entity": r["entity"], "time": r["end_time"]} if r["entity"] is not None else {"value": r["value"]}
            if saved.config.data.task == "forecast":
                what: dict[str, Any] = {"forecast": [round(v, 6) for v in r["outputs"]]}
            else:
                what = {"class": names[r["predicted"]], "probabilities": [round(p, 6) for p in r["outputs"]]}
                what.update(self._labelled(r, names))
            out.append({"id": ident, "batch_id": batch_id, **where, **what, "model_version": saved.version, "scored_at": scored_at})
        scored = sum(1 for r in out if "error" not in r)
        self.rows_scored += scored
        self.rows_rejected += len(out) - scored
        return out


class RemotePredictHandler:
    """``predict --remote``: the foreachBatch function sent to the Spark Connect server. It builds
    the :class:`StreamPredictor` there on its first batch, writing to the sinks from there (a
    ``--out`` path is on the server's machine), as the trainer's RemoteHandler does (trainer/remote.py)."""

    def __init__(self, model: str, checkpoint: str, sinks: SinkSpec, topic: str | None) -> None:
        self.model, self.checkpoint, self.sink_spec, self.topic = model, checkpoint, sinks, topic
        self._predictor: StreamPredictor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint": self.checkpoint, "sinks": self.sink_spec, "topic": self.topic}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["checkpoint"], state["sinks"], state["topic"])  # type: ignore[misc]

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        if self._predictor is None:
            self._predictor = StreamPredictor(df.sparkSession, self.model, sinks=self.sink_spec, topic=self.topic)
            self._predictor.scored = ScoredLog(self.checkpoint)
        self._predictor.handle(df, batch_id)


def _count_lines(path: str, start: int) -> tuple[int, int, int, int]:
    """Scored and rejected lines appended to ``path`` after byte ``start``, and of the scored ones
    those with a label and those whose class was it."""
    import os

    if not os.path.exists(path):
        return 0, 0, 0, 0
    with open(path, "rb") as f:
        f.seek(start)
        lines = [json.loads(x) for x in f.read().splitlines() if x.strip()]
    rejected = sum(1 for r in lines if "error" in r)
    labelled = [r for r in lines if "label" in r and "class" in r]
    return len(lines) - rejected, rejected, len(labelled), sum(r["label"] == r["class"] for r in labelled)


def refuse_known_ahead(cfg: AppConfig) -> None:
    """A model with columns known ahead (``data.known``) forecasts when asked, one step at a time:
    a forecast request (an event whose targets are empty) carries the known values of the one step
    it asks for, so a horizon of several steps cannot be served."""
    if cfg.data.mode == "events" and cfg.data.known and cfg.data.horizon > 1:
        raise ConfigError(
            f"predict: the model reads data.known = {list(cfg.data.known)} at each of its data.horizon = {cfg.data.horizon} "
            "forecast steps, and a forecast request carries them for one step; streaming predict serves such a model at "
            "horizon 1 (its training metrics, report --data and export serve any horizon)"
        )


def predict_config(args: argparse.Namespace) -> AppConfig:
    """The model's own configuration, with the reader the flags ask for; checks ``--remote``'s needs."""
    cfg = ModelStore.load_latest_or_raise(args.model).config
    refuse_known_ahead(cfg)
    if getattr(args, "kafka_reader", None):
        cfg = dataclasses.replace(cfg, stream=dataclasses.replace(cfg.stream, kafka_reader=args.kafka_reader))
    if connect.remote_from(getattr(args, "remote", None)) is not None:
        if not args.out and "kafka" not in (args.sink or []):
            raise ConfigError("predict --remote needs --out FILE (or --sink kafka): under Spark Connect the predictions are written by the server")
        require_local_path(str(args.checkpoint), "--checkpoint")
    return cfg


def sink_spec(args: argparse.Namespace, source: SourceSpec) -> SinkSpec:
    """The ``--sink`` flags as a :class:`SinkSpec`; the Kafka sink defaults to the source's broker and settings."""
    from streaming_lstm.kafka.settings import bootstrap_servers

    kinds = tuple(dict.fromkeys(args.sink or ["jsonl"]))
    bootstrap = args.out_bootstrap or source.bootstrap or (bootstrap_servers(None) if "kafka" in kinds else None)
    out = os.path.abspath(args.out) if args.out and "://" not in args.out else args.out
    spec = SinkSpec(kinds, out, args.out_topic, bootstrap, source.kafka_options)
    spec.check()
    return spec


def run_cli(args: argparse.Namespace, out: IO[str], trigger_ms: int) -> None:
    """``streaming-lstm predict --source ...``: score until idle, a signal, or a failed query.

    Under Spark Connect (``--remote``) the scoring runs in the server (RemotePredictHandler),
    which writes the sinks; rows are counted from the lines it appended, or the progress reports.
    """
    from streaming_lstm.trainer import runner
    from streaming_lstm.trainer.sources import open_source

    cfg = predict_config(args)
    started = time.monotonic()
    spec = SourceSpec.from_args(args)
    sinks = sink_spec(args, spec)  # before Spark starts: a missing flag fails fast
    with runner.session_scope(cfg, getattr(args, "remote", None)) as session:
        remote = session.kind == "connect"
        topic = spec.topic if spec.kind == "kafka" else None
        source = open_source(session.spark, cfg, spec)
        predictor = StreamPredictor(session.spark, os.path.abspath(args.model), out, sinks, topic)
        print(f"streaming-lstm: Python workers ready in {predictor.warm_up():.1f} s", file=sys.stderr, flush=True)
        counted = remote and "jsonl" in sinks.kinds and args.out
        out_start = os.path.getsize(args.out) if counted and os.path.exists(args.out) else 0
        handler = RemotePredictHandler(os.path.abspath(args.model), os.path.abspath(args.checkpoint), sinks, topic) if remote else None
        query = predictor.start(source, os.path.abspath(args.checkpoint), f"{trigger_ms} milliseconds", handler)
        event = threading.Event()
        runner.install_signal_handlers(event)
        keep = WorkerKeepAlive(session.spark, parse_duration(cfg.stream.keep_workers, "stream.keep_workers"))
        follow = PredictFollower(query, predictor if not remote else None, runner.IdleClock(args.idle_timeout), event, keep)
        runner.wait(query, follow.tick)
        runner.stop_after_commit(query, predictor.last_batch_id if not remote else follow.batch)
        error = query.exception()
    if error is not None:
        raise RuntimeError(f"the prediction query failed: {runner.query_error(error)}")
    p = predictor
    if not remote:
        scored, rejected, labelled, correct = p.rows_scored, p.rows_rejected, p.rows_labelled, p.rows_correct
    else:  # the server wrote them: count the lines it appended, or the rows Spark reported
        scored, rejected, labelled, correct = _count_lines(args.out, out_start) if counted else (follow.rows(), 0, 0, 0)
    took = f"in {time.monotonic() - started:.1f} s"
    print(f'streaming-lstm: scored {scored} rows, {rejected} rejected (an "error" line each), {took}{accuracy_note(labelled, correct)}', file=sys.stderr)


class PredictFollower:
    """The predict loop's tick: rows handled so far (from this process's predictor, or under
    Connect from the query's progress reports), the idle clock, a stop signal, and the Python
    workers (and the model compiled in each) kept across pauses (keepwarm.py)."""

    def __init__(self, query: StreamingQuery, local: StreamPredictor | None, clock: Any, event: threading.Event, keep: WorkerKeepAlive | None = None) -> None:
        self.query, self.local, self.clock, self.event, self.keep = query, local, clock, event, keep
        self.batch = -1
        self.seen = 0

    def rows(self) -> int:
        if self.local is not None:
            return self.local.rows_scored + self.local.rows_rejected
        if self.query.lastProgress is not None:
            self.batch = int(self.query.lastProgress["batchId"])
        return sum(int(s.get("numInputRows") or 0) for p in self.query.recentProgress for s in p.get("sources", []))

    def tick(self) -> str | None:
        from streaming_lstm.trainer.runner import trigger_active

        rows = self.rows()
        self.clock.saw(rows)
        if self.keep is not None:
            if rows != self.seen:  # a batch with rows ran Python tasks
                self.seen = rows
                self.keep.saw_batch(self.keep.clock())
            self.keep.check(lambda: trigger_active(self.query))
        if self.event.is_set():
            return "signal"
        if self.clock.expired(self.query):
            return "idle"
        return None
