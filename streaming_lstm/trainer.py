"""The ``foreachBatch`` handler: convert, dispatch, aggregate. No training math here (train.py).

For each micro-batch ``(df, batch_id)``:

1. A batch id the state has already applied is skipped and logged (Spark replays the last
   uncommitted batch after a restart; the model that includes it may already be on disk).
2. Rows are parsed and validated in Spark SQL and cached; one small aggregation counts valid rows per
   Spark partition and rejected rows per reason. Rejected rows are written to the dead-letter sink
   ``CHECKPOINT/deadletter/batch_id=N/`` (overwritten on replay, so each row appears once).
3. Valid rows get a dense global index (their Spark partition's offset plus their position in it)
   and the key ``(index + shift) mod P``: P balanced partitions whose sizes differ by at most one,
   with a shift seeded by the batch id. Each key is routed to its own shuffle partition.
4. ``mapInPandas`` (Arrow) trains one task per key from the broadcast global weights
   (worker.py), test-then-train, and returns one row per key.
5. The driver hands the results to :class:`~streaming_lstm.state.TrainerState`, which rejects bad
   updates, averages the rest, and persists the new version before the handler returns, i.e.
   before Spark commits the batch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from streaming_lstm import faults, worker
from streaming_lstm.config import AppConfig
from streaming_lstm.drift import Adwin
from streaming_lstm.normalizer import NormStats
from streaming_lstm.spark_parse import POSITION, dead_letters, feature_names, parsed_batch
from streaming_lstm.state import TrainerState, Update
from streaming_lstm.store import ModelStore, ensure_private_dir
from streaming_lstm.tb_log import TensorBoardLog
from streaming_lstm.train import task_seed
from streaming_lstm.weights import LSTMConfig, arrays_from_bytes, check_weights

log = logging.getLogger("streaming_lstm.trainer")
KEYING_STREAM = 2**32 - 1  # seed stream of the key shift, apart from the partition keys 0..P-1
LOCAL_BITS = 33  # monotonically_increasing_id() = (partition index << 33) + position in partition


class StopRequested(RuntimeError):
    """Raised inside a batch that starts after a stop was requested, so Spark does not commit it."""


def route_keys(spark: SparkSession, partitions: int) -> list[int]:
    """For each slot j < P a long value that ``repartition(P, col)`` sends to shuffle partition j.

    Spark's hash partitioning is ``pmod(murmur3(value), P)``, which is what ``F.hash`` computes, so
    one small query finds a value per partition; keys then never share a task.
    """
    found: dict[int, int] = {}
    upper = 64 * partitions
    while len(found) < partitions:
        rows = spark.range(0, upper).select("id", F.pmod(F.hash(F.col("id")), F.lit(partitions)).alias("p")).collect()
        for row in rows:
            found.setdefault(int(row["p"]), int(row["id"]))
        upper *= 4
    return [found[j] for j in range(partitions)]


class MetricsLog:
    """``metrics.jsonl``: one JSON object per applied batch, appended and flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last_batch_id(self) -> int:
        if not self.path.exists():
            return -1
        last = -1
        with self.path.open("rb") as fh:
            for line in fh:
                try:
                    last = max(last, int(json.loads(line)["batch_id"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash
        return last

    def append(self, record: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def partition_order(counts: list[Any]) -> list[int]:
    """A batch's Spark partition ids in source order: by the smallest source position of their rows
    (Kafka's (partition, offset), see :func:`~streaming_lstm.spark_parse.source_position`), then by
    id. ``counts`` are rows with ``pid`` and ``pos`` (a ``(p, o)`` pair or None)."""
    first: dict[int, tuple[int, int] | None] = {}
    for r in counts:
        pid, pos = int(r["pid"]), (tuple(r["pos"]) if r["pos"] is not None else None)
        if pid not in first or (pos is not None and (first[pid] is None or pos < first[pid])):  # type: ignore[operator]
            first[pid] = pos  # type: ignore[assignment]
    return sorted(first, key=lambda pid: (first[pid] is None, first[pid] or (0, 0), pid))


def prequential_last(history: list[dict[str, Any]], rows: int = 150) -> float:
    """Prequential accuracy over (about) the last ``rows`` rows: whole batches from the end, since
    per-row scores are not kept."""
    correct = seen = 0
    for m in reversed(history):
        if seen >= rows:
            break
        correct += int(m["prequential_correct"])
        seen += int(m["rows_valid"])
    return correct / seen if seen else math.nan


def format_line(m: dict[str, Any]) -> str:
    acc = m.get("prequential_accuracy")
    acc_s = f"{acc:.3f}" if isinstance(acc, float) and not math.isnan(acc) else "  -  "
    return (
        f"batch {m['batch_id']:>5} | rows {m['rows_in']:>6} valid {m['rows_valid']:>6} dead {m['rows_dead']:>4}"
        f" | preq acc {acc_s} loss {m['prequential_loss']:.4f} | train loss {m['train_loss']:.4f}"
        f" | {m['rows_per_s']:>8.0f} rows/s | {m['latency_s']:.2f} s | v{m['version']}" + ("  DRIFT" if m.get("drift") else "")
    )


class StreamingTrainer:
    """Holds the state and the per-run Spark objects; :meth:`handle` is the foreachBatch function."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, checkpoint: str | Path, *, echo: bool = True) -> None:
        self.spark = spark
        self.cfg = cfg
        self.checkpoint = ensure_private_dir(Path(checkpoint))
        self.deadletter_dir = self.checkpoint / "deadletter"
        self.state = TrainerState.open(cfg, ModelStore(self.checkpoint / "model"))
        self.metrics = MetricsLog(self.checkpoint / "metrics.jsonl")
        self.lstm = LSTMConfig.from_app(cfg)
        self.partitions = cfg.stream.partitions
        cores = spark.sparkContext.defaultParallelism
        # Keys are the logical partitions; Spark tasks can each train several keys in turn. One
        # task per core (by default) saves the ~0.15 s fixed cost of a Python task per extra key:
        # measured at P = 15 on 2 cores, a warm batch went from 2.7 s to under 1 s.
        self.tasks = min(self.partitions, cfg.stream.tasks or cores)
        self.routes = route_keys(spark, self.tasks)
        self.threads = cfg.train.tf_threads or max(1, cores // self.tasks)
        self.echo = echo
        self._lock = threading.Lock()
        self._stopping = False
        self.busy = False
        self.batches_applied = 0
        self.last_rows_at = time.monotonic()
        self.history: list[dict[str, Any]] = []
        self.drift = Adwin(cfg.stream.drift_delta) if cfg.stream.drift_delta > 0 else None
        self.drift_left = 0  # batches the current drift alarm stays raised
        self.tensorboard = TensorBoardLog(self.checkpoint / "tensorboard") if cfg.stream.tensorboard else None
        self._reconcile_metrics()

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

    def warm_up(self) -> float:
        """Start the Python workers and trace the model in each before the first batch (seconds).

        Spark reuses Python workers, so the ~4 s TF import and ~1 s tracing are paid here once
        instead of inside the first micro-batch.
        """
        started = time.perf_counter()
        self.spark.sparkContext.setJobDescription("streaming-lstm: warm up the Python workers")
        slots = self.spark.range(self.tasks).withColumn("_route", F.element_at(F.array(*[F.lit(r) for r in self.routes]), F.col("id").cast("int") + 1))
        fn = functools.partial(worker.warm_frames, config_json=self.cfg.to_dict(), threads=self.threads)
        slots.repartition(self.tasks, F.col("_route")).mapInPandas(fn, worker.WARM_SCHEMA).collect()
        return time.perf_counter() - started

    # -- the handler --------------------------------------------------------------------------
    def handle(self, df: DataFrame, batch_id: int) -> None:
        with self._lock:
            if self._stopping:
                raise StopRequested(f"batch {batch_id} not started: the trainer is stopping (it will be replayed on restart)")
            self.busy = True
            try:
                self._handle(df, batch_id)
            finally:
                self.busy = False

    def _handle(self, df: DataFrame, batch_id: int) -> None:
        if self.state.is_applied(batch_id):
            log.info("batch %d already applied (model version %d): skipped", batch_id, self.state.version)
            return
        started = time.perf_counter()
        sc = self.spark.sparkContext
        sc.setJobGroup(f"batch-{batch_id}", f"streaming-lstm batch {batch_id}: parse and count", interruptOnCancel=False)
        parsed = parsed_batch(df, self.cfg.data).persist()
        try:
            by_pid = parsed.groupBy(F.spark_partition_id().alias("pid"), F.col("reason"))
            counts = by_pid.agg(F.count(F.lit(1)).alias("count"), F.min(POSITION).alias("pos")).collect()
            valid_by_pid = {int(r["pid"]): int(r["count"]) for r in counts if r["reason"] is None}
            order = partition_order(counts)
            dead_by_reason: dict[str, int] = {}
            for r in counts:
                if r["reason"] is not None:
                    dead_by_reason[r["reason"]] = dead_by_reason.get(r["reason"], 0) + int(r["count"])
            rows_dead = sum(dead_by_reason.values())
            rows_valid = sum(valid_by_pid.values())
            t_count = time.perf_counter()
            if rows_dead:
                sc.setJobDescription(f"streaming-lstm batch {batch_id}: dead letters")
                dead_letters(parsed, batch_id).write.mode("overwrite").json(str(self.deadletter_dir / f"batch_id={batch_id}"))
            t_dead = time.perf_counter()
            # Sorted by key: the driver's float sums then run in one fixed order, so a replayed
            # batch reproduces the same weights whatever order the tasks finished in.
            results = sorted(self._train(parsed, batch_id, valid_by_pid, order), key=lambda r: int(r["key"])) if rows_valid else []
            t_train = time.perf_counter()
        finally:
            parsed.unpersist()
        if rows_valid == 0 and rows_dead == 0:
            return  # an empty batch changes nothing and needs no version
        sc.setJobDescription(f"streaming-lstm batch {batch_id}: aggregate")
        updates = [
            Update(
                int(r["rows"]),
                check_weights(arrays_from_bytes(r["weights"]), self.lstm),
                NormStats.from_arrays(arrays_from_bytes(r["norm"]), self.lstm.num_features),
                int(r["key"]),
            )
            for r in results
        ]
        rows_trained = sum(int(r["rows"]) for r in results)
        if rows_trained != rows_valid:
            raise RuntimeError(f"batch {batch_id}: {rows_valid} valid rows but {rows_trained} trained; not committing")
        correct = sum(int(r["correct"]) for r in results)
        loss_sum = sum(float(r["loss_sum"]) for r in results)
        train_loss = sum(float(r["train_loss"]) * int(r["rows"]) for r in results) / rows_valid if rows_valid else float("nan")
        latency = time.perf_counter() - started
        metrics: dict[str, Any] = {
            "batch_id": batch_id,
            "version": self.state.version + 1,
            "rows_in": rows_valid + rows_dead,
            "rows_valid": rows_valid,
            "rows_dead": rows_dead,
            "dead_reasons": dead_by_reason,
            "partition_rows": sorted(int(r["rows"]) for r in results),
            "prequential_correct": correct,
            "prequential_accuracy": correct / rows_valid if rows_valid else float("nan"),
            "prequential_loss": loss_sum / rows_valid if rows_valid else float("nan"),
            "train_loss": train_loss,
            "task_seconds_max": max((float(r["seconds"]) for r in results), default=0.0),
            "rows_per_s": rows_valid / latency if latency > 0 else 0.0,
            "latency_s": latency,
            "time": time.time(),
        }
        faults.hit("before_save", batch_id)
        self._watch_drift(metrics, rows_valid, correct, batch_id)
        t_apply = time.perf_counter()
        metrics["step_seconds"] = {
            "read_parse_count": t_count - started,
            "dead_letters": t_dead - t_count,
            "train": t_train - t_dead,
            "decode": t_apply - t_train,
        }
        applied = self.state.apply(batch_id, updates, metrics)
        assert applied is not None
        metrics["step_seconds"]["aggregate_and_save"] = time.perf_counter() - t_apply
        faults.hit("after_save", batch_id)
        metrics.update(version=applied.version, rows_seen=self.state.rows_seen, rejected_updates=applied.partitions_rejected)
        self.metrics.append(metrics)
        self.history.append(metrics)
        if self.tensorboard is not None:
            try:
                self.tensorboard.write(batch_id, metrics, self.state.weights)
            except Exception as exc:  # monitoring must never fail a batch that is already saved
                log.warning("TensorBoard logging turned off: %s", exc)
                self.tensorboard = None
        self.batches_applied += 1
        if rows_valid:
            self.last_rows_at = time.monotonic()
        if self.echo:
            print(format_line(metrics), flush=True)

    def _watch_drift(self, metrics: dict[str, Any], rows: int, correct: int, batch_id: int) -> None:
        """ADWIN on the prequential error; while an alarm is raised, optionally forget faster."""
        alarm = self.drift.update(rows, rows - correct) if self.drift is not None else False
        if alarm:
            self.drift_left = self.cfg.stream.drift_batches
            log.warning(
                "batch %d: drift detected (prequential error %.3f; window now %d rows)",
                batch_id,
                (rows - correct) / max(rows, 1),
                self.drift.rows if self.drift else 0,
            )
        raised = self.drift_left > 0
        self.drift_left = max(0, self.drift_left - 1)
        if self.cfg.stream.drift_half_life_batches > 0:
            self.state.decay = math.exp(math.log(0.5) / self.cfg.stream.drift_half_life_batches) if raised else self.state.base_decay
        metrics["drift"] = int(alarm)
        metrics["drift_raised"] = raised
        metrics["drift_detections"] = self.drift.detections if self.drift else 0

    def _train(self, parsed: DataFrame, batch_id: int, valid_by_pid: dict[int, int], order: list[int]) -> list[Any]:
        sc = self.spark.sparkContext
        sc.setJobDescription(f"streaming-lstm batch {batch_id}: score and train ({self.partitions} partitions)")
        P = self.partitions
        offsets: dict[int, int] = {}
        running = 0
        for pid in (p for p in order if p in valid_by_pid):
            offsets[pid] = running
            running += valid_by_pid[pid]
        shift = task_seed(self.cfg.model.seed, batch_id, KEYING_STREAM) % P
        offset_map = F.create_map(*[x for pid, off in offsets.items() for x in (F.lit(pid), F.lit(off).cast("long"))])
        mid = F.col("_mid")
        index = F.element_at(offset_map, F.shiftright(mid, LOCAL_BITS).cast("int")) + F.col("_mid").bitwiseAND((1 << LOCAL_BITS) - 1)
        key = F.pmod(F.col("_idx") + F.lit(shift), F.lit(P)).cast("int")
        routes = F.array(*[F.lit(r).cast("long") for r in self.routes])
        valid = parsed.filter(F.col("reason").isNull()).select(*feature_names(self.cfg.data), "label").withColumn("_mid", F.monotonically_increasing_id())
        task = F.pmod(F.col("key"), F.lit(self.tasks)) + 1  # key k runs in task k mod T
        keyed = valid.withColumn("_idx", index).withColumn("key", key).withColumn("_route", F.element_at(routes, task))
        keyed = keyed.repartition(self.tasks, F.col("_route")).drop("_route", "_mid")
        blob = worker.encode_model(self.state.training_weights(), self.state.norm)
        bc = sc.broadcast(blob)
        try:
            fn = functools.partial(worker.train_frames, model_blob=bc, config_json=self.cfg.to_dict(), batch_id=batch_id, threads=self.threads)
            faults.hit_later("mid_train", batch_id)
            # Arrow, not collect(): the results carry every partition's weights as bytes (1.8 MB each
            # for the seed's 128,256 model), and pickled rows over py4j cost far more.
            table = keyed.mapInPandas(fn, worker.RESULT_SCHEMA).toArrow()
            return [Row(**r) for r in table.to_pylist()]
        finally:
            bc.unpersist()
