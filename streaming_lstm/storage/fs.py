"""One file-system layer for everything the trainer and its commands read or write outside Spark's
own readers and writers: model versions, ``metrics.jsonl``, reports, exports, input listings.

A location is a string: a plain local path, a ``file://`` URI, or any Hadoop-compatible URI
(``hdfs://``, ``s3a://``, ``abfs://``, ``gs://`` ...). :func:`filesystem` picks the implementation:

* local paths go through ``os`` (fsync of files and directories, ``os.replace``, mode 0600/0700);
* every other scheme goes through **Hadoop's own** ``FileSystem`` in the Spark session's JVM.

Why Hadoop's ``FileSystem`` and not ``pyarrow.fs`` or fsspec: it is the code Spark itself uses for
the streaming checkpoint, so one URI means the same thing to both, with the same configuration
(``spark.hadoop.*``, ``core-site.xml``) and the same credentials, and every connector a cluster has
installed for Spark (s3a, abfs, gcs) works without a second client stack. ``pyarrow.fs``'s HDFS
needs ``libhdfs`` and a full Hadoop installation, and fsspec's clients have their own configuration.
The cost: a JVM. Commands that run without Spark (``evaluate``, ``export``, ``report``) start a
small local session only when they are given a non-local URI.

Contracts (what callers rely on):

* :meth:`FileSystem.write_atomic` leaves either no file or the whole file under the final name: it
  writes a temporary file beside it, syncs it (``fsync`` / ``hsync``), and renames it. HDFS and the
  local disk rename atomically. Object stores (s3a, gs, abfs without HNS) have no atomic rename: a
  rename is a copy, but an object only becomes visible whole when its upload completes, so a reader
  still never sees a torn file; the model store writes its metadata last and checks the weights'
  hash (store.py), which keeps its contract there.
* :meth:`FileSystem.append` adds bytes at the end, synced. Where the store cannot append (object
  stores) the file is rewritten whole through :meth:`write_atomic`.
* Directories this layer creates are private (0700) and files 0600, where the file system has
  permissions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from typing import Any, Protocol
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class FileSystem(Protocol):
    """The operations the project needs; paths are strings in the file system's own form."""

    def exists(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def list_names(self, path: str) -> list[str]: ...  # [] for a missing directory
    def read_bytes(self, path: str) -> bytes: ...  # FileNotFoundError naming the path
    def write_atomic(self, path: str, data: bytes) -> None: ...
    def append(self, path: str, data: bytes) -> None: ...
    def mkdirs(self, path: str) -> None: ...
    def delete(self, path: str) -> None: ...  # a missing file is fine
    def delete_tree(self, path: str) -> None: ...  # a directory and everything under it; missing is fine
    def rename(self, src: str, dst: str) -> None: ...  # replaces dst
    def size(self, path: str) -> int: ...  # bytes of a file, or of everything under a directory; 0 if missing
    def sync_dir(self, path: str) -> None: ...
    def upload_dir(self, local_dir: str, path: str) -> None: ...


def is_local(location: str | os.PathLike[str]) -> bool:
    """True for plain paths and ``file:`` URIs."""
    scheme = urlparse(os.fspath(location)).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive


def local_path(location: str | os.PathLike[str]) -> str:
    """A local location as a plain path (``file:///x`` -> ``/x``)."""
    loc = os.fspath(location)
    return urlparse(loc).path if loc.startswith("file:") else loc


def join(base: str | os.PathLike[str], *names: str) -> str:
    """``base/name/...`` for a path or a URI (URIs always join with ``/``)."""
    loc = os.fspath(base)
    return os.path.join(loc, *names) if is_local(loc) and not loc.startswith("file:") else posixpath.join(loc, *names)


def basename(location: str | os.PathLike[str]) -> str:
    return posixpath.basename(os.fspath(location).rstrip("/"))


def _write_synced(path: str, mode: int, data: bytes) -> None:
    """Write all of ``data`` (``os.write`` may write less than asked) to a 0600 file, then fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalFileSystem:
    """``os`` with fsync of the file and its directory around each atomic write."""

    def exists(self, path: str) -> bool:
        return os.path.exists(local_path(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(local_path(path))

    def list_names(self, path: str) -> list[str]:
        try:
            return os.listdir(local_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read_bytes(self, path: str) -> bytes:
        with open(local_path(path), "rb") as fh:
            return fh.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        p = local_path(path)
        tmp = os.path.join(os.path.dirname(p), f".{os.path.basename(p)}.tmp-{os.getpid()}")
        _write_synced(tmp, os.O_TRUNC, data)
        os.replace(tmp, p)

    def append(self, path: str, data: bytes) -> None:
        _write_synced(local_path(path), os.O_APPEND, data)

    def mkdirs(self, path: str) -> None:
        os.makedirs(local_path(path), mode=0o700, exist_ok=True)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local_path(path))

    def delete_tree(self, path: str) -> None:
        import shutil

        shutil.rmtree(local_path(path), ignore_errors=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(local_path(src), local_path(dst))

    def size(self, path: str) -> int:
        p = local_path(path)
        if os.path.isfile(p):
            return os.path.getsize(p)
        total = 0
        for dirpath, _dirs, files in os.walk(p):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.path.getsize(os.path.join(dirpath, name))
        return total

    def sync_dir(self, path: str) -> None:
        fd = os.open(local_path(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def upload_dir(self, local_dir: str, path: str) -> None:
        import shutil

        shutil.copytree(local_dir, local_path(path), dirs_exist_ok=True)


class HadoopFileSystem:
    """Hadoop's ``FileSystem`` for one URI's scheme and authority, through the session's JVM (py4j)."""

    def __init__(self, jvm: Any, hadoop_conf: Any, uri: str) -> None:
        self._jvm = jvm
        self._conf = hadoop_conf
        self._fs = jvm.org.apache.hadoop.fs.Path(uri).getFileSystem(hadoop_conf)

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _perm(self, octal: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.permission.FsPermission(octal)

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def is_dir(self, path: str) -> bool:
        p = self._path(path)
        return bool(self._fs.exists(p) and self._fs.getFileStatus(p).isDirectory())

    def list_names(self, path: str) -> list[str]:
        p = self._path(path)
        if not self._fs.exists(p):
            return []
        return [str(s.getPath().getName()) for s in self._fs.listStatus(p)]

    def read_bytes(self, path: str) -> bytes:
        p = self._path(path)
        if not self._fs.exists(p):
            raise FileNotFoundError(f"{path}: no such file")
        stream = self._fs.open(p)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def _write(self, p: Any, data: bytes) -> None:
        out = self._fs.create(p, True)
        try:
            out.write(bytearray(data))
            out.hsync()  # on HDFS: on the datanodes' disks, not only in their memory
        finally:
            out.close()
        self._fs.setPermission(p, self._perm("600"))

    def write_atomic(self, path: str, data: bytes) -> None:
        final = self._path(path)
        tmp = self._path(posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp-{os.getpid()}"))
        self._write(tmp, data)
        if not self._fs.rename(tmp, final):
            # HDFS's rename refuses an existing target: replace it (only files not yet published
            # through a metadata file, or whole-file rewrites, are ever replaced).
            self._fs.delete(final, False)
            if not self._fs.rename(tmp, final):
                raise OSError(f"cannot rename {tmp} to {path}")

    def append(self, path: str, data: bytes) -> None:
        p = self._path(path)
        if not self._fs.exists(p):
            self._write(p, data)
            return
        try:
            out = self._fs.append(p)
            try:
                out.write(bytearray(data))
                out.hsync()
            finally:
                out.close()
        except Exception as exc:  # py4j: UnsupportedOperationException on object stores, or an
            # append pipeline HDFS cannot build (fewer DataNodes than dfs.replication): rewrite whole.
            log.info("append to %s failed (%s): rewriting the file", path, str(exc).splitlines()[0][:200])
            existing = self.read_bytes(path)
            if existing and not existing.endswith(b"\n"):
                existing += b"\n"  # a torn partial line stays a line of its own (readers skip it)
            self.write_atomic(path, existing + data)

    def mkdirs(self, path: str) -> None:
        self._fs.mkdirs(self._path(path), self._perm("700"))

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), False)

    def delete_tree(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def rename(self, src: str, dst: str) -> None:
        target = self._path(dst)
        self._fs.delete(target, False)  # HDFS's rename refuses an existing target
        if not self._fs.rename(self._path(src), target):
            raise OSError(f"cannot rename {src} to {dst}")

    def size(self, path: str) -> int:
        p = self._path(path)
        return int(self._fs.getContentSummary(p).getLength()) if self._fs.exists(p) else 0

    def sync_dir(self, path: str) -> None:
        """Nothing to do: a rename is durable once the NameNode (or the object store) answers."""

    def upload_dir(self, local_dir: str, path: str) -> None:
        """Copy a local directory's entries into ``path`` (replacing entries of the same name)."""
        self.mkdirs(path)
        for name in sorted(os.listdir(local_dir)):
            target = self._path(posixpath.join(path, name))
            self._fs.delete(target, True)  # else Hadoop copies a directory *into* an existing one
            self._fs.copyFromLocalFile(False, True, self._path("file://" + os.path.abspath(os.path.join(local_dir, name))), target)


_LOCAL = LocalFileSystem()
_cache: dict[tuple[str, str], HadoopFileSystem] = {}


_gateway: Any = None


def _hadoop_jvm() -> tuple[Any, Any]:
    """A JVM to reach Hadoop's ``FileSystem`` through, and its Hadoop configuration: the active
    Spark session's (with its ``spark.hadoop.*`` settings), or else a bare JVM gateway started once
    for this process by Spark's launcher (Spark's jars and ``HADOOP_CONF_DIR`` on its classpath; no
    SparkContext, no executors, no UI), for a command that only reads or writes a few files."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is not None:
        sc = spark.sparkContext
        return sc._jvm, sc._jsc.hadoopConfiguration()
    global _gateway
    if _gateway is None:
        from pyspark.java_gateway import launch_gateway

        _gateway = launch_gateway()
    jvm = _gateway.jvm
    return jvm, jvm.org.apache.hadoop.conf.Configuration()


def filesystem(location: str | os.PathLike[str]) -> FileSystem:
    """The file system a location lives on (see the module docstring)."""
    loc = os.fspath(location)
    if is_local(loc):
        return _LOCAL
    parsed = urlparse(loc)
    key = (parsed.scheme, parsed.netloc)
    if key not in _cache:
        jvm, conf = _hadoop_jvm()
        _cache[key] = HadoopFileSystem(jvm, conf, f"{parsed.scheme}://{parsed.netloc}/")
    return _cache[key]
