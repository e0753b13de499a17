"""Reading rows from a file for the one-process commands (``fit``, ``evaluate``, ``predict --data``)
and the benchmarks, through the local executor of rows.py: the same rules, reasons and wording as
the stream's Spark SQL executor. Invalid rows are counted by reason, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streaming_lstm.core.config import DataConfig, data_columns
from streaming_lstm.parse.rows import BOM, HEADER, WHITESPACE, Verdict, csv_fields, local_row, parse_double, read_lines


@dataclass
class Dataset:
    x: np.ndarray  # (N, F) float64, raw (not normalised), as Spark parses it
    y: np.ndarray  # (N,) int32 class ids (-1 where the label is unknown and not required)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> rows (rows.py's wording)
    headers_skipped: int = 0
    lines: list[tuple[str, Verdict]] = field(default_factory=list)  # every non-header line, in order

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


def load_csv(path: str | Path, data: DataConfig, *, require_label: bool = True) -> Dataset:
    """The rows of ``path`` through rows.py's rules (the same verdicts as the stream): valid rows as
    features and class ids, rejected ones counted by reason, header lines skipped and counted."""
    verdicts = [(line, local_row(line, data, require_label=require_label)) for line in read_lines(path)]
    kept = [(line, v) for line, v in verdicts if not v.is_header]
    valid = [v for _, v in kept if v.reason is None]
    x = np.array([v.features for v in valid], np.float64).reshape(len(valid), len(data.features))
    y = np.array([v.label if v.label is not None else -1 for v in valid], np.int32)
    rejected = Counter(v.reason for _, v in kept if v.reason is not None)
    return Dataset(x, y, rejected, len(verdicts) - len(kept), kept)


def stratified_split(y: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): ``holdout`` of each class, seeded. Both sorted."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"--holdout must be between 0 and 1, got {holdout}")
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[: round(holdout * len(idx))].tolist())
    test_idx = np.array(sorted(test), dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


REJECTED_WARNING_SHARE = 0.01  # more rejected rows than this share of a file is a warning


class DataError(ValueError):
    """A data file that cannot be used as asked: it names the file, the commonest reason and a hint."""


def reasons_summary(rejected: Counter[str], most: int = 3) -> str:
    return "; ".join(f"{r}: {n}" for r, n in rejected.most_common(most)) + ("; ..." if len(rejected) > most else "")


def check_header(path: str | Path, data: DataConfig, what: str, *, require_label: bool = True) -> None:
    """A first line whose fields are all non-numeric names columns: they must be the configured ones
    (to score: or those without the label)."""
    for line in read_lines(path):
        fields = [f.strip(WHITESPACE) for f in csv_fields(line.lstrip(BOM)) or []] if data.format == "csv" else []
        if fields and local_row(line, data, require_label=require_label).reason != HEADER and all(parse_double(f) is None for f in fields):
            expected = list(data_columns(data))
            raise DataError(
                f"{path}: its header names {len(fields)} columns ({', '.join(fields[:8])}{' ...' if len(fields) > 8 else ''}) "
                f"but the {what} expects {len(expected)} ({', '.join(expected[:8])}{' ...' if len(expected) > 8 else ''}): does the {what} match this data?"
            )
        return


def check_rows(ds: Dataset, path: str | Path, data: DataConfig, *, strict: bool, what: str, require_label: bool = True) -> list[str]:
    """Raise :class:`DataError` when no row is usable, or (``strict``) when any row was rejected;
    return the warnings to show (a rejected share above :data:`REJECTED_WARNING_SHARE`)."""
    total = len(ds.y) + ds.rows_rejected
    if len(ds.y) == 0:
        if total == 0:
            raise DataError(f"{path}: no rows" + (f" ({ds.headers_skipped} header lines only)" if ds.headers_skipped else ""))
        reason, n = ds.rejected.most_common(1)[0]
        raise DataError(
            f'{path}: no usable row: all {total} were rejected, most as "{reason}" ({n}); does the {what} match this data? '
            f"It expects {len(data_columns(data))} fields per row ({', '.join(data_columns(data)[:8])}) and labels {', '.join(data.classes[:8])}"
            + ("; a row to score may leave out the label" if not require_label else "")
        )
    if ds.rows_rejected and strict:
        raise DataError(f"{path}: {ds.rows_rejected} of {total} rows rejected (--strict): {reasons_summary(ds.rejected)}")
    if ds.rows_rejected > REJECTED_WARNING_SHARE * total:
        share = 100.0 * ds.rows_rejected / total
        summary = reasons_summary(ds.rejected)
        return [f"WARNING: {ds.rows_rejected} of {total} rows of {path} ({share:.1f}%) were rejected: {summary}; --strict makes this an error"]
    return []
