"""A local Spark Connect server: ``python -m streaming_lstm.spark.connect_server --port N``.

Spark Connect is a plug-in of an ordinary Spark driver (``spark.plugins =
org.apache.spark.sql.connect.SparkConnectPlugin``), so the server is this project's usual session
(spark/session.py get_session: the Kafka connector's jars, the log4j settings, the venv's Python for the
workers) with the plug-in on, listening on loopback. ``demo --remote local`` and the ``connect``
tests start one as a separate process; clients reach it at ``sc://127.0.0.1:N``. A real deployment
runs Spark's own ``start-connect-server.sh`` instead; what the server needs for this trainer is in
the README ("Spark Connect").

The process prints ``ready sc://127.0.0.1:N`` once the port accepts connections and stops the
server on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from streaming_lstm.local.process import Service, free_port, listening

PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # read by the server for spark.connect.authenticate.token
READY = "ready "


def serve(port: int, master: str, conf: dict[str, str]) -> None:
    """Run the server in this process until SIGTERM/SIGINT."""
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark.session import get_session

    extra = {
        "spark.plugins": PLUGIN,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        **conf,
    }
    spark = get_session(SparkConfig(master=master, app_name="streaming-lstm-connect-server"), extra_conf=extra)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not listening("127.0.0.1", port):
        if stop.wait(0.1):
            break
    print(f"{READY}sc://127.0.0.1:{port}", flush=True)
    stop.wait()
    spark.stop()


class LocalServer(Service):
    """A server started by :func:`start` (a child process); :meth:`stop` ends it. In the caller's
    process group: a terminal's Ctrl-C reaches it as it reaches the client.

    It accepts only clients that present its token (Spark Connect's pre-shared key,
    ``spark.connect.authenticate.token``, handed over in the environment, never on a command line):
    :attr:`client_url` carries it (gRPC local credentials on ``localhost``: no TLS needed on loopback).
    """

    name = "the local Spark Connect server"
    start_timeout = 180.0
    own_session = False

    def __init__(self, master: str, port: int, conf: dict[str, str], log_path: str) -> None:
        self.master, self.port, self.conf, self._log = master, port, conf, Path(log_path)
        self.token = secrets.token_urlsafe(24)

    @property
    def url(self) -> str:
        """The server's address, to show (no token)."""
        return f"sc://localhost:{self.port}"

    @property
    def client_url(self) -> str:
        """What a client connects with: the address and the token."""
        return f"{self.url}/;token={self.token}"

    @property
    def log_file(self) -> Path:
        return self._log

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "streaming_lstm.spark.connect_server", "--port", str(self.port), "--master", self.master]
        return cmd + [a for key, value in self.conf.items() for a in ("--spark-conf", f"{key}={value}")]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}  # the server is a classic driver
        return {**env, TOKEN_ENV: self.token}

    def ready(self) -> bool:
        return any(line.startswith(READY) for line in self.new_log().splitlines())


def start(
    master: str = "local[2]", *, port: int | None = None, conf: dict[str, str] | None = None, timeout: float = 180.0, log_path: str | None = None
) -> LocalServer:
    """Start a local server as a child process and wait until it accepts connections.

    The server's output (its "ready" line, Spark's log, and what the server-side Python prints, such
    as the trainer's batch lines) goes to ``log_path`` (a temporary file if None): a pipe that
    nobody reads would fill up and stall the server.
    """
    import tempfile

    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="streaming-lstm-connect-", suffix=".log")
        os.close(fd)
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), mode=0o700, exist_ok=True)
    return LocalServer(master, port or free_port(), conf or {}, log_path).start(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_lstm.spark.connect_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=15002, help="gRPC port on 127.0.0.1 (default 15002, Spark Connect's)")
    parser.add_argument("--master", default="local[2]", help="Spark master of the server (default local[2])")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)")
    args = parser.parse_args(argv)
    conf = {}
    for item in args.spark_conf:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--spark-conf {item!r}: expected KEY=VALUE")
        conf[key] = value
    serve(args.port, args.master, conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
