"""The ``foreachBatch`` handler: convert, dispatch, aggregate. No training math here (training.py).

Where the query's own plan trains (planned.py, :meth:`StreamingTrainer.training_plan`), ``df``
holds the tasks' results: the handler skips an applied batch id (1), gives the batch's tasks their
ticket and runs the plan (steps 2-4 happen there), writes the dead letters the tasks returned, and
applies the results (5). Where the driver may train (``stream.train_in``), ``df`` holds the parsed
and keyed rows: the handler collects and trains them itself (planned.result_rows) or adds the
workers' training stage to them (planned.training_stage). Elsewhere (Spark Connect, event mode,
a checkpoint the Python workers cannot read) it plans each micro-batch ``(df, batch_id)`` itself:

1. A batch id the state has already applied is skipped and logged (Spark replays the last
   uncommitted batch after a restart; the model that includes it may already be on disk).
2. Rows are parsed and validated in Spark SQL and cached, their counts observed by the training
   job as it reads them (parse/counts.py: one Spark job for a clean batch; an exact count of the
   cached rows when a batch has rejected rows or the observation could be off).
3. Valid rows are keyed in the same job (routing.py): ``(position in its source partition + that
   partition + a shift seeded by the batch id) mod P``, so P partitions whose sizes differ by at
   most the number of source partitions; each key is routed to its own shuffle partition.
4. ``mapInPandas`` (Arrow) trains one task per key from the broadcast global weights (under Spark
   Connect, which has no broadcast, from one extra model row per task; connect.ship_model),
   test-then-train, and returns one row per key. Rejected rows are then written to the dead-letter
   sink ``CHECKPOINT/deadletter/batch_id=N/`` (overwritten on replay, so each row appears once).
5. The driver hands the results to :class:`~streaming_lstm.trainer.state.TrainerState`, which rejects bad
   updates, averages the rest, and persists the new version before the handler returns, i.e.
   before Spark commits the batch.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from streaming_lstm.core import faults, schedule
from streaming_lstm.core.config import AppConfig
from streaming_lstm.core.results import KIND, RESULT_SCHEMA, Fold, PartitionResult, decode
from streaming_lstm.core.seeds import key_shift
from streaming_lstm.core.weights import LSTMConfig
from streaming_lstm.parse import counts as batch_counts
from streaming_lstm.parse.counts import BatchCounts
from streaming_lstm.parse.spark_parse import dead_letters, observed, parsed_batch
from streaming_lstm.spark import connect
from streaming_lstm.spark.session import adaptive_execution_off, max_result_bytes
from streaming_lstm.storage import tb_log
from streaming_lstm.storage.deadletters import DeadLetterCap
from streaming_lstm.storage.fs import join, local_path
from streaming_lstm.storage.metrics import METRICS_FILE, BatchCallback, BatchMetrics, History, MetricsLog
from streaming_lstm.storage.store import ModelStore, ensure_private_dir
from streaming_lstm.storage.tb_log import TensorBoardLog
from streaming_lstm.storage.tracking import open_tracker
from streaming_lstm.trainer import executor, planned
from streaming_lstm.trainer.keepwarm import driver_cores, start_workers, start_workers_beside, trace_in_background, warm_workers
from streaming_lstm.trainer.routing import ROUTE, driver_threads, keyed_rows, plan_tasks
from streaming_lstm.trainer.state import TrainerState, Update, batch_metrics
from streaming_lstm.trainer.window_state import descriptor_warning, in_window_order

log = logging.getLogger("streaming_lstm.trainer.handler")
Ran = tuple[list[PartitionResult], list[Fold], BatchCounts, dict[str, float]]  # a batch's results, folds, counts and step seconds


class StopRequested(RuntimeError):
    """Raised inside a batch that starts after a stop was requested, so Spark does not commit it.

    Raising is what keeps the batch uncommitted (it is replayed on restart); it is a normal stop,
    so py4j's report of it is dropped (:class:`QuietStop`) and the JVM's is configured away
    (resources/log4j2.properties). The runner says in one line which batch was the last applied."""


class QuietStop(logging.Filter):
    """Drops py4j's ERROR report of a :class:`StopRequested` raised in the foreachBatch callback
    (a traceback on stderr for what is a normal stop); every other report passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] is not None and "StopRequested" in repr(record.exc_info[1]))


# In every process that runs the handler: the driver, or a Spark Connect server's Python worker.
logging.getLogger("py4j.clientserver").addFilter(QuietStop())


class StreamingTrainer:
    """Holds the state and the per-run Spark objects; :meth:`handle` is the foreachBatch function."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, checkpoint: str | os.PathLike[str], *, on_batch: BatchCallback | None = None) -> None:
        self.spark = spark
        self.cfg = cfg
        self.checkpoint = ensure_private_dir(checkpoint)  # a local path or a Hadoop URI (fs.py)
        self.deadletter_dir = join(self.checkpoint, "deadletter")
        self.deadletter_cap = DeadLetterCap(self.deadletter_dir, int(cfg.stream.deadletter_max_mb * 2**20))
        self.state = TrainerState.open(cfg, ModelStore(join(self.checkpoint, "model")))
        roll, kept = int(cfg.stream.log_roll_mb * 2**20), cfg.stream.log_files_kept
        self.metrics = MetricsLog(join(self.checkpoint, METRICS_FILE), roll, kept)
        self.lstm = LSTMConfig.from_app(cfg)
        self.partitions = cfg.stream.partitions
        self.tasks, self.routes, self.threads = plan_tasks(spark, cfg)
        why = planned.why_per_batch(spark, cfg, self.checkpoint)
        self.planned = why is None  # the query's plan trains (planned.py); else each batch is planned here
        if why:
            log.info("each batch is planned in Python: %s", why)
        # The driver may train (stream.train_in): the query's plan then ends at the keyed rows.
        self.driver_trains = self.planned and planned.driver_may_train(cfg, spark.sparkContext.master or "", remote=False)
        # The driver's TF threads: its task groups share one pool (routing.driver_threads).
        self.driver_threads = driver_threads(cfg, driver_cores(spark.sparkContext.master or "")) if self.driver_trains else 0
        self.driver_rows = planned.driver_row_limit(cfg, max_result_bytes(spark)) if self.driver_trains else 0
        if cfg.stream.train_in == "driver" and not self.driver_trains:
            raise ValueError(f"stream.train_in = driver is not possible here: {why or 'stream.plan = batch'}; use stream.train_in = auto or workers")
        self._trace: Future[None] | None = None  # the driver's trace (warm_up) until a batch waits for it
        self.on_batch = on_batch  # told each applied batch's metrics (the console line, or nothing)
        self._lock = threading.Lock()
        self._stopping = False
        self.busy = False
        self.batches_applied = 0
        self.last_rows_at = time.monotonic()
        self.history = History()
        tb_dir = join(self.checkpoint, "tensorboard")
        tb_off = tb_log.unsupported(tb_dir) if cfg.stream.tensorboard else None
        if tb_off:
            log.warning(tb_off)
        self.tensorboard = TensorBoardLog(tb_dir, roll, kept) if cfg.stream.tensorboard and not tb_off else None
        self._reconcile_metrics()
        self.tracker = open_tracker(cfg, self.checkpoint)

    # -- lifecycle ----------------------------------------------------------------------------
    def _reconcile_metrics(self) -> None:
        """A crash between saving a version and appending its metrics line loses no line."""
        meta = self.state.last_meta
        if meta.get("source") == "stream" and meta.get("metrics") and self.metrics.last_batch_id() < int(meta["batch_id"]):
            self.metrics.append(meta["metrics"])

    def request_stop(self) -> None:
        """Wait for the batch in flight (if any) to finish and be saved; refuse later batches."""
        with self._lock:
            self._stopping = True

    def warm_up(self, wait: bool = True) -> float:
        """Start the Python workers and trace the model in each (seconds); see :func:`warm_workers`.
        Where the driver trains, it traces the model in a thread while the workers, which then
        only parse and key, start beside it; ``wait=False`` (``train``) starts only the trace and
        returns: the query starts beside it and the first batch the driver trains waits for it."""
        if not self.driver_trains:
            return warm_workers(self.spark, self.cfg, self.tasks, self.threads)
        started = time.perf_counter()
        self._trace = trace_in_background(self.cfg, self.driver_threads, self.tasks)
        if wait:
            start_workers(self.spark, self.tasks)
            self._traced()
        return time.perf_counter() - started

    def get_ready(self) -> str:
        """:meth:`warm_up` as ``train`` runs it (the driver's trace and the parsing workers' start
        beside the query's start); what it did."""
        if not self.driver_trains:
            return f"Python workers ready in {self.warm_up():.1f} s"
        self.warm_up(wait=False)
        start_workers_beside(self.spark, self.tasks)
        which = "every batch" if self.cfg.stream.train_in == "driver" else f"while batches stay at or below {self.driver_rows} rows"
        return f"the driver trains {which} (stream.train_in); it traces the model while the query starts"

    def _traced(self) -> None:
        """Wait for the trace :meth:`warm_up` started, if any; raise what it raised."""
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.result()

    def training_plan(self, source: DataFrame) -> DataFrame:
        """The streaming plan from the source's rows: parsed and trained when this trainer plans
        once (planned.py), else parsed in Spark with the counts observed (each batch planned here)."""
        if not self.planned:
            return observed(source, self.cfg.data)
        if self.driver_trains:
            return planned.keyed_plan(source, self.cfg, self.routes)
        return planned.training_plan(source, self.cfg, self.routes, self.threads, self.model_dir())

    def model_dir(self) -> str:
        """The model store as the training tasks read it (a worker's working directory is its own)."""
        return os.path.abspath(local_path(join(self.checkpoint, "model")))

    def follow(self, query: Any) -> None:
        """Nothing to follow: this trainer runs in this process (remote.py has the other kind)."""

    # -- the handler --------------------------------------------------------------------------
    def handle(self, df: DataFrame, batch_id: int) -> None:
        with self._lock:
            if self._stopping:
                raise StopRequested(f"batch {batch_id} not started: the trainer is stopping (it will be replayed on restart)")
            self.busy = True
            try:
                with adaptive_execution_off(df.sparkSession):
                    self._handle(df, batch_id)
            finally:
                self.busy = False

    def _handle(self, df: DataFrame, batch_id: int) -> None:
        """The five steps of the module docstring, each a method below."""
        if self.state.is_applied(batch_id):
            log.info("batch %d already applied (model version %d): skipped", batch_id, self.state.version)
            self.last_rows_at = time.monotonic()  # a replayed batch is progress, not idleness
            if self.cfg.data.mode == "events":
                # The window operator's state for this batch must still be committed (Spark checks
                # every state-store partition committed): run the plan, write nothing. The windows
                # it forms are the ones the saved version already trained on.
                df.write.format("noop").mode("overwrite").save()
            return
        started = time.perf_counter()
        epochs = schedule.local_epochs(self.cfg.train, self.state.rows_seen)  # from the state before this batch
        in_driver = False
        if KIND in df.columns:  # the tasks' results: the query's plan trained (training_plan)
            results, folds, counts, steps = self._run_planned(df, batch_id, epochs)
        elif ROUTE in df.columns:  # keyed rows (planned.keyed_plan): the driver trains them, or the workers
            (results, folds, counts, steps), in_driver = self._run_keyed(df, batch_id, epochs)
        else:
            results, folds, counts, steps = self._run_per_batch(df, batch_id, epochs)
        if counts.empty:
            return  # an empty batch changes nothing and needs no version
        metrics = batch_metrics(self.cfg, self.state.version + 1, batch_id, counts, results, time.perf_counter() - started, epochs)
        metrics["step_seconds"] = steps
        metrics["count_job"] = counts.exact_job
        metrics["trained_in"] = "driver" if in_driver else "workers"
        self._apply(batch_id, results, folds, metrics)

    def _run_per_batch(self, df: DataFrame, batch_id: int, epochs: int) -> Ran:
        """Steps 2-4, planned for this batch: parse (unless the query did), count, train, dead letters."""
        started = time.perf_counter()
        if self.cfg.data.mode == "events":
            df = in_window_order(df)
        # Cached: the exact count and the dead letters read it again (a Kafka batch is not fetched
        # twice; in event mode the window operator must not run twice). Without the cache a batch
        # read twice runs the query's observed-metrics node twice, and Spark's progress then
        # double-counts its rows.
        parsed = parsed_batch(df, self.cfg.data).persist()
        try:
            observed, observation = batch_counts.observe(parsed)
            results, folds = self._train(observed, batch_id, epochs)
            t_train = time.perf_counter()
            counts = batch_counts.settle(observation, sum(r.rows for r in results), parsed)
            t_count = time.perf_counter()
            if counts.rows_dead:
                self._write_dead_letters(dead_letters(parsed, batch_id), batch_id)
            t_dead = time.perf_counter()
        finally:
            parsed.unpersist()
        # "read_parse_train" includes decoding the results (PartitionResult.from_row); "count" is
        # counts.exact_counts' job when the observed counts were not enough (else ~0).
        return results, folds, counts, {"read_parse_train": t_train - started, "count": t_count - t_train, "dead_letters": t_dead - t_count}

    def _run_keyed(self, df: DataFrame, batch_id: int, epochs: int) -> tuple[Ran, bool]:
        """Keyed rows trained in the driver (planned.in_driver) or by the workers' stage; and
        whether the driver trained them. Under ``stream.train_in = auto`` a batch whose keyed rows
        Spark refuses to hand the driver (over ``spark.driver.maxResultSize``: a first batch, or
        one after small ones, can be of any size) goes to the workers, whose results are the keys'
        weights, not the rows; under ``driver`` (where the workers may not read the model) that
        is an error naming the setting."""
        if planned.in_driver(self.cfg, self.state.last_meta, self.driver_rows):
            try:
                return self._run_planned(df, batch_id, epochs, in_driver=True), True
            except Exception as e:  # Spark's error comes wrapped (py4j, or PySpark's captured exceptions)
                if "maxResultSize" not in str(e):
                    raise
                too_many = f"batch {batch_id}: its rows are more than spark.driver.maxResultSize lets the driver collect"
                if self.cfg.stream.train_in == "driver":
                    fix = "raise spark.driver.maxResultSize ([spark.conf]) or cap the batches (stream.max_offsets_per_trigger)"
                    raise RuntimeError(f"{too_many}; {fix}") from e
                log.warning("%s; the workers train it", too_many)
        stage = planned.training_stage(df, self.cfg, self.routes, self.threads, self.model_dir())
        return self._run_planned(stage, batch_id, epochs), False

    def _run_planned(self, df: DataFrame, batch_id: int, epochs: int, *, in_driver: bool = False) -> Ran:
        """Steps 2-4 where the query's plan holds them (planned.py): give the batch's tasks their
        ticket, run the plan, decode; write the dead letters the tasks returned. ``in_driver``:
        ``df`` holds the keyed rows, which this process trains (planned.result_rows)."""
        started = time.perf_counter()
        where = "parse in the workers, train in the driver" if in_driver else "parse, score and train"
        connect.describe(self.spark, f"streaming-lstm batch {batch_id}: {where} ({self.partitions} partitions)")
        ticket = planned.Ticket(batch_id, self.state.version, epochs, key_shift(self.cfg.model.seed, batch_id, self.partitions))
        ticket.give(self.spark)
        faults.hit_later("mid_train", batch_id)
        table = df.toArrow()  # Arrow: the results carry weights as bytes (see _train)
        if in_driver:
            self._traced()
            start = functools.partial(executor.start_model, self.state)
            rows: list[Any] = list(planned.result_rows(table, self.cfg, start, ticket, self.driver_threads, started))
        else:
            rows = table.to_pylist()
        results, folds, counts, letters = planned.decode_planned(rows, self.lstm, batch_id)
        t_train = time.perf_counter()
        if letters:
            self._write_dead_letters(planned.dead_letter_frame(self.spark, letters), batch_id)
        steps = {"read_parse_train": t_train - started, "count": 0.0, "dead_letters": time.perf_counter() - t_train}
        return results, folds, counts, steps

    def _write_dead_letters(self, letters: DataFrame, batch_id: int) -> None:
        """Step 4b: rejected rows to ``CHECKPOINT/deadletter/batch_id=N/`` (overwritten on replay)."""
        connect.describe(self.spark, f"streaming-lstm batch {batch_id}: dead letters")
        letters.write.mode("overwrite").json(join(self.deadletter_dir, f"batch_id={batch_id}"))
        self.deadletter_cap.written(batch_id)

    def _apply(self, batch_id: int, results: list[PartitionResult], folds: list[Fold], metrics: BatchMetrics) -> None:
        """Step 5b: drift, then the state averages and saves the new version; then log and report."""
        faults.hit("before_save", batch_id)
        self._watch_drift(metrics, batch_id)
        updates = [Update(r.rows, r.weights, r.norm, r.key) for r in results if not r.folded]
        folded_norms = [r.norm for r in results if r.folded and r.rejected is None]  # key order
        rejected = [r.rejected for r in results if r.rejected is not None]
        t_apply = time.perf_counter()
        recent = [r.recent for r in results if r.recent is not None]  # key order (decode)
        gains = [r.gain for r in results if r.gain is not None]  # every scored key's, refused or not: scoring is out of sample
        applied = self.state.apply(batch_id, updates, dict(metrics), folds=folds, folded_norms=folded_norms, rejected=rejected, recent=recent, gains=gains)
        assert applied is not None
        metrics["step_seconds"]["aggregate_and_save"] = time.perf_counter() - t_apply
        faults.hit("after_save", batch_id)
        metrics["version"], metrics["rows_seen"], metrics["rejected_updates"] = applied.version, self.state.rows_seen, applied.partitions_rejected
        self.metrics.append(metrics)
        self.history.append(metrics)
        if self.tracker is not None:
            try:
                self.tracker.log(metrics)
            except Exception as exc:  # the batch is saved; the next start logs what is missing
                log.warning("MLflow: batch %d not logged (%s); the next start logs it", batch_id, str(exc).splitlines()[0][:200])
        if self.tensorboard is not None:
            try:
                self.tensorboard.write(batch_id, dict(metrics), self.state.weights)
            except Exception as exc:  # monitoring must never fail a batch that is already saved
                log.warning("TensorBoard logging turned off: %s", exc)
                self.tensorboard = None
        self.batches_applied += 1
        if self.cfg.data.mode == "events" and not connect.is_remote(self.spark):
            warning = descriptor_warning(self.spark, self.batches_applied)
            if warning:
                log.warning(warning)
        if metrics["rows_valid"]:
            self.last_rows_at = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(metrics)

    def _watch_drift(self, metrics: BatchMetrics, batch_id: int) -> None:
        """ADWIN on the prequential error; while an alarm is raised, optionally forget faster.
        Forecasts: the error is the batch's MAE relative to the naive forecast's, capped at 1 (a
        rate in [0, 1], as ADWIN's bound needs), counted once per window."""
        rows = metrics["rows_valid"]
        if "prequential_mae" in metrics:
            ratio = metrics["prequential_mae"] / metrics["naive_mae"] if metrics["naive_mae"] > 0 else 0.0
            errors = rows * min(1.0, ratio) if math.isfinite(ratio) else rows
        else:
            errors = rows - metrics["prequential_correct"]
        alarm, raised = self.state.watch_drift(rows, errors)  # type: ignore[arg-type]
        drift = self.state.drift
        if alarm:
            window = drift.rows if drift else 0
            log.warning("batch %d: drift detected (prequential error %.3f; window now %d rows)", batch_id, errors / max(rows, 1), window)
        metrics["drift"] = int(alarm)
        metrics["drift_raised"] = raised
        metrics["drift_detections"] = drift.detections if drift else 0

    def _train(self, parsed: DataFrame, batch_id: int, epochs: int) -> tuple[list[PartitionResult], list[Fold]]:
        """Steps 3-4: key the valid rows (routing.py), train one task per key group from the global
        weights (a broadcast, or model rows under Connect; executor.py), and decode the results
        sorted by key, the tasks' folds (mean aggregation, results.py) by their first key: the
        driver's float sums then run in one fixed order, so a replay reproduces the same weights."""
        connect.describe(self.spark, f"streaming-lstm batch {batch_id}: parse, score and train ({self.partitions} partitions)")
        shift = key_shift(self.cfg.model.seed, batch_id, self.partitions)
        blob = executor.encode_model(*executor.start_model(self.state))
        shipped = connect.ship_model(self.spark, blob)  # a broadcast, or None: model rows (Connect)
        columns = planned.training_columns(self.cfg)
        keyed = keyed_rows(parsed, columns, shift, self.partitions, self.routes, None if shipped is not None else blob)
        fn = functools.partial(
            executor.train_frames, model_blob=shipped, config_dict=self.cfg.to_dict(), batch_id=batch_id, threads=self.threads, epochs=epochs
        )
        faults.hit_later("mid_train", batch_id)
        try:
            # Arrow, not collect(): the results carry every partition's weights as bytes (1.8 MB
            # each for the 2016 experiment's 128,256 model), and pickled rows over py4j cost far more.
            table = keyed.mapInPandas(fn, RESULT_SCHEMA).toArrow()
        finally:
            connect.release(shipped)
        return decode(table.to_pylist(), self.lstm)
