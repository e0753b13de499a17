"""The file-system layer's local half and its URI handling (HDFS itself: test_hdfs.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streaming_lstm.storage.fs import LocalFileSystem, basename, filesystem, is_local, join, local_path


@pytest.mark.parametrize(
    ("location", "local"),
    [("/tmp/ck", True), ("runs/ck", True), ("file:///tmp/ck", True), ("hdfs://nn:8020/ck", False), ("s3a://bucket/ck", False), ("gs://b/x", False)],
)
def test_local_paths_and_uris_are_told_apart(location: str, local: bool) -> None:
    assert is_local(location) is local
    assert isinstance(filesystem(location), LocalFileSystem) if local else True


def test_join_keeps_uris_whole_and_paths_native() -> None:
    assert join("hdfs://nn:8020/a", "model", "v1.json") == "hdfs://nn:8020/a/model/v1.json"
    assert join("s3a://bucket", "ck") == "s3a://bucket/ck"
    assert join("file:///tmp/a", "b") == "file:///tmp/a/b"
    assert join(Path("/tmp/a"), "b") == "/tmp/a/b"
    assert local_path("file:///tmp/a/b") == "/tmp/a/b" and local_path("/x") == "/x"
    assert basename("hdfs://nn/a/ck/") == "ck"


def test_local_writes_are_private_atomic_and_append(tmp_path: Path) -> None:
    fs = filesystem(tmp_path)
    d = join(tmp_path, "a", "b")
    fs.mkdirs(d)
    assert stat.S_IMODE(Path(d).stat().st_mode) == 0o700
    f = join(d, "x.bin")
    fs.write_atomic(f, b"one")
    fs.write_atomic(f, b"two")
    assert fs.read_bytes(f) == b"two" and fs.list_names(d) == ["x.bin"]  # no temporary file left
    assert stat.S_IMODE(Path(f).stat().st_mode) == 0o600
    log = join(d, "m.jsonl")
    fs.append(log, b"1\n")
    fs.append(log, b"2\n")
    assert fs.read_bytes(log) == b"1\n2\n"
    fs.delete(f)
    fs.delete(f)  # missing is fine
    assert fs.list_names(join(tmp_path, "nope")) == [] and not fs.is_dir(f)
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(f)
    # file:// URIs are the same local files.
    assert filesystem(f"file://{log}").read_bytes(f"file://{log}") == b"1\n2\n"
