"""One definition of a valid row, with the executors that apply it: Spark SQL in a stream's plan
(spark_parse.py), Arrow's kernels for training rows in the plan built once (arrow_parse.py, which
hands every row they cannot decide to :func:`local_row`) and plain Python for the one-process
commands (:func:`local_row`).

The rules, checked in this order; the first that fails is the row's reason (wording fixed here):

====================  ==========================================================================
``empty row``         nothing but white space (``[ \\t\\n\\x0b\\f\\r]``)
``header row``        the fields are exactly the configured column names: skipped and counted as
                      ``headers_skipped``, never a dead letter
``malformed quoting``  CSV: a quote that RFC 4180 does not allow: an odd number of quotes, or a
                      quoted section that is not a whole field (``"a"b``, `` "a"``, ``a"b"``)
``expected C fields,  CSV: the line has another number of fields (RFC 4180: a quoted field may
got N``               hold commas and doubled quotes, ``"Sand Point, AK"``; a quoted number is a
                      number)
``missing field 'c'`` JSON: a configured key is absent
``non-numeric         the first feature that does not parse as a double (Spark's ``try_cast``:
feature 'f'``         Java's number syntax, plus ``inf``/``infinity``/``nan`` in any case)
``non-finite          the first feature that is NaN or infinite (``1e400`` is infinite)
feature 'f'``
``feature 'f' out of  the first feature with ``|x| > data.max_abs_value``
range (|x| > M)``
``unknown label``     the label field is not one of ``data.classes`` (training and evaluation)
====================  ==========================================================================

CSV fields are read per RFC 4180: by Spark's own CSV parser (``from_csv``) in the Spark executor,
by :func:`csv_fields` in the local one; a line without quotes is split at its commas by both.
Quoting must be strict (``malformed quoting`` above) because lenient parsers disagree on the rest:
univocity keeps ``"a"b`` as written and silently drops a field of ``a, "b,c", d``, Python's reader
gives ``ab`` and four fields.

Before the rules: a UTF-8 byte-order mark at the start of a row is dropped, and every field is
trimmed of the white space above. Bytes that are not UTF-8 were replaced (U+FFFD) when the line was
read, by Spark's text reader and :func:`read_lines` alike. Lines end at ``\\n``, ``\\r\\n`` or ``\\r``.

The Spark executor stays the same size however many features a row has: the per-feature checks
are higher-order functions over one array, not one expression per feature (one expression per
feature would blow Spark's 64 KB generated-method limit at a few hundred features). ``tests/test_rows.py`` runs a hostile corpus through
both executors and asserts the same verdict and reason for every line.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from streaming_lstm.core.config import DataConfig, data_columns
from streaming_lstm.storage.fs import filesystem

EMPTY, HEADER, UNKNOWN_LABEL = "empty row", "header row", "unknown label"
MALFORMED_QUOTING = "malformed quoting"
# Event mode's tally rows (window_state.py): how many events an entity accepted in a batch; like
# header rows, counted and never a dead letter.
ACCEPTED = "events accepted"
WHITESPACE = " \t\n\x0b\x0c\r"  # Java's \s: what both executors trim
BOM = "\ufeff"
RAW_LIMIT = 65536  # characters of a rejected row kept in a dead-letter record or an error line


def field_count_reason(expected: int, got: int) -> str:
    return f"expected {expected} fields, got {got}"


def scoring_count_reason(without_label: int, got: int) -> str:
    """A row to score has the columns without the label, or all of them."""
    return f"expected {without_label} fields (or {without_label + 1} with the label), got {got}"


def scoring_columns(data: DataConfig, require_label: bool) -> tuple[str, ...] | None:
    """The columns of a row to score that carries no label (the label's column left out, the rest in
    order), or None where no such row is valid: when the label is required, or there is none."""
    if require_label or data.task != "classify" or not data.label:
        return None
    return tuple(c for c in data_columns(data) if c != data.label)


def missing_field_reason(name: str) -> str:
    return f"missing field '{name}'"


def non_numeric_reason(name: str) -> str:
    return f"non-numeric feature '{name}'"


def non_finite_reason(name: str) -> str:
    return f"non-finite feature '{name}'"


def out_of_range_reason(name: str, limit: float) -> str:
    return f"feature '{name}' out of range (|x| > {limit:g})"


# -- the local executor ----------------------------------------------------------------------
# java.lang.Double.valueOf's grammar (after trimming chars <= U+0020), which Spark's cast uses.
_JAVA_DOUBLE = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(?:0[xX](?:[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?\d+))[fFdD]?)",
    re.ASCII,
)
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf, "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan}


def parse_double(text: str) -> float | None:
    """A field as Spark's ``try_cast(... as double)`` reads it, or None."""
    s = text.strip("".join(chr(c) for c in range(0x21)))
    if _JAVA_DOUBLE.fullmatch(s):
        body = s.rstrip("fFdD") if not s.endswith(("NaN", "Infinity")) else s
        if "NaN" in body:
            return math.nan
        if "Infinity" in body:
            return -math.inf if body.startswith("-") else math.inf
        if "x" in body or "X" in body:
            return float.fromhex(body)
        return float(body)
    return _SPECIAL.get(text.strip(WHITESPACE).lower())


@dataclass(frozen=True)
class Verdict:
    """A row's fate: ``reason`` None = valid (then ``features`` and, if required, ``label`` are set)."""

    reason: str | None
    features: tuple[float, ...] = ()
    label: int | None = None

    @property
    def is_header(self) -> bool:
        return self.reason == HEADER


def local_row(line: str | None, data: DataConfig, *, require_label: bool = True) -> Verdict:
    """The rules above, in Python, for one row. Scoring (``require_label=False``) also takes a row
    without its label column (:func:`scoring_columns`)."""
    if line is None or not line.strip(WHITESPACE):
        return Verdict(EMPTY)
    value = line[1:] if line.startswith(BOM) else line
    by_name = _csv_by_name(value, data, require_label) if data.format == "csv" else _json_by_name(value, data, require_label)
    if isinstance(by_name, Verdict):
        return by_name
    numbers = [parse_double(by_name[f] or "") if by_name[f] is not None else None for f in data.features]
    for name, x in zip(data.features, numbers, strict=True):
        if x is None:
            return Verdict(non_numeric_reason(name))
    for name, x in zip(data.features, numbers, strict=True):
        if x is not None and not math.isfinite(x):
            return Verdict(non_finite_reason(name))
    for name, x in zip(data.features, numbers, strict=True):
        if x is not None and abs(x) > data.max_abs_value:
            return Verdict(out_of_range_reason(name, data.max_abs_value))
    label_text = by_name.get(data.label)
    label = data.classes.index(label_text) if label_text in data.classes else None
    if require_label and label is None:
        return Verdict(UNKNOWN_LABEL)
    return Verdict(None, tuple(float(x) for x in numbers if x is not None), label)


def _csv_by_name(value: str, data: DataConfig, require_label: bool) -> dict[str, str | None] | Verdict:
    columns, short = data_columns(data), scoring_columns(data, require_label)
    split = csv_fields(value)
    if split is None:
        return Verdict(MALFORMED_QUOTING)
    fields = [f.strip(WHITESPACE) for f in split]
    if fields == list(columns) or (short is not None and fields == list(short)):
        return Verdict(HEADER)
    if len(fields) == len(columns):
        return dict(zip(columns, fields, strict=True))
    if short is None:
        return Verdict(field_count_reason(len(columns), len(fields)))
    if len(fields) == len(short):
        return dict(zip(short, fields, strict=True))
    return Verdict(scoring_count_reason(len(short), len(fields)))


def _json_by_name(value: str, data: DataConfig, require_label: bool) -> dict[str, str | None] | Verdict:
    try:
        obj = json.loads(value)
    except ValueError:
        obj = None
    columns = data_columns(data)
    by_name = {c: _json_field(obj, c) for c in columns}
    needed = scoring_columns(data, require_label) or columns
    for c in needed:
        if by_name[c] is None:
            return Verdict(missing_field_reason(c))
    return by_name


# A quoted section: "..." (a doubled quote inside is two adjacent sections). Linear in the line.
QUOTED_SECTION = r'"[^"]*"'
# With each quoted section replaced by one quote, a quote next to anything but a comma or another
# section is a section that is not a whole field.
SECTION_INSIDE_FIELD = r'[^,"]"|"[^,"]'


def csv_fields(line: str) -> list[str] | None:
    """A CSV line's fields per RFC 4180 (strict quoting), or None when its quoting is malformed."""
    if '"' not in line:
        return line.split(",")
    if line.count('"') % 2 or re.search(SECTION_INSIDE_FIELD, re.sub(QUOTED_SECTION, '"', line)):
        return None
    fields, after_section = [""], False
    for i, part in enumerate(re.split(f"({QUOTED_SECTION})", line)):
        if i % 2:  # a quoted section; right after another one, they meant a doubled quote
            fields[-1] += ('"' if after_section else "") + part[1:-1]
            after_section = True
        else:
            first, *rest = part.split(",")
            fields[-1] += first
            fields.extend(rest)
            after_section = after_section and part == ""
    return fields


def _json_field(obj: object, name: str) -> str | None:
    """Spark's ``get_json_object(value, '$.name')``, trimmed: scalars as text, objects as JSON."""
    if not isinstance(obj, dict) or name not in obj or obj[name] is None:
        return None
    v = obj[name]
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, (dict, list)):
        text = json.dumps(v, separators=(",", ":"))
    else:
        text = str(v) if not isinstance(v, float) or not v.is_integer() else repr(v)
    return text.strip(WHITESPACE)


def read_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """A file's lines as Spark's text reader sees them: split at \\n, \\r\\n or \\r, not UTF-8
    bytes replaced, no empty line after a final line break."""
    try:
        raw = filesystem(path).read_bytes(os.fspath(path))  # a local path or a Hadoop URI
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {path}") from None
    text = raw.decode("utf-8", errors="replace")
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    yield from lines


def csv_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[str] | None]]:
    """A CSV file as the stream reads it: (line number, fields) for every non-blank line, fields
    per RFC 4180 and trimmed, a byte-order mark dropped, ``None`` for malformed quoting. What
    ``init-config`` and the replay producers read a file with."""
    for n, line in enumerate(read_lines(path), 1):
        value = line[1:] if line.startswith(BOM) else line
        if not value.strip(WHITESPACE):
            continue
        fields = csv_fields(value)
        yield n, None if fields is None else [f.strip(WHITESPACE) for f in fields]
