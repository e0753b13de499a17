"""Parsing event rows in Spark SQL (event mode): one row is one event of one entity.

:func:`parse_events` turns the source's string column ``value`` into ``entity`` (string), ``t``
(event time, seconds since the epoch, double), the event's values ``v0 .. v{V-1}`` (double: the
features in order, then the forecast targets' columns, or for classification the class id), and
``reason``: NULL for a valid event, else why it is a dead letter (rows.py's wording, plus the
entity and time rules below). The window operator (window_state.py) reads this frame.

* **CSV is read per RFC 4180 by Spark's own CSV parser** (``from_csv``), as in row mode
  (spark_parse.csv_fields): fields may be quoted, a quoted field may hold commas and doubled quotes
  (``"Sand Point, AK"``), a quoted number is a number, malformed quoting is ``malformed quoting``.
  JSON is read as in row mode.
* **Time**: a number is seconds since the epoch; anything else is parsed by Spark as a timestamp
  (ISO-8601, with or without an offset; no offset means the session time zone). Neither:
  ``invalid time 'c'``. An empty entity: ``missing entity 'c'``.
* **No entity column** (``data.entity`` empty): the stream is one series, every event's entity is
  ``series`` (core.config.SINGLE_ENTITY), and its windows form in time order under one state key.
* Features and targets follow rows.py's rules (non-numeric, non-finite, out of range), named by
  their column. An unknown class label is ``unknown label``.
* **Forecast requests** (prediction of a model with ``data.known``): an event whose target fields
  are all empty is valid, its targets NaN (:func:`request_values`); the window operator answers it.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming_lstm.core.config import SINGLE_ENTITY, DataConfig
from streaming_lstm.parse import rows
from streaming_lstm.parse.counts import with_counts
from streaming_lstm.parse.spark_parse import POSITION, field_at, field_stage, number_rules, structure_reason

MAX_EPOCH_SECONDS = 1e11  # about the year 5138: larger numbers are not event times


def invalid_time_reason(name: str) -> str:
    return f"invalid time '{name}'"


def missing_entity_reason(name: str) -> str:
    return f"missing entity '{name}'"


def parse_events(df: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """``value, entity, t, v0.., reason, _pos`` (module docstring); header rows get ``header row``.
    With ``require_label=False`` (prediction) an unknown or absent class label is -1, not a reason."""
    stage = field_stage(df, data, require_label)
    field = field_at(data, require_label)

    numeric = [*data.features, *(data.targets if data.task == "forecast" else ())]
    names = F.array(*[F.lit(n) for n in numeric])
    nums = F.transform(F.array(*[field(n) for n in numeric]), lambda x: x.try_cast("double"))
    time_text = field(data.time)
    seconds = time_text.try_cast("double")
    when = F.when(seconds.isNotNull() & (F.abs(seconds) < MAX_EPOCH_SECONDS), seconds).otherwise(F.unix_micros(F.try_to_timestamp(time_text)) / 1e6)
    values = [nums[i] for i in range(len(numeric))]
    if not require_label and data.task == "forecast" and data.known:
        nums, values = request_values(data, field, numeric, nums, values)
    if data.task == "classify":
        class_map = F.create_map(*[x for i, c in enumerate(data.classes) for x in (F.lit(c), F.lit(i))])
        label = F.try_element_at(class_map, field(data.label))
        values.append(label.cast("double") if require_label else F.coalesce(label, F.lit(-1)).cast("double"))
    entity = field(data.entity) if data.entity else F.lit(SINGLE_ENTITY)
    stage = stage.select("*", nums.alias("_nums"), entity.alias("entity"), when.alias("t"), *[v.alias(f"v{i}") for i, v in enumerate(values)])

    nums = F.col("_nums")
    reason = structure_reason(data, require_label)
    if data.entity:
        reason = reason.when(F.col("entity").isNull() | (F.col("entity") == ""), F.lit(missing_entity_reason(data.entity)))
    reason = reason.when(F.col("t").isNull(), F.lit(invalid_time_reason(data.time)))
    reason = number_rules(reason, nums, names, data.max_abs_value)
    if data.task == "classify":
        reason = reason.when(F.col(f"v{len(numeric)}").isNull(), F.lit(rows.UNKNOWN_LABEL))
    width = len(values)
    return stage.select("value", "entity", "t", *[f"v{i}" for i in range(width)], reason.alias("reason"), POSITION)


def request_values(data: DataConfig, field: Callable[[str], Column], numeric: list[str], nums: Column, values: list[Column]) -> tuple[Column, list[Column]]:
    """Prediction with columns known ahead (``data.known``): an event whose target fields are all
    empty is a *forecast request* (window_state.py answers it). Its targets are NaN values, not a
    reason; the number rules check them as 0. Other events are read as they are."""
    request = F.lit(True)
    for name in data.targets:
        text = field(name)
        request = request & (text.isNull() | (F.trim(text) == ""))
    at = [i for i, name in enumerate(numeric) if name in data.targets]  # a target is a feature too with forecast_change
    checked = F.array(*[F.when(request, F.lit(0.0)).otherwise(nums[i]) if i in at else nums[i] for i in range(len(numeric))])
    return checked, [F.when(request, F.lit(float("nan"))).otherwise(v) if i in at else v for i, v in enumerate(values)]


def observed_events(source: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """:func:`parse_events` with the same observed metrics as row mode (spark_parse.observed):
    ``rows_in``, ``rows_valid``, ``rows_dead``, ``headers_skipped`` count *events* as parsed,
    before windows are formed (late events are counted later, by the trainer)."""
    return with_counts(parse_events(source, data, require_label=require_label))
