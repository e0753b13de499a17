"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM), from the jars
that ``scripts/setup.sh`` fetched (:mod:`streaming_lstm.jvm_deps`).

What a started broker guarantees:

* It listens on loopback only (``127.0.0.1``), PLAINTEXT, on ``port`` (a free one by default); the
  controller listens on a second free loopback port.
* Its log directory is ``data_dir`` if given (formatted once, then reused: records survive a stop,
  a ``kill -9`` and a restart on the same directory) or a temporary directory removed at stop.
* :meth:`ApacheKafkaBroker.start` returns once the broker answers a metadata request, or raises
  :class:`~streaming_lstm.broker.BrokerError` naming the port and the tail of its log.
* The broker's own log (log4j) goes to ``<data_dir>/broker.log``, or ``log_file``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from streaming_lstm.broker import BrokerError, free_port, wait_for_metadata
from streaming_lstm.jvm_deps import KAFKA_VERSION, JarsError, java_executable, require

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
"""


def _properties(node_port: int, controller_port: int, log_dir: Path) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{node_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={log_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            # One node: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Retention is the topic's own business (tests delete records explicitly); check often so
            # that a topic's retention.ms takes effect within seconds.
            "log.retention.check.interval.ms=1000",
            "",
        ]
    )


def cluster_id() -> str:
    """A random KRaft cluster id (base64url of a UUID), never starting with '-': the storage tool's
    argument parser would read such an id as an option (Kafka's own Uuid.randomUuid() avoids it too;
    1 start in 64 failed before)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


class ApacheKafkaBroker:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``bootstrap`` is host:port."""

    engine = "apache-kafka"
    version = KAFKA_VERSION

    def __init__(self, port: int = 0, data_dir: str | Path | None = None, *, heap: str = "512m", log_level: str = "INFO") -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self._temp = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="streaming-lstm-kafka-"))
        self.heap = heap
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def description(self) -> str:
        return f"apache-kafka {self.version}"

    def _java(self, main: str, *args: str, conf: Path, background: bool) -> subprocess.Popen[bytes]:
        java = java_executable()
        try:
            classpath = os.pathsep.join(str(j) for j in require("kafka-broker"))
        except JarsError as exc:
            raise BrokerError(str(exc)) from None
        cmd = [java, f"-Xmx{self.heap}", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile=file:{conf}", "-cp", classpath, main, *args]
        out = open(self.data_dir / "broker.stdout", "ab")  # noqa: SIM115 - the child owns it
        try:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=background)
        finally:
            out.close()

    def start(self, timeout: float = 60.0) -> ApacheKafkaBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        conf_dir = self.data_dir / "config"
        conf_dir.mkdir(exist_ok=True)
        # The controller port is kept with the data: a restart on the same directory must find the
        # same quorum voters it was formatted with.
        ports = conf_dir / "controller.port"
        controller_port = int(ports.read_text()) if ports.exists() else free_port(self.host)
        ports.write_text(str(controller_port))
        props = conf_dir / "server.properties"
        props.write_text(_properties(self.port, controller_port, logs))
        log4j = conf_dir / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=self.log_file, level=self.log_level))
        if not (logs / "meta.properties").exists():
            fmt = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(props), conf=log4j, background=False)
            if fmt.wait(timeout) != 0:
                raise BrokerError(f"formatting the Kafka log directory {logs} failed (exit {fmt.returncode}): {self._tail()}")
        self.process = self._java("kafka.Kafka", str(props), conf=log4j, background=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise BrokerError(f"Apache Kafka exited with code {code} on port {self.port}: {self._tail()}")
            if wait_for_metadata(self.bootstrap, 1.0):
                return self
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Apache Kafka did not answer on {self.bootstrap} within {timeout:g} s: {self._tail()}")

    def _tail(self, lines: int = 5) -> str:
        text = ""
        for f in (self.log_file, self.data_dir / "broker.stdout"):
            if f.exists():
                text += f.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:]) or f"no log in {self.data_dir}"

    def kill(self) -> None:
        """``kill -9`` the broker (fault tests); the data directory is kept."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """A controlled shutdown (SIGTERM), SIGKILL after ``timeout``; a temporary directory is removed."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._temp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ApacheKafkaBroker:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
