"""rows.py's rules over a whole Arrow column of training rows, in a Python worker: the executor of
the training plan that is built once per query (trainer/planned.py), where the rows reach Python
for keying anyway and a Spark SQL parse would be planned again for every micro-batch.

Two paths, one verdict (``tests/test_rows.py`` runs the hostile corpus through this executor and
:func:`rows.local_row`):

* The common row, decided in Arrow's kernels: a CSV line without quotes or a byte-order mark whose
  field count is right, whose features all read as plain decimals (:data:`DECIMAL`, where Arrow's
  cast and Spark's ``try_cast`` agree), finite and within ``data.max_abs_value``, whose label is
  one of ``data.classes`` and which is not the header. Such a row is valid.
* Every other row (JSON rows too) goes through :func:`rows.local_row`, the rules' Python
  executor, one row at a time: only rows a fast path could not accept pay for it.

Training rows only (the label is required); prediction parses in Spark (spark_parse.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streaming_lstm.core.config import DataConfig, data_columns
from streaming_lstm.parse.rows import BOM, RAW_LIMIT, WHITESPACE, local_row

DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # what both casts read alike


@dataclass(frozen=True)
class Verdicts:
    """A column of rows' verdicts: ``reason`` (None = valid), the features ``x`` (N, F) and the
    class ids ``label`` (N,), both meaningful on valid rows only (NaN and -1 elsewhere)."""

    reason: list[str | None]
    x: np.ndarray  # (N, F) float64
    label: np.ndarray  # (N,) int32


def decode(values: pa.Array) -> pa.Array:
    """Binary rows as strings, bytes that are not UTF-8 replaced (as rows.read_lines does)."""
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return pa.array([None if v is None else v.decode("utf-8", errors="replace") for v in values.to_pylist()], pa.string())


def verdicts(values: pa.Array, data: DataConfig) -> Verdicts:
    """Each row's verdict under rows.py's training rules (module docstring); ``values`` are the
    rows as binary or string."""
    text = decode(values) if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type) else values
    n, f = len(text), len(data.features)
    x = np.full((n, f), np.nan)
    label = np.full(n, -1, np.int32)
    fast = _fast_rows(text, data, x, label) if data.format == "csv" and n else np.zeros(n, bool)
    reason: list[str | None] = [None] * n
    for i in np.flatnonzero(~fast):
        v = local_row(text[int(i)].as_py(), data)
        reason[i] = v.reason
        if v.reason is None:
            x[i] = v.features
            label[i] = -1 if v.label is None else v.label
    return Verdicts(reason, x, label)


def _fast_rows(text: pa.Array, data: DataConfig, x: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Decide the common rows in Arrow (module docstring), filling ``x`` and ``label`` for them;
    returns which rows were decided (all of them valid)."""
    columns = data_columns(data)
    plain = pc.and_(pc.invert(pc.match_substring(text, '"')), pc.invert(pc.starts_with(text, BOM)))
    fields = pc.split_pattern(text, ",")
    candidate = pc.and_(pc.fill_null(plain, False), pc.equal(pc.fill_null(pc.list_value_length(fields), 0), len(columns)))
    rows = np.flatnonzero(candidate.to_numpy(zero_copy_only=False))
    if not len(rows):
        return np.zeros(len(text), bool)
    flat = pc.utf8_trim(pc.list_flatten(fields.take(pa.array(rows))), WHITESPACE)
    every = np.arange(len(rows)) * len(columns)
    table = [flat.take(pa.array(every + i)) for i in range(len(columns))]  # each column's fields (rows,)
    feats = [table[columns.index(name)] for name in data.features]
    ok = np.ones(len(rows), bool)
    for col in feats:
        ok &= pc.fill_null(pc.match_substring_regex(col, DECIMAL), False).to_numpy(zero_copy_only=False)
    header = np.ones(len(rows), bool)
    for col, name in zip(table, columns, strict=True):
        header &= pc.equal(col, name).to_numpy(zero_copy_only=False)
    ids = pc.index_in(table[columns.index(data.label)], value_set=pa.array(list(data.classes), pa.string()))
    known = pc.is_valid(ids).to_numpy(zero_copy_only=False)
    numbers = np.column_stack([pc.cast(pc.if_else(pa.array(ok), col, "nan"), pa.float64()).to_numpy(zero_copy_only=False) for col in feats])
    within = np.all(np.isfinite(numbers) & (np.abs(numbers) <= data.max_abs_value), axis=1)
    accept = ok & ~header & known & within
    x[rows[accept]] = numbers[accept]
    label[rows[accept]] = pc.fill_null(ids, -1).to_numpy(zero_copy_only=False)[accept]
    decided = np.zeros(len(text), bool)
    decided[rows[accept]] = True
    return decided


# Bytes a UTF-8 character starts with -> its length as Spark's UTF8String counts characters (a
# byte that cannot start a character counts as one).
_FIRST_BYTE_WIDTH = np.array([1] * 0xC2 + [2] * (0xE0 - 0xC2) + [3] * 16 + [4] * 5 + [1] * 11, np.int64)


def spark_prefix(raw: bytes, length: int) -> bytes:
    """Spark's ``substring(value, 1, RAW_LIMIT)`` of a row of ``length`` characters (Spark's
    count), as bytes: the dead letter's ``raw`` however the row's bytes are encoded."""
    if length <= RAW_LIMIT:
        return raw
    end = 0
    for _ in range(RAW_LIMIT):
        end += int(_FIRST_BYTE_WIDTH[raw[end]])
    return raw[:end]
