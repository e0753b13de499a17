"""``streaming-lstm init-config``: a starting TOML for a CSV file, from its header and values. The
file is read as the stream reads it (parse/rows.csv_records: RFC 4180 quoting, a byte-order mark,
CRLF line ends).

Row mode (classification), by default.

Which ``[data]`` keys it writes and which are optional (config.DataConfig):

* ``features`` (required): every numeric column but the label, in file order (numeric: every
  non-empty value in the sample is a number; the columns left out and the features with empty
  cells are named in the output and as comments at the top of the file);
* ``label`` (required): ``--label``, else the last column;
* ``classes`` (required): the label's distinct values, in order of first appearance (sorted
  numerically when they are all numbers);
* ``columns`` (optional: it defaults to ``features`` then ``label``): written only when the file's
  order differs from that, or it has columns that are neither;
* ``class_names``, ``format``, ``max_abs_value`` (optional): left to their defaults.

``[model]``: ``timesteps`` (``--timesteps``, default 1: every feature in one step) with
``features_per_step`` = features / timesteps, which must divide evenly. Why 1 by default: a CSV
row's columns are usually separate measurements, not a sequence; read as one step, the LSTM sees
all of them at once. Measured with ``python -m bench river`` (prequential accuracy, 50-row
batches): ImageSegments 0.768 with one feature per step -> 0.874 with one step, Phishing 0.874 ->
0.881. Pass ``--timesteps`` when the columns are a sequence (Iris read as 4 steps, as the 2016 experiment did).

Event mode (``--events --time COL [--entity COL] --targets COL[,COL]``: forecasting): ``mode``,
``task = "forecast"``, ``time``, ``entity`` (left out for a single series: the whole file is one
entity), ``targets``, and as ``features`` every numeric column but the time and the entity (the
targets included: the model reads their past). ``[model]``: ``timesteps`` (``--timesteps``, default
16 events per window) with ``features_per_step`` = the feature columns.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming_lstm.core.config import ConfigError
from streaming_lstm.core.config_load import from_dict, load_config
from streaming_lstm.parse.rows import csv_records, parse_double

SAMPLE_ROWS = 10_000
EVENT_TIMESTEPS = 16


def read_sample(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """The columns (the header, or c0, c1, ...) and up to :data:`SAMPLE_ROWS` rows with that many fields."""
    records = csv_records(path)
    first = next((fields for _, fields in records if fields is not None), None)
    if first is None:
        raise ConfigError(f"{path}: the file is empty")
    other = next((sep for sep in (";", "\t", "|") if len(first) == 1 and sep in first[0]), None)
    if other is not None:
        raise ConfigError(
            f"{path}: one column, {first[0][:60]!r}: fields are read as comma-separated (RFC 4180), "
            f"and this file looks separated by {other!r}; convert it to commas first"
        )
    has_header = all(parse_double(f) is None for f in first)
    columns = first if has_header else [f"c{i}" for i in range(len(first))]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"{path}: the header names a column twice: {columns}")
    rows = [] if has_header else [first]
    for _, fields in records:
        if len(rows) >= SAMPLE_ROWS:
            break
        if fields is not None and len(fields) == len(columns):
            rows.append(fields)
    if not rows:
        raise ConfigError(f"{path}: no row has the header's {len(columns)} fields")
    return columns, rows


def _is_blank(field: str) -> bool:
    return not field.strip()


def _numeric(columns: list[str], rows: list[list[str]], leave_out: set[str]) -> list[str]:
    """The columns whose every non-empty value in the sample is a number (at least one is): a few
    empty cells (missing readings) do not cost the whole column; at run time a row with an empty
    feature is a dead letter, counted under its reason."""
    return [c for i, c in enumerate(columns) if c not in leave_out and _kind(rows, i) == "numeric"]


def _kind(rows: list[list[str]], i: int) -> str:
    """Column ``i``'s kind in the sample: "numeric", or why not (its first non-number, or empty throughout)."""
    seen = False
    for n, r in enumerate(rows):
        if _is_blank(r[i]):
            continue
        if parse_double(r[i]) is None:
            return f"not a number: {r[i]!r} in sample row {n + 1}"
        seen = True
    return "numeric" if seen else "empty in every sample row"


def column_notes(path: str | Path, conf: dict[str, dict[str, Any]]) -> list[str]:
    """What a user should know about the proposal: each column it does not use and why, and each
    feature with empty cells in the sample (those rows will be dead-lettered)."""
    columns, rows = read_sample(path)
    d = conf["data"]
    used = {*d["features"], *(d.get(k) for k in ("label", "time", "entity") if d.get(k))}
    notes = [f"left out {c!r}: {_kind(rows, i)}" for i, c in enumerate(columns) if c not in used]
    for i, c in enumerate(columns):
        blank = sum(_is_blank(r[i]) for r in rows)
        if c in d["features"] and blank:
            notes.append(f"{c!r}: {blank} empty of {len(rows)} sample rows (a row with an empty feature becomes a dead letter)")
    return notes


def propose(path: str | Path, label: str | None = None, timesteps: int | None = None) -> dict[str, dict[str, Any]]:
    """Row mode: numeric features, the label and its classes (module docstring)."""
    columns, rows = read_sample(path)
    label = label or columns[-1]
    if label not in columns:
        raise ConfigError(f"--label {label!r}: not a column of {path} (columns: {', '.join(columns)})")
    li = columns.index(label)
    numeric = _numeric(columns, rows, {label})
    if not numeric:
        raise ConfigError(f"{path}: no numeric feature column besides the label {label!r}")
    classes = list(dict.fromkeys(r[li] for r in rows))
    if all(parse_double(c) is not None for c in classes):
        classes.sort(key=lambda c: float(parse_double(c) or 0.0))
    if len(classes) < 2:
        raise ConfigError(f"label {label!r}: only one value ({classes[0]!r}) in the first {len(rows)} rows; a classifier needs two")
    steps = timesteps or 1
    if steps <= 0 or len(numeric) % steps:
        raise ConfigError(f"--timesteps {steps}: must divide the {len(numeric)} feature columns evenly")
    data: dict[str, Any] = {"features": numeric, "label": label, "classes": classes}
    if columns != [*numeric, label]:
        data["columns"] = columns
    return {"data": data, "model": {"timesteps": steps, "features_per_step": len(numeric) // steps}}


def propose_events(
    path: str | Path, time: str | None, targets: list[str], entity: str | None = None, timesteps: int | None = None, known: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Event mode, forecasting ``targets`` one step ahead from windows of ``timesteps`` events;
    ``known``: feature columns whose values at the forecast step are known when forecasting."""
    columns, rows = read_sample(path)
    if not time:
        raise ConfigError(f"--events needs --time COLUMN (the event-time column; columns: {', '.join(columns)})")
    if not targets:
        raise ConfigError(f"--events needs --targets COLUMN[,COLUMN] (what to forecast; columns: {', '.join(columns)})")
    for flag, name in [("--time", time), ("--entity", entity), *[("--targets", t) for t in targets], *[("--known", k) for k in known]]:
        if name is not None and name not in columns:
            raise ConfigError(f"{flag} {name!r}: not a column of {path} (columns: {', '.join(columns)})")
    features = _numeric(columns, rows, {time, *([entity] if entity else [])})
    wrong = [t for t in targets if t not in features]
    if wrong:
        raise ConfigError(f"--targets {wrong[0]!r}: not numeric in the first {len(rows)} rows of {path}")
    steps = timesteps or EVENT_TIMESTEPS
    if steps <= 0:
        raise ConfigError(f"--timesteps {steps}: must be positive")
    data: dict[str, Any] = {"mode": "events", "task": "forecast", "columns": columns, "time": time, "features": features, "targets": targets}
    data["forecast_change"] = True  # learn changes from the last value: from the first window no worse than naive
    if known:
        data["known"] = list(known)
    if entity:
        data["entity"] = entity
    return {"data": data, "model": {"timesteps": steps, "features_per_step": len(features)}}


def to_toml(conf: dict[str, dict[str, Any]], source: str, notes: Sequence[str] = ()) -> str:
    out = [f"# Generated by 'streaming-lstm init-config' from {source}; edit freely.", *(f"# {n}" for n in notes), ""]
    for section, values in conf.items():
        out.append(f"[{section}]")
        out += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        out.append("")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise ConfigError(f"--out {out}: exists (add --force to overwrite)")
    if args.events:
        targets = [t.strip() for t in (args.targets or "").split(",") if t.strip()]
        known = [k.strip() for k in (args.known or "").split(",") if k.strip()]
        conf = propose_events(args.data, args.time, targets, args.entity, args.timesteps, known)
    else:
        conf = propose(args.data, args.label, args.timesteps)
    from_dict(conf)  # what is proposed validates, printed or written
    notes = column_notes(args.data, conf)
    text = to_toml(conf, str(args.data), notes)
    if out is None:
        print(text, end="")
        return 0
    out.write_text(text)
    load_config(out)  # what was written loads and validates
    d = conf["data"]
    what = f"targets {', '.join(d['targets'])}" if args.events else f"label {d['label']!r} with {len(d['classes'])} classes"
    print(f"wrote {out}: {len(d['features'])} features, {what}, timesteps {conf['model']['timesteps']}")
    for note in notes:
        print(f"  {note}")
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "init-config",
        help="write a starting TOML configuration for a CSV file",
        description="Propose a starting TOML configuration for a CSV file from its header and values: row mode (classification), "
        "or with --events event mode (forecasting). Prints it, or writes it with --out.",
    )
    p.add_argument("--data", required=True, metavar="CSV", help="the data file (a header line names the columns; without one they are c0, c1, ...)")
    p.add_argument("--label", help="row mode: the label column (default: the last column)")
    p.add_argument(
        "--timesteps",
        type=int,
        help="sequence length T. Row mode: features per step = features / T (default 1: all features in one step; set it when the columns "
        f"are a sequence). Event mode: events per window (default {EVENT_TIMESTEPS})",
    )
    ev = p.add_argument_group("event mode (forecasting)")
    ev.add_argument("--events", action="store_true", help="propose an event-mode configuration: windows of events in time order, forecast the targets")
    ev.add_argument("--time", metavar="COLUMN", help="the event-time column (seconds since the epoch, or a timestamp)")
    ev.add_argument("--entity", metavar="COLUMN", help="the column naming each event's series (default: none, the file is one series)")
    ev.add_argument("--targets", metavar="COLUMN[,COLUMN]", help="the columns to forecast one step ahead")
    ev.add_argument(
        "--known",
        metavar="COLUMN[,COLUMN]",
        help="feature columns known ahead: their value at the forecast step is known when forecasting (a calendar, a plan, the day's polls)",
    )
    p.add_argument("--out", metavar="TOML", help="write here instead of printing")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=run)
