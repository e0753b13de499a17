"""Parsing and validating rows in Spark SQL (no per-row Python): rows.py's rules, executed by Spark.

:func:`parse` turns a DataFrame with a string column ``value`` into one with the numeric features
``f0 .. f{F-1}`` (double), the class id ``label`` (int), and ``reason``: NULL for a valid row, else
why it is rejected. Rejected rows go to the dead-letter sink with ``value`` and ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming_lstm.core.config import DataConfig, data_columns
from streaming_lstm.parse import rows
from streaming_lstm.parse.counts import with_counts

RAW_LIMIT = rows.RAW_LIMIT


def feature_names(data: DataConfig) -> list[str]:
    return data.feature_columns()


def trim_ws(c: Column) -> Column:
    # The white space of rows.WHITESPACE, from both ends (Spark's plain trim strips spaces only).
    return F.btrim(c, F.lit(rows.WHITESPACE))


def first_true(flags: Column) -> Column:
    """1-based position of the first true in a boolean array (0 if none)."""
    return F.array_position(flags, True).cast("int")


def named(template: str, position: Column, among: Column) -> Column:
    """A reason template with ``\\0`` (a NUL) where the name at ``position`` (1-based) of ``among`` goes."""
    before, after = template.split("\0")
    return F.concat(F.lit(before), F.element_at(among, position), F.lit(after))


def csv_fields(row: Column, n: int, *, one_short: bool = False) -> tuple[Column, Column, Column]:
    """A CSV line (a string column) read per RFC 4180 as rows.csv_fields reads it: the ``n`` fields
    trimmed (an array; NULL when the quoting is malformed or the count is not ``n``, or with
    ``one_short`` ``n - 1``: then the last element is NULL), the field count, and whether the
    quoting is malformed.

    A line without quotes is split at its commas. Only a well-quoted line with ``n`` fields reaches
    Spark's own CSV parser: univocity fails the whole task on a line of more than 20 480 fields
    (MALFORMED_CSV_RECORD, even when PERMISSIVE), and reads malformed quoting leniently (rows.py).
    Its struct becomes an array through JSON, so the expression stays the same size for 600 fields
    as for 5 (one field accessor per column would grow the generated code past 64 KB).
    """
    # Why the branches: most lines have no quote at all, and for them a split is the whole parse;
    # the quote count, the two regexes and univocity run only for lines with a quote
    # (``python -m bench parse``).
    plain = F.instr(row, '"') == 0
    split = F.split(row, ",", -1)
    quotes = F.length(row) - F.length(F.translate(row, '"', ""))
    # Each quoted section as one quote: the commas left are the separators (one regex per line).
    marked = F.regexp_replace(row, rows.QUOTED_SECTION, '"')
    malformed = F.when(plain, F.lit(False)).otherwise((quotes % 2 == 1) | marked.rlike(rows.SECTION_INSIDE_FIELD))
    count = F.when(plain, F.size(split)).otherwise(F.size(F.split(marked, ",", -1)))
    schema = ", ".join(f"`c{i}` STRING" for i in range(n))
    # charToEscapeQuoteEscaping: univocity's default (NUL) drops NUL characters inside quoted fields.
    struct = F.from_csv(row, schema, {"mode": "PERMISSIVE", "escape": '"', "quote": '"', "charToEscapeQuoteEscaping": '"'})
    quoted = F.map_values(F.from_json(F.to_json(struct, {"ignoreNullFields": "false"}), "map<string,string>"))
    fits = (count == n) | (count == n - 1) if one_short else count == n
    fields = F.when(plain, split).when(~malformed & fits, quoted)
    return F.transform(fields, trim_ws), count, malformed


def fields_of(row: Column, data: DataConfig, require_label: bool = True) -> tuple[Column, Column, Column]:
    """Every configured column's text (an array, in ``data_columns`` order; a scoring row without
    its label: in rows.scoring_columns order), the CSV field count and whether its quoting is
    malformed (:func:`csv_fields`); JSON: no count, never malformed."""
    columns = data_columns(data)
    if data.format == "csv":
        return csv_fields(row, len(columns), one_short=rows.scoring_columns(data, require_label) is not None)
    return F.array(*[trim_ws(F.get_json_object(row, f"$.{c}")) for c in columns]), F.lit(None), F.lit(False)


def field_stage(df: DataFrame, data: DataConfig, require_label: bool = True) -> DataFrame:
    """``value, _blank, _fields, _count, _malformed, _pos``: a line's fields (:func:`fields_of`) and
    whether it is blank, for both row mode (:func:`parse`) and event mode (events.parse_events)."""
    value = F.col("value")
    # The line without its BOM, as a column of its own: the CSV reader refers to it a dozen times,
    # and an expression is a tree, so each reference would copy it into the plan (planned anew every
    # micro-batch: a smaller plan is planned faster).
    unmarked = F.when(value.startswith(rows.BOM), F.substr(value, F.lit(2))).otherwise(value)  # no regex per row
    stage = df.select(value, unmarked.alias("_row"), source_position(df).alias(POSITION))
    row = F.col("_row")
    fields, count, malformed = fields_of(row, data, require_label)
    blank = value.isNull() | (trim_ws(row) == "")
    return stage.select(value, blank.alias("_blank"), fields.alias("_fields"), count.alias("_count"), malformed.alias("_malformed"), F.col(POSITION))


def field_count_reason(count: Column, n: int) -> Column:
    """rows.field_count_reason with the count from a column."""
    return count_reason(rows.field_count_reason(n, 0), count)


def count_reason(with_zero: str, count: Column) -> Column:
    """A reason whose text ends in the field count: ``with_zero`` is it for a count of 0."""
    return F.concat(F.lit(with_zero[:-1]), count.cast("string"))


def structure_reason(data: DataConfig, require_label: bool = True) -> Column:
    """The rules a line meets before its values are read (rows.local_row's first half), over
    :func:`field_stage`'s columns: not blank; CSV: well quoted, not the header, as many fields as
    columns (a row to score: or those without the label); JSON: every column present (a row to
    score: but the label)."""
    columns, short = data_columns(data), rows.scoring_columns(data, require_label)
    fields, all_columns = F.col("_fields"), F.array(*[F.lit(c) for c in columns])
    count = F.col("_count")
    reason = F.when(F.col("_blank"), F.lit(rows.EMPTY))
    if data.format == "csv":
        header = fields == all_columns
        if short is not None:
            header = header | ((count == len(short)) & (F.slice(fields, 1, len(short)) == F.array(*[F.lit(c) for c in short])))
        reason = reason.when(F.col("_malformed"), F.lit(rows.MALFORMED_QUOTING)).when(header, F.lit(rows.HEADER))
        if short is None:
            return reason.when(count != len(columns), field_count_reason(count, len(columns)))
        return reason.when((count != len(columns)) & (count != len(short)), count_reason(rows.scoring_count_reason(len(short), 0), count))
    needed = [i for i, c in enumerate(columns) if short is None or c in short]
    missing = first_true(F.transform(F.array(*[fields[i] for i in needed]), lambda x: x.isNull()))
    return reason.when(missing > 0, named(rows.missing_field_reason("\0"), missing, F.array(*[F.lit(columns[i]) for i in needed])))


def field_at(data: DataConfig, require_label: bool = True) -> Callable[[str], Column]:
    """The text of a named column in :func:`field_stage`'s ``_fields``: at its place among all
    columns, or in a CSV row to score that is one field short, among those without the label (whose
    own text is then NULL)."""
    columns, short = data_columns(data), rows.scoring_columns(data, require_label)
    fields = F.col("_fields")
    full = {c: i + 1 for i, c in enumerate(columns)}  # element_at is 1-based
    if short is None or data.format != "csv":
        return lambda name: F.try_element_at(fields, F.lit(full[name]))
    at = {c: i + 1 for i, c in enumerate(short)}
    is_short = F.col("_count") == len(short)

    def field(name: str) -> Column:
        if name not in at:
            return F.when(~is_short, F.try_element_at(fields, F.lit(full[name])))
        return F.try_element_at(fields, F.when(is_short, F.lit(at[name])).otherwise(F.lit(full[name])))

    return field


def number_rules(reason: Column, nums: Column, names: Column, limit: float) -> Column:
    """rows.py's number rules over an array of parsed doubles (NULL: did not parse), named by
    ``names``, appended to ``reason``: non-numeric, non-finite, out of range, in that order."""
    non_numeric = first_true(F.transform(nums, lambda x: x.isNull()))
    non_finite = first_true(F.transform(nums, lambda x: F.isnan(x) | (F.abs(x) == float("inf"))))
    out_of_range = first_true(F.transform(nums, lambda x: F.abs(x) > limit))
    return (
        reason.when(non_numeric > 0, named(rows.non_numeric_reason("\0"), non_numeric, names))
        .when(non_finite > 0, named(rows.non_finite_reason("\0"), non_finite, names))
        .when(out_of_range > 0, named(rows.out_of_range_reason("\0", limit), out_of_range, names))
    )


def parse(df: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """Add ``f*``, ``label`` and ``reason`` columns (rows.py's rules, in Spark SQL); keeps ``value``.

    With ``require_label=False`` (prediction) the label column may be empty, unknown, or left out
    (rows.scoring_columns). A header row
    gets the reason ``header row`` (callers skip and count it; it is not a dead letter). CSV per RFC 4180
    (:func:`csv_fields`). Four projections: the line without a BOM and its fields (:func:`field_stage`),
    the numbers, the reason.
    """
    stage = field_stage(df, data, require_label)
    field = field_at(data, require_label)
    raw = F.array(*[field(f) for f in data.features])
    class_map = F.create_map(*[x for i, c in enumerate(data.classes) for x in (F.lit(c), F.lit(i))])
    label = F.try_element_at(class_map, field(data.label))
    stage = stage.select("*", F.transform(raw, lambda x: x.try_cast("double")).alias("_nums"), label.cast("int").alias("label"))

    nums, names = F.col("_nums"), F.array(*[F.lit(n) for n in data.features])
    reason = number_rules(structure_reason(data, require_label), nums, names, data.max_abs_value)
    if require_label:
        reason = reason.when(F.col("label").isNull(), F.lit(rows.UNKNOWN_LABEL))
    return stage.select("value", *[nums[i].alias(n) for i, n in enumerate(feature_names(data))], "label", reason.alias("reason"), POSITION)


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
    """The rejected rows as dead-letter records: batch id, reason, raw value (truncated), its length.
    Header rows and event mode's tally rows are not dead letters (they are counted)."""
    return parsed.filter(F.col("reason").isNotNull() & ~F.col("reason").isin(rows.HEADER, rows.ACCEPTED)).select(
        F.lit(batch_id).alias("batch_id"),
        F.col("reason"),
        F.substring(F.col("value"), 1, RAW_LIMIT).alias("raw"),
        F.length(F.col("value")).alias("raw_length"),
    )


def observed(source: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """:func:`parse` inside the streaming plan, with the row counts as Spark observed metrics.

    Each micro-batch's ``StreamingQueryProgress.observedMetrics["streaming_lstm"]`` then holds
    ``rows_in``, ``rows_valid``, ``rows_dead`` (rejected by :func:`parse`) and ``headers_skipped``
    (``rows_in`` = the other three) for exactly the rows
    of that batch, visible in ``query.lastProgress``, the Spark UI's streaming tab and to any
    ``StreamingQueryListener``. Handlers that receive a frame with a ``reason`` column use it as
    parsed instead of parsing it again.
    """
    return with_counts(parse(source, data, require_label=require_label))


def parsed_batch(df: DataFrame, data: DataConfig, *, require_label: bool = True) -> DataFrame:
    """A micro-batch as :func:`parse` output, parsing it only if :func:`observed` has not."""
    return df if "reason" in df.columns else parse(df, data, require_label=require_label)
