"""Per-batch metrics: the record type, its JSON-lines log and reader, the console line, and the
prequential summaries read from them. No Spark, no TensorFlow: ``report`` and ``demo`` read these.

Contract of ``CHECKPOINT/metrics.jsonl``: one JSON object per applied batch (a :class:`BatchMetrics`),
appended and fsynced after the model version that includes the batch is saved. A crash between the
two is repaired at the next start from the version's own copy of its metrics (state.py), so every
applied batch has exactly one line; a torn last line after a crash is skipped by the readers.
A long run rolls the file (``stream.log_roll_mb``): ``metrics.jsonl.1`` is the newest rolled
file, ``.2`` the one before, up to ``stream.log_files_kept``; older lines are deleted. Readers read
the rolled files oldest first, then ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Reversible
from typing import Any, TypedDict, overload

from streaming_lstm.storage.fs import FileSystem, filesystem, join


class BatchMetrics(TypedDict, total=False):
    """What the trainer records for one applied micro-batch."""

    batch_id: int
    version: int  # the model version that includes this batch
    rows_in: int  # rows Spark delivered (valid + dead + headers skipped)
    rows_valid: int
    rows_dead: int  # dead-lettered, by reason in dead_reasons
    headers_skipped: int  # header lines (rows.py): skipped, not dead letters
    dead_reasons: dict[str, int]
    partition_rows: list[int]  # valid rows per training partition, sorted
    local_epochs: int  # epochs each partition task trained (schedule.py: warm-up included)
    prequential_correct: int  # rows predicted right before training on them
    prequential_accuracy: float
    prequential_loss: float
    train_loss: float
    task_seconds_max: float
    rows_per_s: float
    latency_s: float  # the handler's wall time for this batch
    time: float  # unix time when the batch was applied
    step_seconds: dict[str, float]
    count_job: bool  # the batch's counts needed their own Spark job (parse/counts.settle)
    trained_in: str  # "driver" or "workers" (stream.train_in)
    drift: int  # 1 if ADWIN raised an alarm at this batch
    drift_raised: bool
    drift_detections: int
    rows_seen: int  # rows trained so far, this batch included
    rejected_updates: int
    # Event mode (window_state.py): rows_valid counts windows; rows_in counts events
    events_accepted: int  # events that went into their entity's windows (dead ones: rows_dead)
    # Forecasts: sums over every forecast value, in the targets' units, and their means
    prequential_abs_sum: float
    prequential_sq_sum: float
    naive_abs_sum: float
    forecast_values: int  # windows x forecast values per window
    prequential_mae: float
    prequential_rmse: float
    naive_mae: float
    skill: float  # 1 - MAE / naive MAE: > 0 beats the last-value forecast


METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``metrics.jsonl``: one JSON object per applied batch, appended and flushed; rolled to
    ``metrics.jsonl.1`` (and so on) before a line would take it past ``roll_bytes`` (0: never)."""

    def __init__(self, path: str | os.PathLike[str], roll_bytes: int = 0, kept: int = 0) -> None:
        self.path = os.fspath(path)
        self.fs = filesystem(self.path)
        self.roll_bytes = roll_bytes
        self.kept = kept
        self._size = self.fs.size(self.path)  # this writer's appends are the only ones

    def last_batch_id(self) -> int:
        """The newest batch id logged, -1 if none (the current file, else the newest rolled one)."""
        for path in reversed(log_files(self.path)):
            ids = [int(m["batch_id"]) for m in _records(path)]
            if ids:
                return max(ids)
        return -1

    def append(self, record: BatchMetrics | dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        if self.roll_bytes and self._size and self._size + len(line) > self.roll_bytes:
            roll(self.fs, self.path, self.kept)
            self._size = 0
        self.fs.append(self.path, line)
        self._size += len(line)


def roll(fs: FileSystem, path: str, kept: int) -> None:
    """``path`` becomes ``path.1``, ``path.1`` becomes ``path.2`` ...; past ``kept`` rolled files
    the oldest is deleted (``kept`` = 0: the rolled file itself)."""
    fs.delete(f"{path}.{kept}" if kept else path)
    for n in range(kept - 1, 0, -1):
        if fs.exists(f"{path}.{n}"):
            fs.rename(f"{path}.{n}", f"{path}.{n + 1}")
    if kept and fs.exists(path):
        fs.rename(path, f"{path}.1")


def log_files(path: str) -> list[str]:
    """A rolled log's files, oldest first: ``path.N`` .. ``path.1``, then ``path`` (those that exist)."""
    fs = filesystem(path)
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    rolled = sorted((int(n[len(name) + 1 :]) for n in fs.list_names(directory) if n.startswith(name + ".") and n[len(name) + 1 :].isdigit()), reverse=True)
    return [f"{path}.{n}" for n in rolled] + ([path] if fs.exists(path) else [])


class History:
    """This run's applied batches: the newest ``kept`` records (what the closing summary's
    last-N-rows figures read) and running totals over all of them, so a run of any length holds a
    bounded amount of it in memory."""

    KEPT = 10_000

    def __init__(self, kept: int = KEPT) -> None:
        self.records: deque[BatchMetrics] = deque(maxlen=kept)
        self.rows_in = self.rows_valid = self.rows_dead = 0

    def append(self, m: BatchMetrics) -> None:
        self.records.append(m)
        self.rows_in += int(m.get("rows_in", 0))
        self.rows_valid += int(m.get("rows_valid", 0))
        self.rows_dead += int(m.get("rows_dead", 0))

    def __iter__(self) -> Iterator[BatchMetrics]:
        return iter(self.records)

    def __reversed__(self) -> Iterator[BatchMetrics]:
        return reversed(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> BatchMetrics: ...
    @overload
    def __getitem__(self, index: slice) -> list[BatchMetrics]: ...
    def __getitem__(self, index: int | slice) -> BatchMetrics | list[BatchMetrics]:
        return list(self.records)[index] if isinstance(index, slice) else self.records[index]


def parse_records(data: bytes) -> list[BatchMetrics]:
    """``metrics.jsonl`` lines as records; a line that is not one (torn by a crash) is skipped."""
    out: list[BatchMetrics] = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
            int(record["batch_id"])
        except (ValueError, KeyError, TypeError):
            continue
        out.append(record)
    return out


def _records(path: str) -> list[BatchMetrics]:
    fs = filesystem(path)
    return parse_records(fs.read_bytes(path)) if fs.exists(path) else []


class MetricsTail:
    """The records appended to a local ``metrics.jsonl`` since the last :meth:`read_new`: whole
    lines only (a line still being written is read next time). When the writer rolls the file,
    the rest of the file followed so far is read from ``metrics.jsonl.1``, then the new file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.inode: int | None = None

    def read_new(self) -> list[BatchMetrics]:
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            return []
        out: list[BatchMetrics] = []
        if self.inode is not None and inode != self.inode:  # rolled since the last read
            with contextlib.suppress(OSError):
                if os.stat(self.path + ".1").st_ino == self.inode:
                    out += self._read(self.path + ".1")
            self.offset = 0
        self.inode = inode
        return out + self._read(self.path)

    def _read(self, path: str) -> list[BatchMetrics]:
        try:
            with open(path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        return parse_records(chunk[:end])


BatchCallback = Callable[[BatchMetrics], None]


def print_line(m: BatchMetrics) -> None:
    """The console's batch line (a :data:`BatchCallback`)."""
    print(format_line(m), flush=True)


def read_metrics(checkpoint: str | os.PathLike[str]) -> list[BatchMetrics]:
    """A checkpoint's batches in batch-id order (the last line of a batch id wins)."""
    path = join(checkpoint, METRICS_FILE)
    files = log_files(path)
    if not files:
        raise FileNotFoundError(f"{path} not found: is {checkpoint} a trainer checkpoint directory?")
    by_id = {int(m["batch_id"]): m for f in files for m in _records(f)}
    if not by_id:
        raise ValueError(f"{path} holds no batches yet")
    return [by_id[k] for k in sorted(by_id)]


def prequential_last(history: Reversible[Any], rows: int = 150) -> float:
    """Prequential accuracy over (about) the last ``rows`` rows: whole batches from the end, since
    per-row scores are not kept."""
    return prequential_span(history, rows)[0]


def accuracy_note(labelled: int, correct: int) -> str:
    """A prediction summary's accuracy over the rows that carried a label, as ``evaluate`` reports
    it ("" when none did): one wording for file and stream predictions."""
    return f"; accuracy {correct / labelled:.4f} on the {labelled} rows that carry a label" if labelled else ""


def prequential_span(history: Reversible[Any], rows: int = 150) -> tuple[float, int]:
    """:func:`prequential_last` and the rows it covers (fewer than ``rows`` in a short run)."""
    correct = seen = 0
    for m in reversed(history):
        if seen >= rows:
            break
        correct += int(m["prequential_correct"])
        seen += int(m["rows_valid"])
    return (correct / seen if seen else math.nan), seen


def forecast_fields(values: int, abs_sum: float, sq_sum: float, naive_sum: float) -> dict[str, Any]:
    """A batch's (or a span's) forecast figures from the error sums over ``values`` forecast values."""
    nan = math.nan
    mae, naive = (abs_sum / values, naive_sum / values) if values else (nan, nan)
    return {
        "prequential_abs_sum": abs_sum,
        "prequential_sq_sum": sq_sum,
        "naive_abs_sum": naive_sum,
        "forecast_values": values,
        "prequential_mae": mae,
        "prequential_rmse": math.sqrt(sq_sum / values) if values else nan,
        "naive_mae": naive,
        "skill": 1.0 - mae / naive if values and naive > 0 else nan,
    }


def forecast_last(history: Reversible[Any], windows: int) -> dict[str, Any]:
    """:func:`forecast_fields` over (about) the last ``windows`` windows: whole batches from the end."""
    values = seen = 0
    abs_sum = sq_sum = naive_sum = 0.0
    for m in reversed(history):
        if seen >= windows:
            break
        if not m.get("forecast_values"):
            continue
        values += int(m["forecast_values"])
        abs_sum += float(m["prequential_abs_sum"])
        sq_sum += float(m["prequential_sq_sum"])
        naive_sum += float(m["naive_abs_sum"])
        seen += int(m["rows_valid"])
    return forecast_fields(values, abs_sum, sq_sum, naive_sum)


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not math.isnan(value) else "  -  "


def format_line(m: BatchMetrics | dict[str, Any]) -> str:
    """The one console line per batch (forecasts: MAE, the naive forecast's MAE and the skill)."""
    if "prequential_mae" in m:
        quality = f"preq mae {_num(m['prequential_mae'], '.4g')} naive {_num(m['naive_mae'], '.4g')} skill {_num(m['skill'], '+.3f')}"
    else:
        quality = f"preq acc {_num(m.get('prequential_accuracy'), '.3f')} loss {m['prequential_loss']:.4f}"
    events = f" events {m['events_accepted']:>5}" if "events_accepted" in m else ""
    # rows = valid + dead + header lines skipped: shown when there were any, so the line adds up.
    headers = f" hdr {m['headers_skipped']}" if m.get("headers_skipped") else ""
    return (
        f"batch {m['batch_id']:>5} | rows {m['rows_in']:>6}{events} valid {m['rows_valid']:>6} dead {m['rows_dead']:>4}{headers}"
        f" | {quality} | train loss {m['train_loss']:.4f}"
        f" | {m['rows_per_s']:>8.0f} rows/s | {m['latency_s']:.2f} s | v{m['version']}" + ("  DRIFT" if m.get("drift") else "")
    )
