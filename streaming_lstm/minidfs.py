"""A real HDFS on this machine: Hadoop's MiniDFSCluster (one NameNode, one DataNode) in its own JVM.

For tests and for trying ``hdfs://`` checkpoints without a cluster. It runs from the ``hdfs`` jar
set (``hadoop-client-minicluster`` at PySpark's own Hadoop client version, fetched by
``scripts/setup.sh``; jvm_deps.py) through Hadoop's ``MiniHadoopClusterManager`` with MapReduce off.

What a started cluster guarantees:

* The NameNode's RPC listens on ``127.0.0.1:port`` (a free port by default); every other port
  (DataNode data, IPC and HTTP, NameNode HTTP) is ephemeral and on loopback.
* :attr:`MiniDFS.uri` (``hdfs://127.0.0.1:PORT``) is usable by Spark and by fs.py as soon as
  :meth:`MiniDFS.start` returns: the cluster has written its details file and left safe mode.
* Its storage is a temporary directory, removed at :meth:`MiniDFS.stop`; the JVM's output is in
  ``<data_dir>/minidfs.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from streaming_lstm.broker import free_port
from streaming_lstm.jvm_deps import java_executable, require

MAIN = "org.apache.hadoop.mapreduce.MiniHadoopClusterManager"


class MiniDFSError(RuntimeError):
    """The minicluster did not start; the message has the tail of its log."""


class MiniDFS:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`."""

    def __init__(self, port: int = 0, *, heap: str = "512m") -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.data_dir = Path(tempfile.mkdtemp(prefix="streaming-lstm-hdfs-"))
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"hdfs://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "minidfs.log"

    @property
    def conf_dir(self) -> Path:
        """A Hadoop configuration directory for clients (``HADOOP_CONF_DIR``): ``fs.defaultFS`` is
        this cluster, and one replica per block, since there is one DataNode (appends need it)."""
        return self.data_dir / "conf"

    CLIENT_CONF: ClassVar[dict[str, str]] = {"dfs.replication": "1", "dfs.client.block.write.replace-datanode-on-failure.enable": "false"}

    def _write_client_conf(self) -> None:
        def site(props: dict[str, str]) -> str:
            body = "".join(f"<property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
            return f'<?xml version="1.0"?>\n<configuration>{body}</configuration>\n'

        self.conf_dir.mkdir(exist_ok=True)
        (self.conf_dir / "core-site.xml").write_text(site({"fs.defaultFS": self.uri}))
        (self.conf_dir / "hdfs-site.xml").write_text(site(self.CLIENT_CONF))

    def start(self, timeout: float = 120.0) -> MiniDFS:
        self._write_client_conf()
        details = self.data_dir / "details.json"
        loopback = [f"dfs.datanode.{k}=127.0.0.1:0" for k in ("address", "http.address", "ipc.address")]
        conf = [*loopback, "dfs.namenode.http-address=127.0.0.1:0", "dfs.permissions.enabled=true"]
        cmd = [
            java_executable(),
            f"-Xmx{self.heap}",
            f"-Dtest.build.data={self.data_dir / 'data'}",
            "-cp",
            os.pathsep.join(str(j) for j in require("hdfs")),
            MAIN,
            "-nomr",
            "-format",
            "-nnport",
            str(self.port),
            "-writeDetails",
            str(details),
            *[a for kv in conf for a in ("-D", kv)],
        ]
        with open(self.log_file, "ab") as out:
            # stdin is kept open (a pipe): the manager exits when it reads end-of-file on some versions.
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise MiniDFSError(f"the HDFS minicluster exited with code {code}: {self._tail()}")
            if details.exists():
                try:
                    json.loads(details.read_text())
                    return self
                except ValueError:
                    pass  # being written
            time.sleep(0.3)
        self.stop()
        raise MiniDFSError(f"the HDFS minicluster did not start within {timeout:g} s: {self._tail()}")

    def _tail(self, lines: int = 8) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:]) or f"no log in {self.data_dir}"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, SIGKILL after ``timeout``; the storage directory is removed."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MiniDFS:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
