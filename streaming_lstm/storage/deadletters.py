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


class DeadLetterCap:
    """Keeps ``directory`` within ``max_bytes`` (0: no cap) as batches' dead letters are written.

    The sizes of the batches kept are read once, at the first batch, then kept up to date one
    written batch at a time, so a batch costs one directory's size, not a listing of all of them
    (on HDFS, one NameNode call instead of one per kept batch).
    """

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fs = filesystem(directory)
        self._sizes: dict[int, int] | None = None  # batch id -> bytes, for the batches kept

    def written(self, batch_id: int) -> dict[str, int]:
        """``batch_id``'s dead letters were just written: delete the oldest batches' until the
        directory is within the cap (the newest batch always stays); the cumulative counts of what
        was deleted."""
        if self.max_bytes <= 0:
            return dropped(self.dir)
        if self._sizes is None:
            self._sizes = {b: self.fs.size(join(self.dir, name)) for b, name in batch_dirs(self.dir)}
        else:
            self._sizes[batch_id] = self.fs.size(join(self.dir, f"{PREFIX}{batch_id}"))
        total = dropped(self.dir)
        used = sum(self._sizes.values())
        for old in sorted(self._sizes)[:-1]:
            if used <= self.max_bytes:
                break
            used -= self._sizes.pop(old)
            total = self._delete(old, total)
        return total

    def _delete(self, batch_id: int, total: dict[str, int]) -> dict[str, int]:
        path = join(self.dir, f"{PREFIX}{batch_id}")
        rows = rows_in(path)
        self.fs.delete_tree(path)
        total = {"batches": total["batches"] + 1, "rows": total["rows"] + rows, "last_batch_id": batch_id}
        self.fs.write_atomic(join(self.dir, DROPPED), json.dumps(total, sort_keys=True).encode())
        log.warning(
            "dead letters over stream.deadletter_max_mb: deleted %s (%d rows); %d rows in %d batches deleted so far (%s)",
            path, rows, total["rows"], total["batches"], join(self.dir, DROPPED),
        )  # fmt: skip
        return total
