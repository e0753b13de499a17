"""A local Spark Connect server: ``python -m streaming_lstm.connect_server --port N``.

Spark Connect is a plug-in of an ordinary Spark driver (``spark.plugins =
org.apache.spark.sql.connect.SparkConnectPlugin``), so the server is this project's usual session
(spark_session.get_session: the Kafka connector's jars, the log4j settings, the venv's Python for the
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
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
READY = "ready "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve(port: int, master: str, conf: dict[str, str]) -> None:
    """Run the server in this process until SIGTERM/SIGINT."""
    from streaming_lstm.config import SparkConfig
    from streaming_lstm.spark_session import get_session

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
    while not _listening(port):
        if stop.wait(0.1):
            break
    print(f"{READY}sc://127.0.0.1:{port}", flush=True)
    stop.wait()
    spark.stop()


@dataclass
class LocalServer:
    """A server started by :func:`start` (a child process); :meth:`stop` ends it."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: str

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    master: str = "local[2]", *, port: int | None = None, conf: dict[str, str] | None = None, timeout: float = 180.0, log_path: str | None = None
) -> LocalServer:
    """Start a local server as a child process and wait until it accepts connections.

    The server's output (its "ready" line, Spark's log, and what the server-side Python prints, such
    as the trainer's batch lines) goes to ``log_path`` (a temporary file if None): a pipe that
    nobody reads would fill up and stall the server.
    """
    import tempfile

    port = port or free_port()
    cmd = [sys.executable, "-m", "streaming_lstm.connect_server", "--port", str(port), "--master", master]
    for key, value in (conf or {}).items():
        cmd += ["--spark-conf", f"{key}={value}"]
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="streaming-lstm-connect-", suffix=".log")
        os.close(fd)
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}  # the server is a classic driver
    with open(log_path, "ab") as out:
        start_at = out.tell()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with open(log_path, "rb") as f:
            f.seek(start_at)
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith(READY):
                    return LocalServer(process, line[len(READY) :].strip(), log_path)
        time.sleep(0.2)
    code = process.poll()
    if code is None:
        process.kill()
        process.wait()
    raise RuntimeError(f"the local Spark Connect server did not start within {timeout:g} s (exit code {code}); its log: {log_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_lstm.connect_server", description=__doc__.split("\n\n")[0])
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
