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
import tempfile
from pathlib import Path
from typing import ClassVar

from streaming_lstm.local.jvm_deps import extra_java_options, java_executable, require
from streaming_lstm.local.process import Service, ServiceError, free_port

MAIN = "org.apache.hadoop.mapreduce.MiniHadoopClusterManager"


class MiniDFSError(ServiceError):
    """The minicluster did not start; the message has the tail of its log."""


class MiniDFS(Service):
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`."""

    name = "the HDFS minicluster"
    error = MiniDFSError
    start_timeout = 120.0
    poll_interval = 0.3

    def __init__(self, port: int = 0, *, heap: str = "512m") -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.data_dir = Path(tempfile.mkdtemp(prefix="streaming-lstm-hdfs-"))
        self.heap = heap

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

    @property
    def _details(self) -> Path:
        return self.data_dir / "details.json"

    def prepare(self) -> None:
        """The client configuration directory (core-site.xml, hdfs-site.xml)."""

        def site(props: dict[str, str]) -> str:
            body = "".join(f"<property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
            return f'<?xml version="1.0"?>\n<configuration>{body}</configuration>\n'

        self.conf_dir.mkdir(exist_ok=True)
        (self.conf_dir / "core-site.xml").write_text(site({"fs.defaultFS": self.uri}))
        (self.conf_dir / "hdfs-site.xml").write_text(site(self.CLIENT_CONF))

    def command(self) -> list[str]:
        loopback = [f"dfs.datanode.{k}=127.0.0.1:0" for k in ("address", "http.address", "ipc.address")]
        conf = [*loopback, "dfs.namenode.http-address=127.0.0.1:0", "dfs.permissions.enabled=true"]
        jars = os.pathsep.join(str(j) for j in require("hdfs"))
        data = f"-Dtest.build.data={self.data_dir / 'data'}"
        args = ["-nomr", "-format", "-nnport", str(self.port), "-writeDetails", str(self._details), *[a for kv in conf for a in ("-D", kv)]]
        return [java_executable(), f"-Xmx{self.heap}", *extra_java_options(), data, "-cp", jars, MAIN, *args]

    def ready(self) -> bool:
        """The cluster writes its details file once it has left safe mode."""
        try:
            json.loads(self._details.read_text())
            return True
        except (OSError, ValueError):
            return False  # not there yet, or being written

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
