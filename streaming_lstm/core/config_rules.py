"""The rules a configuration must satisfy: :func:`validate` raises :class:`~streaming_lstm.core.config.ConfigError`
for the first impossible value, naming the key and the value (``model.hidden: sizes must be
positive, got [32, 0]``). config.py calls it after every load."""

from __future__ import annotations

import math
from typing import Any

from streaming_lstm.core.config import (
    AGGREGATIONS,
    FORMATS,
    KAFKA_READERS,
    MODES,
    OPTIMIZERS,
    PLANS,
    PREQUENTIAL,
    SERVER_OPTIMIZERS,
    TASKS,
    TRAIN_FROM,
    TRAIN_IN,
    AppConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    StreamConfig,
    TrainConfig,
    data_columns,
    parse_duration,
)


def validate(cfg: AppConfig) -> None:
    """Raise :class:`ConfigError` for the first impossible value, naming key and value."""
    data_rules(cfg.data)
    model_rules(cfg.data, cfg.model)
    train_rules(cfg.train)
    stream_rules(cfg.stream)
    step = cfg.train.prequential == "step"
    need(not (step and cfg.data.task == "forecast"), "train.prequential", cfg.train.prequential, 'scores classification only: a forecast needs "batch"')


def need(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}, got {value!r}")


def data_rules(d: DataConfig) -> None:
    need(bool(d.features), "data.features", list(d.features), "at least one feature column is required")
    need(d.mode in MODES, "data.mode", d.mode, f"must be one of {', '.join(MODES)}")
    need(d.task in TASKS, "data.task", d.task, f"must be one of {', '.join(TASKS)}")
    need(d.task == "classify" or d.mode == "events", "data.task", d.task, 'forecasting needs data.mode = "events" (windows of an entity\'s events)')
    classify = d.task == "classify"
    need(not (classify and d.forecast_change), "data.forecast_change", d.forecast_change, 'is for data.task = "forecast"')
    if classify:
        need(bool(d.label), "data.label", d.label, "a label column is required")
        need(len(d.classes) >= 2, "data.classes", list(d.classes), "at least two classes are required")
        need(len(set(d.classes)) == len(d.classes), "data.classes", list(d.classes), "class values must be unique")
        need(not d.class_names or len(d.class_names) == len(d.classes), "data.class_names", list(d.class_names), f"must name all {len(d.classes)} classes")
        need(d.label not in d.features, "data.label", d.label, "the label cannot also be a feature")
    else:
        need(bool(d.targets), "data.targets", list(d.targets), "forecasting needs at least one target column")
        need(d.horizon >= 1, "data.horizon", d.horizon, "must be >= 1")
        missing = [t for t in d.targets if t not in d.features]
        why = f"needs every target among data.features (not: {', '.join(missing)})"
        need(not d.forecast_change or not missing, "data.forecast_change", d.forecast_change, why)
    known_rules(d)
    need(d.forecast_gain_windows >= 0, "data.forecast_gain_windows", d.forecast_gain_windows, "must be >= 0 (0 = no gain)")
    need(d.format in FORMATS, "data.format", d.format, f"must be one of {', '.join(FORMATS)}")
    need(d.max_abs_value > 0, "data.max_abs_value", d.max_abs_value, "must be positive")
    columns = data_columns(d)
    need(len(set(columns)) == len(columns), "data.columns", list(columns), "column names must be unique")
    events = d.mode == "events"
    if events:
        # No entity column: the whole stream is one series.
        need(bool(d.time), "data.time", d.time, "event mode needs the event-time column")
        need(d.stride >= 1, "data.stride", d.stride, "must be >= 1")
        parse_duration(d.allowed_lateness, "data.allowed_lateness")
        parse_duration(d.entity_ttl, "data.entity_ttl")
    keys = ((d.entity, d.time) if d.entity else (d.time,)) if events else ()
    for name in (*d.features, *([d.label] if classify else d.targets), *keys):
        need(name in columns, "data.columns", list(columns), f"must contain '{name}'")


def known_rules(d: DataConfig) -> None:
    """``data.known``: forecast features, distinct, none of them a target (a target is what is not known ahead)."""
    if not d.known:
        return
    need(d.task == "forecast", "data.known", list(d.known), 'is for data.task = "forecast" (covariates known at the forecast steps)')
    need(len(set(d.known)) == len(d.known), "data.known", list(d.known), "names must be unique")
    absent = [k for k in d.known if k not in d.features]
    need(not absent, "data.known", list(d.known), f"each must be one of data.features (not: {', '.join(absent)})")
    ahead = [k for k in d.known if k in d.targets]
    need(not ahead, "data.known", list(d.known), f"a target cannot be known ahead (remove: {', '.join(ahead)})")


def model_rules(d: DataConfig, m: ModelConfig) -> None:
    for key in ("timesteps", "features_per_step"):
        need(getattr(m, key) > 0, f"model.{key}", getattr(m, key), "must be positive")
    if d.mode == "events":
        need(
            m.features_per_step == len(d.features),
            "model.features_per_step",
            m.features_per_step,
            f"in event mode each timestep is one event: must equal the {len(d.features)} feature columns",
        )
    else:
        need(
            m.timesteps * m.features_per_step == len(d.features),
            "model.timesteps",
            m.timesteps,
            f"timesteps x features_per_step ({m.timesteps} x {m.features_per_step}) must equal the {len(d.features)} feature columns",
        )
    need(bool(m.hidden) and all(h > 0 for h in m.hidden), "model.hidden", list(m.hidden), "sizes must be positive")


def train_rules(t: TrainConfig) -> None:
    need(t.optimizer in OPTIMIZERS, "train.optimizer", t.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
    need(t.learning_rate > 0 and math.isfinite(t.learning_rate), "train.learning_rate", t.learning_rate, "must be positive")
    need(
        t.local_learning_rate >= 0 and math.isfinite(t.local_learning_rate),
        "train.local_learning_rate",
        t.local_learning_rate,
        "must be >= 0 (0 = learning_rate)",
    )
    need(t.clip_norm >= 0, "train.clip_norm", t.clip_norm, "must be >= 0 (0 turns clipping off)")
    need(t.l2 >= 0, "train.l2", t.l2, "must be >= 0")
    for key in ("batch_size", "epochs", "local_epochs"):
        need(getattr(t, key) > 0, f"train.{key}", getattr(t, key), "must be positive")
    need(t.tf_threads >= 0, "train.tf_threads", t.tf_threads, "must be >= 0")
    for key in ("warmup_epochs", "warmup_rows", "warmup_batch_size"):
        need(getattr(t, key) >= 0, f"train.{key}", getattr(t, key), "must be >= 0 (0 = no warm-up)")
    need(t.warmup_batch_size <= t.batch_size, "train.warmup_batch_size", t.warmup_batch_size, f"must be <= train.batch_size ({t.batch_size})")
    need(t.rehearsal_rows >= 0, "train.rehearsal_rows", t.rehearsal_rows, "must be >= 0 (0 = no rehearsal)")
    need(t.prequential in PREQUENTIAL, "train.prequential", t.prequential, f"must be one of {', '.join(PREQUENTIAL)}")


def stream_rules(s: StreamConfig) -> None:
    need(s.partitions > 0, "stream.partitions", s.partitions, "must be positive")
    need(s.tasks >= 0, "stream.tasks", s.tasks, "must be >= 0 (0 = one per core)")
    parse_duration(s.trigger, "stream.trigger")
    parse_duration(s.keep_workers, "stream.keep_workers")
    need(0.0 <= s.decay <= 1.0, "stream.decay", s.decay, "must be in [0, 1]")
    need(s.half_life_batches >= 0, "stream.half_life_batches", s.half_life_batches, "must be >= 0")
    need(s.train_from in TRAIN_FROM, "stream.train_from", s.train_from, f"must be one of {', '.join(TRAIN_FROM)}")
    need(s.aggregation in AGGREGATIONS, "stream.aggregation", s.aggregation, f"must be one of {', '.join(AGGREGATIONS)}")
    need(0.0 <= s.trim_fraction < 0.5, "stream.trim_fraction", s.trim_fraction, "must be in [0, 0.5)")
    need(s.server_optimizer in SERVER_OPTIMIZERS, "stream.server_optimizer", s.server_optimizer, f"must be one of {', '.join(SERVER_OPTIMIZERS)}")
    need(s.server_learning_rate > 0, "stream.server_learning_rate", s.server_learning_rate, "must be positive")
    need(0.0 <= s.server_beta1 < 1.0, "stream.server_beta1", s.server_beta1, "must be in [0, 1)")
    need(0.0 <= s.server_beta2 < 1.0, "stream.server_beta2", s.server_beta2, "must be in [0, 1)")
    need(s.server_tau > 0, "stream.server_tau", s.server_tau, "must be positive")
    need(s.max_update_norm >= 0, "stream.max_update_norm", s.max_update_norm, "must be >= 0 (0 turns it off)")
    need(0.0 <= s.drift_delta < 1.0, "stream.drift_delta", s.drift_delta, "must be in [0, 1) (0 turns drift detection off)")
    need(s.drift_half_life_batches >= 0, "stream.drift_half_life_batches", s.drift_half_life_batches, "must be >= 0")
    need(s.drift_batches >= 1, "stream.drift_batches", s.drift_batches, "must be at least 1")
    need(s.keep_versions >= 1, "stream.keep_versions", s.keep_versions, "must be at least 1")
    need(s.log_roll_mb >= 0, "stream.log_roll_mb", s.log_roll_mb, "must be >= 0 (0: never roll)")
    need(s.log_files_kept >= 0, "stream.log_files_kept", s.log_files_kept, "must be >= 0")
    need(s.deadletter_max_mb >= 0, "stream.deadletter_max_mb", s.deadletter_max_mb, "must be >= 0 (0: unbounded)")
    need(s.max_files_per_trigger > 0, "stream.max_files_per_trigger", s.max_files_per_trigger, "must be positive")
    need(s.plan in PLANS, "stream.plan", s.plan, f"must be one of {', '.join(PLANS)}")
    need(s.train_in in TRAIN_IN, "stream.train_in", s.train_in, f"must be one of {', '.join(TRAIN_IN)}")
    need(s.driver_rows >= 0, "stream.driver_rows", s.driver_rows, "must be >= 0")
    need(s.kafka_reader in KAFKA_READERS, "stream.kafka_reader", s.kafka_reader, f"must be one of {', '.join(KAFKA_READERS)}")
    need(s.max_offsets_per_trigger >= 0, "stream.max_offsets_per_trigger", s.max_offsets_per_trigger, "must be >= 0 (0 = no cap)")
