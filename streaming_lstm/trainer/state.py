"""The driver-side state: global weights, normaliser, counters; applies each batch id exactly once
and checks and records each batch's figures (:func:`batch_metrics`).

Averaging rule (the one Spark MLlib's StreamingKMeans uses for its centres). With the partition
results (n_k, w_k) of batch t and the forgetting factor a in [0, 1]:

    W_t = (a * N_{t-1} * W_{t-1} + sum_k n_k * w_k) / (a * N_{t-1} + sum_k n_k)
    N_t = a * N_{t-1} + sum_k n_k

a = 1 is the cumulative mean over all rows, a = 0 keeps only the newest batch (the 2016 experiment's plain
average, FedAvg). Partitions with n_k = 0 contribute nothing. With a robust aggregation the batch's
``sum_k n_k w_k`` is replaced by ``(sum_k n_k) * robust_k(w_k)``. With a server optimiser
(``stream.server_optimizer``, server_opt.py) the batch's aggregate is first turned into the server
model ``x_t = opt(x_{t-1}, aggregate)``, where ``x_{t-1}`` is what the batch trained from; ``x_t``
then takes the aggregate's place in the rule above and is what the next batch trains from.

Contract of :meth:`TrainerState.apply`: a batch id at or below the last applied one changes nothing
and returns ``None`` (Spark replays the last uncommitted batch after a restart). Otherwise the new
version is persisted atomically *before* ``apply`` returns, so Spark commits a batch only after the
model that includes it is on disk. Together: every batch id is applied exactly once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming_lstm.core.config import AppConfig, decay_for_half_life, effective_decay
from streaming_lstm.core.drift import Adwin
from streaming_lstm.core.gain import ForecastGain
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.rehearsal import Rehearsal
from streaming_lstm.core.results import Fold, PartitionResult
from streaming_lstm.core.server_opt import ServerOptimizer
from streaming_lstm.core.weights import LSTMConfig, Weights, all_finite, flatten, init_weights, unflatten
from streaming_lstm.parse.counts import BatchCounts
from streaming_lstm.storage.metrics import BatchMetrics, forecast_fields
from streaming_lstm.storage.store import ModelStore, shape_mismatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """One partition's contribution: rows trained, weights after training, its rows' statistics."""

    rows: int
    weights: Weights
    norm: NormStats
    key: int = 0


def check_update(key: int, rows: int, weights: Weights, start: np.ndarray | None, max_update_norm: float) -> str | None:
    """Why a partition's weights are refused, or None: non-finite, or (with ``max_update_norm`` > 0
    and the ``start`` it trained from) a change larger than that. Run by the driver on each key's
    weights, or by the task itself when it folds its keys (results.Fold)."""
    if rows <= 0:
        return None
    if not all_finite(weights):
        return f"partition {key}: non-finite weights"
    if max_update_norm > 0 and start is not None:
        change = float(np.linalg.norm(flatten(weights) - start))
        if change > max_update_norm:
            return f"partition {key}: weight change {change:.3g} exceeds stream.max_update_norm {max_update_norm:g}"
    return None


def running_average(prev: np.ndarray, prev_n: float, batch_sum: np.ndarray, batch_n: float, decay: float) -> tuple[np.ndarray, float]:
    """The averaging rule above on flat vectors. ``batch_sum`` is ``sum_k n_k w_k``."""
    total = decay * prev_n + batch_n
    if total <= 0:
        return prev, 0.0
    return (decay * prev_n * prev + batch_sum) / total, total


def aggregate(vectors: np.ndarray, rows: np.ndarray, method: str, trim_fraction: float = 0.1) -> np.ndarray:
    """The batch's weight vector from K partition vectors (K, D) and their row counts (K,).

    ``mean``: row-weighted mean (FedAvg). ``median``: coordinate-wise median. ``trimmed_mean``:
    per coordinate, drop the ``trim_fraction`` lowest and highest values, then average the rest.
    """
    if method == "mean":
        return (rows[:, None] * vectors).sum(axis=0) / rows.sum()
    if method == "median":
        return np.median(vectors, axis=0)
    if method == "trimmed_mean":
        k = len(vectors)
        cut = int(np.floor(trim_fraction * k))
        ordered = np.sort(vectors, axis=0)
        return ordered[cut : k - cut].mean(axis=0)
    raise ValueError(f"unknown aggregation {method!r}")


@dataclass
class Applied:
    """What :meth:`TrainerState.apply` did with one batch."""

    batch_id: int
    version: int
    rows_trained: int
    partitions_used: int
    partitions_rejected: int
    rejected_reasons: list[str] = field(default_factory=list)


class TrainerState:
    """Weights, normaliser statistics, rows seen, last applied batch id, model version, persisted."""

    def set_drift_raised(self, raised: bool) -> None:
        """The drift policy: while an alarm is raised, forget with ``stream.drift_half_life_batches``
        (when set); otherwise with the configured decay."""
        half_life = self.cfg.stream.drift_half_life_batches
        if half_life > 0:
            self.decay = decay_for_half_life(half_life) if raised else self.base_decay

    def watch_drift(self, rows: int, errors: float) -> tuple[bool, bool]:
        """ADWIN (drift.py) takes a batch's prequential ``errors`` over its ``rows``, before the
        batch is applied; returns (alarm, raised). An alarm raises the drift policy for the next
        ``stream.drift_batches`` batches, this one included (:meth:`set_drift_raised`), and with
        ``stream.drift_forget_rehearsal`` empties the rehearsal buffer, which holds the old concept
        (this batch's rows then start the new one). The detector's window and the batches left are
        saved with each version, so a replayed batch decides as its first attempt did."""
        alarm = self.drift.update(rows, errors) if self.drift is not None else False
        if alarm:
            self.drift_left = self.cfg.stream.drift_batches
            if self.cfg.stream.drift_forget_rehearsal:
                self.rehearsal = Rehearsal.empty(self.lstm.num_features, len(self.cfg.data.target_columns()))
        raised = self.drift_left > 0
        self.drift_left = max(0, self.drift_left - 1)
        self.set_drift_raised(raised)
        return alarm, raised

    def __init__(self, cfg: AppConfig, store: ModelStore | None) -> None:
        self.cfg = cfg
        self.lstm = LSTMConfig.from_app(cfg)
        self.store = store
        self.base_decay = effective_decay(cfg.stream)
        self.decay = self.base_decay  # shorter while a drift alarm is raised (set_drift_raised)
        self.weights: Weights = init_weights(self.lstm)
        self.next_weights: Weights = self.weights
        self.norm = NormStats.empty(self.lstm.num_stats)
        self.running_n = 0.0
        self.rows_seen = 0
        self.last_batch_id = -1
        self.version = 0
        self.rejected_updates = 0
        self.last_meta: dict[str, Any] = {}
        self.server = ServerOptimizer.from_config(cfg.stream)
        self.rehearsal = Rehearsal.empty(self.lstm.num_features, len(cfg.data.target_columns()))
        self.drift: Adwin | None = Adwin(cfg.stream.drift_delta) if cfg.stream.drift_delta > 0 else None
        self.drift_left = 0  # batches the current drift alarm stays raised
        uses_gain = bool(cfg.change_columns()) and cfg.data.forecast_gain_windows > 0
        self.gain: ForecastGain | None = ForecastGain.empty(self.lstm.num_classes) if uses_gain else None

    @classmethod
    def open(cls, cfg: AppConfig, store: ModelStore, version: int | None = None) -> TrainerState:
        """Resume from the newest loadable version in ``store``, or start fresh if it is empty;
        with ``version``, from exactly that version (0: fresh), or a :class:`ModelStoreError`.

        A model saved with other shapes is an error, never silently replaced by random weights.
        """
        state = cls(cfg, store)
        saved = store.load_latest() if version is None else store.load(version) if version > 0 else None
        if saved is not None:
            why = shape_mismatch(LSTMConfig.from_app(saved.config), state.lstm, store.dir)
            if why:
                raise ValueError(f"{why}: use another --checkpoint")
            state.weights = saved.weights
            state.next_weights = saved.next_weights if saved.next_weights is not None else saved.weights
            state.norm = saved.norm
            state.version = saved.version
            state.running_n = float(saved.meta.get("running_n", 0.0))
            state.rows_seen = int(saved.meta.get("rows_seen", 0))
            state.last_batch_id = int(saved.meta.get("batch_id", -1))
            state.rejected_updates = int(saved.meta.get("rejected_updates", 0))
            state.last_meta = saved.meta
            if state.server is not None:
                state.server.load_arrays(saved.server, sum(w.size for w in saved.weights.values()))
            if saved.rehearsal is not None:  # cut to the configured size: 0 drops it from the next version on
                state.rehearsal = saved.rehearsal.extended([], cfg.train.rehearsal_rows)
            if state.drift is not None:
                state.drift.load_arrays(saved.drift)
            state.drift_left = int(saved.meta.get("drift_left", 0))
            if state.gain is not None and saved.gain is not None:
                state.gain = saved.gain
        return state

    def is_applied(self, batch_id: int) -> bool:
        return batch_id <= self.last_batch_id

    def training_weights(self) -> Weights:
        """The weights the next batch's partitions start from (``stream.train_from``)."""
        return self.weights if self.cfg.trains_from_running() else self.next_weights

    def apply(
        self,
        batch_id: int,
        updates: Sequence[Update],
        metrics: Mapping[str, Any] | None = None,
        *,
        folds: Sequence[Fold] = (),
        folded_norms: Sequence[NormStats] = (),
        rejected: Sequence[str] = (),
        recent: Sequence[Rehearsal] = (),
        gains: Sequence[ForecastGain] = (),
    ) -> Applied | None:
        """Fold one batch's partition updates into the state and persist a new version.

        ``updates`` are per-key weights, checked here; ``folds`` are tasks' row-weighted sums of
        keys they checked themselves (mean aggregation only; results.Fold), with those keys'
        statistics in ``folded_norms`` (key order) and their refusals in ``rejected``. ``recent``
        are the keys' newest rows (key order), appended to the rehearsal buffer (rehearsal.py);
        ``gains`` their scored windows' sums for the forecast gain (gain.py, key order).
        Returns ``None`` (and changes nothing) for a batch id already applied.
        """
        if self.is_applied(batch_id):
            return None
        # Only the update-norm check needs the starting point as a vector (hundreds of thousands of
        # values for the 2016 experiment's model): skip the flatten when the check is off, as it is by default.
        start = flatten(self.training_weights()) if self.cfg.stream.max_update_norm > 0 or self.server is not None else None
        good, reasons = self._checked(batch_id, updates, rejected, start)
        if folds and (good or self.cfg.stream.aggregation != "mean"):
            raise ValueError("folded results are for mean aggregation only, and not mixed with per-key weights")
        folded_rows = sum(f.rows for f in folds)
        rows = sum(u.rows for u in good) + folded_rows
        if good or folded_rows:
            self._fold_in(self._batch_vector(good, folds, folded_rows, start), rows, [*(u.norm for u in good), *folded_norms])
        else:
            self.running_n *= self.decay  # N_t = a * N_{t-1}: the weights stay, their mass decays
        self.rows_seen += rows
        if self.cfg.train.rehearsal_rows > 0:
            self.rehearsal = self.rehearsal.extended(recent, self.cfg.train.rehearsal_rows)
        if self.gain is not None:
            self.gain = self.gain.updated(gains, self.cfg.data.forecast_gain_windows)
        self.rejected_updates += len(reasons)
        self.last_batch_id = batch_id
        self.version += 1
        self._save(batch_id, metrics)
        return Applied(batch_id, self.version, rows, len(good) + sum(f.keys for f in folds), len(reasons), reasons)

    def _checked(self, batch_id: int, updates: Sequence[Update], rejected: Sequence[str], start: np.ndarray | None) -> tuple[list[Update], list[str]]:
        """The updates that pass the checks (empty ones dropped), and every refusal's reason, logged."""
        good: list[Update] = []
        reasons: list[str] = list(rejected)
        for reason in rejected:
            log.warning("batch %d: rejected update: %s", batch_id, reason)
        for u in updates:
            why = check_update(u.key, u.rows, u.weights, start, self.cfg.stream.max_update_norm)
            if why:
                reasons.append(why)
                log.warning("batch %d: rejected update: %s", batch_id, why)
            elif u.rows > 0:
                good.append(u)
        return good, reasons

    def _batch_vector(self, good: Sequence[Update], folds: Sequence[Fold], folded_rows: int, start: np.ndarray | None) -> np.ndarray:
        """This batch's aggregate as one flat vector, through the server optimiser if there is one."""
        if folded_rows:
            batch_vec = functools.reduce(np.add, [f.weighted_sum for f in folds]) / folded_rows
        else:
            vectors = np.stack([flatten(u.weights) for u in good])
            counts = np.array([u.rows for u in good], np.float64)
            batch_vec = aggregate(vectors, counts, self.cfg.stream.aggregation, self.cfg.stream.trim_fraction)
        if self.server is not None:
            assert start is not None
            batch_vec = self.server.step(start, batch_vec)
        return batch_vec

    def _fold_in(self, batch_vec: np.ndarray, rows: int, norms: Sequence[NormStats]) -> None:
        """The running average takes the batch with its row count as weight (module docstring)."""
        running, self.running_n = running_average(flatten(self.weights), self.running_n, batch_vec * rows, float(rows), self.decay)
        self.weights = unflatten(running, self.weights)
        self.next_weights = unflatten(batch_vec, self.weights) if self.decay > 0 else self.weights
        for norm in norms:
            self.norm = self.norm.merge(norm)

    def _save(self, batch_id: int, metrics: Mapping[str, Any] | None) -> None:
        meta = {
            "batch_id": batch_id,
            "rows_seen": self.rows_seen,
            "running_n": self.running_n,
            "rejected_updates": self.rejected_updates,
            "drift_left": self.drift_left,
            "source": "stream",
            "metrics": dict(metrics or {}),
        }
        self.last_meta = meta
        if self.store is not None:
            # The batch's aggregate is saved only where the next batch trains from it.
            nxt = None if self.next_weights is self.weights or self.cfg.trains_from_running() else self.next_weights
            extra = {
                **(self.server.to_arrays() if self.server is not None else {}),
                **(self.drift.to_arrays() if self.drift is not None else {}),
                **(self.gain.to_arrays() if self.gain is not None else {}),
            }
            self.store.save(
                self.version,
                self.cfg,
                self.weights,
                self.norm,
                meta,
                next_weights=nxt,
                keep=self.cfg.stream.keep_versions,
                extra=extra,
                rehearsal=self.rehearsal if len(self.rehearsal) else None,
            )


def batch_metrics(
    cfg: AppConfig, version: int, batch_id: int, counts: BatchCounts, results: list[PartitionResult], latency: float, epochs: int
) -> BatchMetrics:
    """The handler's step 5a: batch ``batch_id``'s figures as model ``version`` records them, checked:
    every valid row was trained exactly once."""
    rows_valid = counts.rows_valid
    rows_trained = sum(r.rows for r in results)
    if rows_trained != rows_valid:
        raise RuntimeError(f"batch {batch_id}: {rows_valid} valid rows but {rows_trained} trained; not committing")
    correct = sum(r.prequential.correct for r in results)
    loss_sum = sum(r.prequential.loss_sum for r in results)
    nan = float("nan")
    record: BatchMetrics = {
        "batch_id": batch_id,
        "version": version,
        "rows_in": rows_valid + counts.rows_dead + counts.headers_skipped,
        "rows_valid": rows_valid,
        "rows_dead": counts.rows_dead,
        "headers_skipped": counts.headers_skipped,
        "dead_reasons": counts.dead_by_reason,
        "partition_rows": sorted(r.rows for r in results),
        "local_epochs": epochs,
        "prequential_correct": correct,
        "prequential_accuracy": correct / rows_valid if rows_valid else nan,
        "prequential_loss": loss_sum / rows_valid if rows_valid else nan,
        "train_loss": sum(r.train_loss * r.rows for r in results) / rows_valid if rows_valid else nan,
        "task_seconds_max": max((r.seconds for r in results), default=0.0),
        "rows_per_s": rows_valid / latency if latency > 0 else 0.0,
        "latency_s": latency,
        "time": time.time(),
    }
    if cfg.data.mode == "events":  # rows are windows; what came in were events
        record["events_accepted"] = counts.events_accepted
        record["rows_in"] = counts.events_accepted + counts.rows_dead + counts.headers_skipped
    lstm = LSTMConfig.from_app(cfg)
    if lstm.forecast:
        sums = [sum(getattr(r.prequential, k) for r in results) for k in ("abs_sum", "sq_sum", "naive_sum")]
        record.update(forecast_fields(rows_valid * lstm.num_classes, *sums))  # type: ignore[typeddict-item]
        record["prequential_accuracy"] = nan  # no classes: the forecast figures above say how it does
    return record
