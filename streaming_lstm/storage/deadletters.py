"""The dead-letter directory's size cap: ``CHECKPOINT/deadletter/batch_id=N/`` holds batch N's
rejected rows (JSON lines, written by Spark); past ``stream.deadletter_max_mb`` the oldest batches'
directories are deleted, never the newest one, and what was dropped is counted in
``deadletter/_dropped.json`` (``{"batches", "rows", "last_batch_id"}``, cumulative; Spark's
readers skip names that start with ``_``) and logged, so nothing leaves without a trace.
"""

from __future__ import annotations

import json
import logging

from streaming_lstm.storage.fs import filesystem, join

log = logging.getLogger("streaming_lstm.storage.deadletters")
PREFIX = "batch_id="
DROPPED = "_dropped.json"


def batch_dirs(directory: str) -> list[tuple[int, str]]:
    """(batch id, directory name) of each batch's dead letters, oldest first."""
    names = filesystem(directory).list_names(directory)
    return sorted((int(n[len(PREFIX) :]), n) for n in names if n.startswith(PREFIX) and n[len(PREFIX) :].isdigit())


def dropped(directory: str) -> dict[str, int]:
    """What the cap has deleted so far (zeros if nothing)."""
    path = join(directory, DROPPED)
    fs = filesystem(path)
    if not fs.exists(path):
        return {"batches": 0, "rows": 0, "last_batch_id": -1}
    return {k: int(v) for k, v in json.loads(fs.read_bytes(path)).items()}


def rows_in(directory: str) -> int:
    """Dead-letter rows (JSON lines) in one batch's directory."""
    fs = filesystem(directory)
    return sum(fs.read_bytes(join(directory, n)).count(b"\n") for n in fs.list_names(directory) if n.startswith("part-"))


def enforce_cap(directory: str, max_bytes: int) -> dict[str, int]:
    """Delete the oldest batches' dead letters until the directory is within ``max_bytes`` (the
    newest batch always stays); returns the cumulative counts of what was deleted."""
    fs = filesystem(directory)
    total = dropped(directory)
    if max_bytes <= 0:
        return total
    batches = batch_dirs(directory)
    sizes = {name: fs.size(join(directory, name)) for _, name in batches}
    used = sum(sizes.values())
    for batch_id, name in batches[:-1]:
        if used <= max_bytes:
            break
        path = join(directory, name)
        rows = rows_in(path)
        fs.delete_tree(path)
        used -= sizes[name]
        total = {"batches": total["batches"] + 1, "rows": total["rows"] + rows, "last_batch_id": batch_id}
        fs.write_atomic(join(directory, DROPPED), json.dumps(total, sort_keys=True).encode())
        log.warning(
            "dead letters over stream.deadletter_max_mb: deleted %s (%d rows); %d rows in %d batches deleted so far (%s)",
            path, rows, total["rows"], total["batches"], join(directory, DROPPED),
        )  # fmt: skip
    return total
