"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM), from the jars
that ``scripts/setup.sh`` fetched (:mod:`streaming_lstm.local.jvm_deps`).

What a started broker guarantees:

* It listens on loopback only (``127.0.0.1``), PLAINTEXT, on ``port`` (a free one by default); the
  controller listens on a second free loopback port.
* Its log directory is ``data_dir`` if given (formatted once, then reused: records survive a stop,
  a ``kill -9`` and a restart on the same directory) or a temporary directory removed at stop.
* :meth:`ApacheKafkaBroker.start` returns once the broker answers a metadata request, or raises
  :class:`BrokerError` naming the port and the tail of its log.
* The broker's own log (log4j) goes to ``<data_dir>/broker.log``, or ``log_file``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from streaming_lstm.local.jvm_deps import KAFKA_VERSION, JarsError, extra_java_options, java_executable, require
from streaming_lstm.local.kafka_security import SecureListener
from streaming_lstm.local.process import Service, ServiceError, free_port, listening


class BrokerError(ServiceError):
    """A local broker is not installed or did not start."""


def wait_for_metadata(bootstrap: str, timeout: float) -> bool:
    """True once a broker at ``bootstrap`` answers a metadata request within ``timeout`` seconds."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    if not listening(host, int(port), timeout):
        return False
    ms = max(200, int(timeout * 1000))
    try:
        consumer = KafkaConsumer(bootstrap_servers=[bootstrap], request_timeout_ms=max(ms, 1000), bootstrap_timeout_ms=ms)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        consumer.topics()
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        consumer.close()


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


def _listeners(node_port: int, controller_port: int, secure: SecureListener | None) -> list[str]:
    if secure is not None:
        return secure.server_properties(node_port, controller_port)
    return [
        f"listeners=PLAINTEXT://127.0.0.1:{node_port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{node_port}",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    ]


def _properties(node_port: int, controller_port: int, log_dir: Path, secure: SecureListener | None = None) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            "controller.listener.names=CONTROLLER",
            *_listeners(node_port, controller_port, secure),
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


class ApacheKafkaBroker(Service):
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``bootstrap`` is host:port."""

    engine = "apache-kafka"
    version = KAFKA_VERSION
    name = "Apache Kafka"
    error = BrokerError

    def __init__(self, port: int = 0, data_dir: str | Path | None = None, *, heap: str = "512m", log_level: str = "INFO", secure: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self._temp = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="streaming-lstm-kafka-"))
        self.heap = heap
        self.log_level = log_level
        # SASL_SSL on ``port`` (kafka_security.py); its credentials are made anew for each broker.
        self.secure = SecureListener(free_port(self.host), conf_dir=self.data_dir / "config") if secure else None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def output_file(self) -> Path:
        return self.data_dir / "broker.stdout"

    @property
    def description(self) -> str:
        return f"apache-kafka {self.version}" + (" (SASL_SSL)" if self.secure is not None else "")

    @property
    def _conf_dir(self) -> Path:
        return self.data_dir / "config"

    def _java(self, main: str, *args: str) -> list[str]:
        try:
            classpath = os.pathsep.join(str(j) for j in require("kafka-broker"))
        except JarsError as exc:
            raise BrokerError(str(exc)) from None
        log4j = self._conf_dir / "log4j2.properties"
        options = [f"-Xmx{self.heap}", "-XX:+UseG1GC", *extra_java_options(), f"-Dlog4j2.configurationFile=file:{log4j}"]
        return [java_executable(), *options, "-cp", classpath, main, *args]

    def prepare(self) -> None:
        """Write the broker's settings and format its log directory the first time."""
        logs = self.data_dir / "logs"
        self._conf_dir.mkdir(parents=True, exist_ok=True)
        # The controller port is kept with the data: a restart on the same directory must find the
        # same quorum voters it was formatted with.
        ports = self._conf_dir / "controller.port"
        controller_port = int(ports.read_text()) if ports.exists() else free_port(self.host)
        ports.write_text(str(controller_port))
        if self.secure is not None:
            self.secure.make_certificate()
        (self._conf_dir / "server.properties").write_text(_properties(self.port, controller_port, logs, self.secure))
        (self._conf_dir / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file, level=self.log_level))
        if not (logs / "meta.properties").exists():
            fmt = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(self._conf_dir / "server.properties"))
            fmt += self.secure.format_args() if self.secure is not None else []
            with open(self.output_file, "ab") as out:
                code = subprocess.run(fmt, stdout=out, stderr=subprocess.STDOUT).returncode
            if code != 0:
                raise BrokerError(f"formatting the Kafka log directory {logs} failed (exit {code}): {self.tail(5)}")

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self._conf_dir / "server.properties"))

    def ready(self) -> bool:
        # A secured broker answers its own, internal listener without credentials.
        return wait_for_metadata(f"{self.host}:{self.secure.internal_port}" if self.secure else self.bootstrap, 1.0)

    @property
    def client_options(self) -> dict[str, str]:
        """What a client passes to reach this broker (``--kafka-option`` form); none for PLAINTEXT."""
        return self.secure.client_options() if self.secure is not None else {}

    def cleanup(self) -> None:
        """A temporary data directory is removed; a given one is kept."""
        if self._temp:
            shutil.rmtree(self.data_dir, ignore_errors=True)
