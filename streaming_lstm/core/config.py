"""Typed configuration: defaults in code, ``conf/*.toml`` overrides them, command-line flags last.

Every section is a frozen dataclass. ``config_load.load_config`` merges a TOML file and a dict of
overrides (``{"stream.partitions": 4}``) over the defaults and validates the result. An unknown
key, a wrong type or an impossible value is a :class:`ConfigError` whose message names the key
and the value, e.g. ``model.hidden: sizes must be positive, got [32, 0]`` (the rules: config_rules.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "sgd", "rmsprop")
TRAIN_FROM = ("auto", "batch", "running")  # StreamConfig.train_from
PREQUENTIAL = ("auto", "batch", "step")  # TrainConfig.prequential
AGGREGATIONS = ("mean", "trimmed_mean", "median")
SERVER_OPTIMIZERS = ("none", "momentum", "adam", "yogi")  # server_opt.py
FORMATS = ("csv", "json")
MODES = ("rows", "events")
TASKS = ("classify", "forecast")
KAFKA_READERS = ("auto", "spark", "python")
PLANS = ("auto", "once", "batch")
TRAIN_IN = ("auto", "driver", "workers")


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or impossible. The message names the key."""


@dataclass(frozen=True)
class DataConfig:
    """What a row looks like. Nothing dataset-specific lives in code; it all comes from here.

    ``columns`` are the fields of one CSV line in order (or the keys of one JSON object);
    ``features`` the numeric inputs, in the order the model reads them; ``label`` the class column;
    ``classes`` the label values as they appear in the data, their position being the class id.

    ``mode = "events"`` (events.py, window_state.py): each row is one event of one ``entity`` at
    event ``time`` (seconds as a number, or an ISO-8601 timestamp); the model reads windows of
    ``model.timesteps`` consecutive events of an entity, every ``stride`` events. ``task`` is
    ``"classify"`` (the window's label is its last event's) or ``"forecast"``: the next ``horizon``
    values of the ``targets`` columns. ``allowed_lateness`` is the watermark delay (later events
    are dead letters, ``late event``); ``entity_ttl`` the event time after which an entity's state
    is dropped when no event came (``"0s"``: never).
    """

    columns: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    label: str = ""
    classes: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    format: str = "csv"
    # Features whose absolute value is larger than this are rejected as out of range: a 1e308
    # would overflow the normaliser's sum of squares and poison every later batch.
    max_abs_value: float = 1e9
    mode: str = "rows"
    task: str = "classify"
    entity: str = ""
    time: str = ""
    targets: tuple[str, ...] = ()
    horizon: int = 1
    stride: int = 1
    allowed_lateness: str = "1h"
    entity_ttl: str = "1d"
    # Forecasts: the network learns each target's change from its last value in the window, and a
    # forecast is that last value plus the network's output (the naive forecast plus a learned
    # correction). Needs every target among the features.
    forecast_change: bool = False
    # With forecast_change: the memory, in windows, of the forecast gain (gain.py), which shrinks
    # the network's change towards 0 (the last value) as far as the scored windows say it does not
    # help; 0: no gain, the network's change as it is.
    forecast_gain_windows: int = 1000
    # Forecasts: feature columns known ahead (covariates of the forecast steps known when
    # forecasting: a calendar, a planned price, the day's polls). A window's step s reads them at
    # event s + horizon, so the forecast steps' values are among the inputs; see windows.py.
    known: tuple[str, ...] = ()

    def feature_columns(self) -> list[str]:
        """The parsed feature columns ``f0, f1, ...`` (positional: data column names may be anything)."""
        return [f"f{i}" for i in range(len(self.features))]

    def target_columns(self) -> list[str]:
        """The window's forecast targets ``y0 ..`` (horizon-major: step 1's targets, then step 2's)."""
        return [f"y{i}" for i in range(len(self.targets) * self.horizon)] if self.task == "forecast" else []

    def naive_columns(self) -> list[str]:
        """The naive last-value forecast of each target column (``n0 ..``, like :meth:`target_columns`)."""
        return [f"n{i}" for i in range(len(self.targets) * self.horizon)] if self.task == "forecast" else []

    def event_values(self) -> list[str]:
        """Event mode: the data columns an event carries into its window, in order: the features,
        then the forecast targets or (classification) the label, as its class id."""
        return [*self.features, *(self.targets if self.task == "forecast" else (self.label,))]

    def known_positions(self) -> list[int]:
        """The positions among ``features`` of the ``known`` columns (read ``horizon`` events ahead)."""
        return [self.features.index(name) for name in self.known]

    def outputs(self) -> int:
        """The network's outputs: one per class, or one per forecast value."""
        return len(self.targets) * self.horizon if self.task == "forecast" else len(self.classes)

    def class_labels(self) -> list[str]:
        """How classes are shown: ``class_names`` if given, else the label values."""
        return list(self.class_names or self.classes)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network: ``timesteps x features_per_step`` inputs, stacked LSTM, softmax head."""

    timesteps: int = 4
    features_per_step: int = 1
    hidden: tuple[int, ...] = (32, 32)
    seed: int = 42


@dataclass(frozen=True)
class TrainConfig:
    """How one training call runs: the standalone ``fit`` and every streaming partition task."""

    optimizer: str = "adam"
    learning_rate: float = 0.01
    clip_norm: float = 5.0  # global-norm gradient clipping; 0 turns it off
    l2: float = 0.0
    batch_size: int = 10
    epochs: int = 150  # standalone ``fit``
    local_epochs: int = 5  # each streaming partition task, per micro-batch
    local_learning_rate: float = 0.0  # streaming partition tasks; 0 = use learning_rate
    warmup_epochs: int = 10  # extra local epochs at the first row, decaying to 0 (schedule.py)
    warmup_rows: int = 1000  # rows trained over which the extra epochs decay; 0 = no warm-up
    # A classifier's mini-batch at the first row, growing to batch_size at warmup_rows
    # (schedule.mini_batch): a model that has seen nothing learns within its first batch; 0 =
    # batch_size throughout. Forecasts always train in batch_size.
    warmup_batch_size: int = 2
    rehearsal_rows: int = 500  # newest trained rows each batch replays with its own (rehearsal.py); 0 = off
    # Which model scores a streaming row before training on it: "batch" = the version before the
    # micro-batch (the served model's figure); "step" (classification) = the weights of the local
    # step that learns the row, before that step: River's row-by-row protocol a mini-batch at a
    # time, scored inside the training pass at no cost of its own; "auto" = "step" for a
    # classifier, "batch" for a forecast (AppConfig.scores_in_steps).
    prequential: str = "auto"
    tf_threads: int = 0  # TF intra-op threads per process; 0 = per model and mini-batch (core/threads.py)
    # Each optimiser step compiled by XLA into fused kernels (compiled.py): faster large
    # mini-batches, slower small ones, for a compile of seconds per mini-batch size in every worker.
    xla: bool = False


@dataclass(frozen=True)
class StreamConfig:
    """The streaming trainer: partitions, trigger, and the driver-side averaging rule."""

    partitions: int = 2
    tasks: int = 0  # Spark tasks that train the P partitions (several keys per task); 0 = one per core
    trigger: str = "2s"
    # While the query is idle, a one-row Python task this often keeps Spark from stopping the
    # Python workers (idle a minute) and their compiled models (trainer/keepwarm.py); "0s" = off.
    keep_workers: str = "45s"
    # Running-average forgetting factor a in [0, 1] (see state.py). The default, 0.5 ** 0.5, is a
    # half-life of 2 batches: measured best by ``python -m bench averaging``. ``half_life_batches``
    # > 0 replaces it with a = exp(ln 0.5 / h).
    decay: float = 0.5**0.5
    half_life_batches: float = 0.0
    # Which weights the next batch's partitions start from: "running" = the running average (an
    # average of the batch models over the last few batches, which smooths the noise of small
    # batches' local training); "batch" = this batch's aggregate alone (FedAvg's rule); "auto" =
    # "running" for a classifier without a server optimiser, else "batch": a server optimiser's
    # model is what its next round trains from, and forecasts measured better from the batch's
    # aggregate (AppConfig.trains_from_running).
    train_from: str = "auto"
    aggregation: str = "mean"
    trim_fraction: float = 0.1
    # A server-side optimiser over each batch's aggregate (server_opt.py: FedAvgM, FedAdam, FedYogi);
    # "none" is plain averaging. beta1 is the momentum; beta2 and tau are Adam's and Yogi's.
    server_optimizer: str = "none"
    server_learning_rate: float = 1.0
    server_beta1: float = 0.9
    server_beta2: float = 0.99
    server_tau: float = 1e-3
    max_update_norm: float = 0.0  # reject a partition whose weight change is larger; 0 = off
    keep_versions: int = 5
    # What a long run keeps on disk besides the model: metrics.jsonl and the TensorBoard event files
    # each roll to a new file at ``log_roll_mb`` and keep the newest ``log_files_kept`` rolled files
    # (at most log_roll_mb x (log_files_kept + 1) each); dead letters keep the newest batches within
    # ``deadletter_max_mb``, counting what they drop (deadletter/_dropped.json). 0 = unbounded.
    log_roll_mb: float = 64.0
    log_files_kept: int = 4
    deadletter_max_mb: float = 1024.0
    max_files_per_trigger: int = 1
    max_offsets_per_trigger: int = 0
    starting_offsets: str = "earliest"
    # Drift: ADWIN over the prequential error (0 turns it off); while an alarm is raised (the next
    # ``drift_batches`` batches) the averaging half-life is ``drift_half_life_batches`` (0 = unchanged;
    # half a batch lets the new concept's weights through within a batch or two, docs/learning.md).
    drift_delta: float = 0.002
    drift_half_life_batches: float = 0.5
    drift_batches: int = 3
    drift_forget_rehearsal: bool = True  # an alarm empties the rehearsal buffer (it holds the old concept)
    tensorboard: bool = True  # event files under CHECKPOINT/tensorboard
    fail_on_data_loss: bool = True
    # Kafka: "auto" = Spark's connector when its jar is on the classpath, else the Python data
    # source; "spark" or "python" force one (kafka/reader.py).
    kafka_reader: str = "auto"
    # Where a micro-batch's training is planned (trainer/planned.py): "auto" = once, in the query's
    # own plan, where the Python workers can read the checkpoint (a local master and checkpoint,
    # row mode, not Spark Connect), else per batch; "once" also on other masters (the checkpoint
    # must be at the same path on every executor); "batch" always per batch.
    plan: str = "auto"
    # Where a batch planned once trains (trainer/planned.py): "workers" = Spark's Python workers,
    # one task per core; "driver" = this process, from the rows the query's plan parsed and keyed
    # (no second stage, no shuffle, no model read by the tasks); "auto" = the driver on a local
    # master while the batch before had at most ``driver_rows`` valid rows, else the workers.
    # driver_rows 0: as many as a quarter of spark.driver.maxResultSize holds at the data's width
    # (planned.driver_row_limit; ~3.3 million Iris rows at Spark's default 1g): the driver, whose
    # task groups share its cores in one process, trained every batch size measured faster.
    train_in: str = "auto"
    driver_rows: int = 0


@dataclass(frozen=True)
class SparkConfig:
    """Where Spark runs. ``conf`` is passed to the session builder as is."""

    master: str = "local[2]"
    app_name: str = "streaming-lstm"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MlflowConfig:
    """MLflow tracking of a training run (storage/tracking.py). ``tracking_uri`` "" = off; "local" =
    a SQLite store under the checkpoint (``CHECKPOINT/mlflow/``); else any MLflow tracking URI."""

    tracking_uri: str = ""
    experiment: str = "streaming-lstm"


@dataclass(frozen=True)
class AppConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def input_columns(self) -> list[str]:
        """The model's input columns ``f0 .. f{T*F-1}``: a row's features, or an event window
        flattened time-major (event mode: ``timesteps`` events x the feature columns)."""
        return [f"f{i}" for i in range(self.model.timesteps * self.model.features_per_step)]

    def change_columns(self) -> tuple[int, ...]:
        """``data.forecast_change``: for each forecast value (in the order of ``target_columns``),
        the input column holding its target's last value in the window. Inputs are time-major, so
        that is (T - 1) F + the target's position among the features. Empty otherwise."""
        d, t = self.data, self.model.timesteps
        if d.task != "forecast" or not d.forecast_change:
            return ()
        F = len(d.features)
        return tuple((t - 1) * F + d.features.index(name) for name in d.targets) * d.horizon

    def trains_from_running(self) -> bool:
        """Whether each batch's partitions start from the running average (``stream.train_from``
        "running", or "auto" for a classifier without a server optimiser) rather than the last
        batch's aggregate."""
        s = self.stream
        return s.train_from == "running" or (s.train_from == "auto" and s.server_optimizer == "none" and self.data.task != "forecast")

    def scores_in_steps(self) -> bool:
        """Whether streaming tasks score rows inside the training pass (``train.prequential``
        "step", or "auto" for a classifier) rather than with the batch's model first."""
        return self.train.prequential == "step" or (self.train.prequential == "auto" and self.data.task != "forecast")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); :func:`from_dict` reads it back."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def parse_duration(text: str, key: str = "duration") -> float:
    """``"2s"``, ``"500ms"``, ``"1m"``, Spark's ``"1 second"`` / ``"500 milliseconds"``, or a bare
    number of seconds -> seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "sec": 1.0, "d": 86400.0}
    for name, factor in (("millisecond", 0.001), ("second", 1.0), ("minute", 60.0), ("hour", 3600.0), ("day", 86400.0)):
        units[name] = units[name + "s"] = factor
    t = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            number = t[: -len(unit)].strip()
            break
    else:
        unit, number = "s", t
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ConfigError(f"{key}: expected a duration like '2s' or '500ms', got {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{key}: must be a non-negative duration, got {text!r}")
    return seconds


def decay_for_half_life(batches: float) -> float:
    """The forgetting factor a under which a batch's weight halves every ``batches`` batches."""
    return math.exp(math.log(0.5) / batches)


def effective_decay(stream: StreamConfig) -> float:
    """The forgetting factor a: from ``half_life_batches`` when set, else ``decay``."""
    if stream.half_life_batches > 0:
        return decay_for_half_life(stream.half_life_batches)
    return stream.decay


SINGLE_ENTITY = "series"  # the entity of every event when data.entity is empty: one series


def data_columns(d: DataConfig) -> tuple[str, ...]:
    """The fields of one row in order; defaults to (entity, time,) features, then label or targets."""
    if d.columns:
        return d.columns
    head = ((d.entity,) if d.entity else ()) + (d.time,) if d.mode == "events" else ()
    tail = (d.label,) if d.task == "classify" else tuple(t for t in d.targets if t not in d.features)
    return (*head, *d.features, *tail)


__all__ = [
    "AppConfig",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "SparkConfig",
    "StreamConfig",
    "TrainConfig",
    "data_columns",
    "effective_decay",
    "parse_duration",
]
