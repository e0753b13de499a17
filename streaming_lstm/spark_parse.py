"""Parsing and validating rows in Spark SQL (no per-row Python).

:func:`parse` turns a DataFrame with a string column ``value`` into one with the numeric features
``f0 .. f{F-1}`` (double), the class id ``label`` (int), and ``reason``: NULL for a valid row, else
why it is rejected. Rejected rows go to the dead-letter sink with ``value`` and ``reason``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming_lstm.config import DataConfig, data_columns

RAW_LIMIT = 65536  # characters of a rejected row kept in the dead-letter record
OBSERVATION = "streaming_lstm"  # the name of the query's observed metrics


def feature_names(data: DataConfig) -> list[str]:
    return data.feature_columns()


def _fields(data: DataConfig, value: Column) -> tuple[dict[str, Column], Column | None]:
    """Each configured column as a trimmed string, and the field count (CSV only)."""
    columns = data_columns(data)
    if data.format == "json":
        return {name: F.trim(F.get_json_object(value, f"$.{name}")) for name in columns}, None
    parts = F.split(value, ",", -1)
    # F.get returns NULL past the end (no ANSI-mode error for a short row).
    return {name: F.trim(F.get(parts, i)) for i, name in enumerate(columns)}, F.size(parts)


def parse(df: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """Add ``f*``, ``label`` and ``reason`` columns; keeps ``value``.

    With ``require_label=False`` (prediction) the label column may be empty or unknown.
    """
    value = F.col("value")
    fields, count = _fields(data, value)
    columns = data_columns(data)
    feats = [fields[name].try_cast("double") for name in data.features]
    class_map = F.create_map(*[x for i, c in enumerate(data.classes) for x in (F.lit(c), F.lit(i))])
    label = F.try_element_at(class_map, fields[data.label])

    # rlike, not trim: Spark's trim strips spaces only, and a tab-only line is empty too.
    reason = F.when(value.isNull() | value.rlike(r"^\s*$"), F.lit("empty row"))
    if data.format == "csv":
        assert count is not None
        reason = reason.when(F.trim(value) == ",".join(columns), F.lit("header row"))
        reason = reason.when(count != len(columns), F.concat(F.lit(f"expected {len(columns)} fields, got "), count.cast("string")))
    else:
        for name in columns:
            reason = reason.when(fields[name].isNull(), F.lit(f"missing field '{name}'"))
    for name, col in zip(data.features, feats, strict=True):
        reason = reason.when(col.isNull(), F.lit(f"non-numeric feature '{name}'"))
    for name, col in zip(data.features, feats, strict=True):
        reason = reason.when(F.isnan(col) | (F.abs(col) == float("inf")), F.lit(f"non-finite feature '{name}'"))
    for name, col in zip(data.features, feats, strict=True):
        reason = reason.when(F.abs(col) > data.max_abs_value, F.lit(f"feature '{name}' out of range (|x| > {data.max_abs_value:g})"))
    if require_label:
        reason = reason.when(label.isNull(), F.lit("unknown label"))

    return df.select(
        value.alias("value"),
        *[c.alias(n) for c, n in zip(feats, feature_names(data), strict=True)],
        label.cast("int").alias("label"),
        reason.alias("reason"),
        source_position(df).alias(POSITION),
    )


POSITION = "_pos"


def source_position(df: DataFrame) -> Column:
    """Where a row sits in its source, independent of how Spark split the batch into partitions:
    ``(partition, offset)`` for Kafka, NULL for sources without one (their Spark partitions are
    already in a fixed order). The trainer orders a batch's Spark partitions by it, so that the
    connector's input partitions, whose order follows a map's iteration order and differs between a
    first run and a replay from the offset log, key the same rows the same way."""
    if "partition" in df.columns and "offset" in df.columns:
        return F.struct(F.col("partition").cast("long").alias("p"), F.col("offset").cast("long").alias("o"))
    return F.lit(None).cast("struct<p:bigint,o:bigint>")


def dead_letters(parsed: DataFrame, batch_id: int) -> DataFrame:
    """The rejected rows as dead-letter records: batch id, reason, raw value (truncated), its length."""
    return parsed.filter(F.col("reason").isNotNull()).select(
        F.lit(batch_id).alias("batch_id"),
        F.col("reason"),
        F.substring(F.col("value"), 1, RAW_LIMIT).alias("raw"),
        F.length(F.col("value")).alias("raw_length"),
    )


def observed(source: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """:func:`parse` inside the streaming plan, with the row counts as Spark observed metrics.

    Each micro-batch's ``StreamingQueryProgress.observedMetrics["streaming_lstm"]`` then holds
    ``rows_in``, ``rows_valid`` and ``rows_dead`` (rejected by :func:`parse`) for exactly the rows
    of that batch, visible in ``query.lastProgress``, the Spark UI's streaming tab and to any
    ``StreamingQueryListener``. Handlers that receive a frame with a ``reason`` column use it as
    parsed instead of parsing it again.
    """
    reason = F.col("reason")
    return parse(source, data, require_label=require_label).observe(
        OBSERVATION,
        F.count(F.lit(1)).alias("rows_in"),
        F.count_if(reason.isNull()).alias("rows_valid"),
        F.count_if(reason.isNotNull()).alias("rows_dead"),
    )


def parsed_batch(df: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """A micro-batch as :func:`parse` output, parsing it only if :func:`observed` has not."""
    return df if "reason" in df.columns else parse(df, data, require_label=require_label)
