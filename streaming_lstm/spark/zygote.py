"""A Python worker daemon imported ahead of time, while the JVM starts.

A local session's Python daemon (spark/daemon.py) imports TensorFlow, pandas, Arrow and Spark's
worker module before it forks the workers: several seconds of CPU that Spark only starts once the
driver JVM is up and runs its first Python task. The *zygote* does those imports in a process
started next to the JVM (:func:`start`, from spark/session.py), so the two overlap. When Spark then
launches the daemon module, the daemon hands its standard streams, environment, working
directory and arguments to the waiting zygote (:func:`hand_over`), which takes them and runs
Spark's daemon loop as that daemon; the launched process stays as a stub that forwards Spark's
SIGTERM and exits with the daemon's exit code.

Contracts:

* One zygote serves one daemon, of the process that started it and only while that process lives
  (:data:`LIFETIME` at most); the socket is in a private directory (mode 0700).
* What the imports may have read from the environment must be what Spark gives the daemon:
  a variable in :data:`IMPORT_TIME` (or with a prefix of :data:`IMPORT_PREFIXES`) that differs
  refuses the hand-over, and so does any failure: the launched daemon then imports everything
  itself, as without a zygote. A zygote is never required, only faster.
* ``PYTHONHASHSEED`` is fixed when an interpreter starts: the zygote starts with the one Spark
  gives its workers (PySpark's ``"0"`` unless the driver's environment sets one).

Imports the standard library; :func:`preload` imports what the daemon's workers use.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

ENV = "STREAMING_LSTM_ZYGOTE"  # the socket's path, in the environment the JVM and the daemon inherit
OFF = "0"  # ENV's value that turns zygotes off
LIFETIME = 600.0  # seconds a zygote waits for its daemon before it exits
ANSWER_WITHIN = 120.0  # seconds a launched daemon waits for the zygote's imports before importing itself
IMPORT_TIME = ("PYTHONHASHSEED", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LD_PRELOAD", "LD_LIBRARY_PATH")
IMPORT_PREFIXES = ("TF_", "XLA_", "CUDA_", "ARROW_", "STREAMING_LSTM_")


# What every worker imports before its first task (about 0.5 s of CPU each): Spark's worker module
# and its Arrow and pandas serialisers; then TensorFlow, through the training module (optional: a
# worker that needs it says so when it imports it).
PRELOAD = ("pandas", "pyarrow", "pyspark.daemon", "pyspark.worker", "pyspark.sql.pandas.serializers")
PRELOAD_OPTIONAL = ("streaming_lstm.core.training",)  # TensorFlow, without its eager Keras (core/tf_import.py)
# Set to "0" where the driver trains (trainer/planned.py's driver_may_train): the workers then parse
# and key only, and the JVM's start does not share the CPU with a third TensorFlow import.
WORKERS_TF = "STREAMING_LSTM_WORKERS_TF"


def preload() -> None:
    """Import what the daemon's workers import, then freeze those objects out of the collector
    (spark/daemon.py says why). Starts no thread that a fork would lose."""
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_OPTIONAL if os.environ.get(WORKERS_TF) != "0" else ():
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()


def start(omp_threads: str = "1") -> subprocess.Popen[bytes] | None:
    """Start a zygote for the next daemon this process's JVM launches; None where it cannot start.

    ``omp_threads``: the ``OMP_NUM_THREADS`` Spark gives its Python workers (``spark.task.cpus``
    unless the executor environment sets it), read by numpy's BLAS when the zygote imports it.
    """
    if os.environ.get(ENV) == OFF:
        return None
    folder = tempfile.mkdtemp(prefix="streaming-lstm-zygote-")  # mode 0700
    path = os.path.join(folder, "daemon.sock")
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"), "OMP_NUM_THREADS": omp_threads}
    env.pop(ENV, None)
    # Bound and listening here, before the zygote starts: a daemon that connects early waits for
    # the zygote's imports instead of importing for itself.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streaming_lstm.spark.zygote", str(server.fileno()), str(os.getpid())],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=[server.fileno()],
                process_group=0,  # not in the terminal's group: Ctrl-C reaches the driver, which stops the session
            )
        except OSError:
            return None
    os.environ[ENV] = path
    return proc


def hand_over() -> int | None:
    """In the daemon Spark launched: the daemon's exit code once the zygote ran it, or None (no
    zygote, or it refused: the caller imports and runs the daemon itself)."""
    path = os.environ.get(ENV, OFF)
    if path == OFF:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    with conn:
        payload = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv, "path": sys.path}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(payload))], [0, 1, 2])
        conn.sendall(payload)
        reader = conn.makefile("r")
        conn.settimeout(ANSWER_WITHIN)
        try:
            answer = json.loads(reader.readline() or "{}")
        except TimeoutError:
            answer = {"refused": f"no answer within {ANSWER_WITHIN:.0f} s"}
        conn.settimeout(None)
        if "pid" not in answer:
            print(f"streaming-lstm: the prepared daemon refused ({answer.get('refused', 'no answer')}); importing here", file=sys.stderr, flush=True)
            return None
        pid = int(answer["pid"])
        signal.signal(signal.SIGTERM, lambda *_: _forward(pid, signal.SIGTERM))
        final = json.loads(reader.readline() or '{"exit": 1}')  # EOF: the zygote died without saying
        return int(final.get("exit", 1))


def _forward(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def differing(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """The import-time variables whose values differ between two environments."""
    keys = set(mine) | set(theirs)
    return sorted(k for k in keys if (k in IMPORT_TIME or k.startswith(IMPORT_PREFIXES)) and k != ENV and mine.get(k) != theirs.get(k))


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    (size,) = struct.unpack("!I", head)
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the daemon hung up during the hand-over")
        data += chunk
    return json.loads(data), fds


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """Take the launched daemon's streams, environment, directory and arguments."""
    sys.stdout.flush()
    sys.stderr.flush()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = list(request["argv"])
    sys.path[:0] = [p for p in request["path"] if p not in sys.path]


def _accept(server: socket.socket, parent: int) -> socket.socket | None:
    """The daemon's connection, or None once the parent is gone or :data:`LIFETIME` passed."""
    path = server.getsockname()
    server.settimeout(0.5)
    deadline = time.monotonic() + LIFETIME
    try:
        while time.monotonic() < deadline and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                conn.settimeout(None)
                return conn
        return None
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(os.path.dirname(path))


def serve(listening: int, parent: int) -> int:
    """The zygote: import what the daemon imports, wait for it, run Spark's daemon loop as it."""
    started_with = dict(os.environ)
    server = socket.socket(fileno=listening)
    preload()
    conn = _accept(server, parent)
    if conn is None:
        return 0
    with conn:
        os.register_at_fork(after_in_child=conn.close)  # the workers this daemon forks do not hold it
        request, fds = _receive(conn)
        bad = differing(started_with, request["env"])
        if bad:
            conn.sendall((json.dumps({"refused": f"environment differs in {', '.join(bad)}"}) + "\n").encode())
            for fd in fds:
                os.close(fd)
            return 0
        set_by_imports = {k: v for k, v in os.environ.items() if k not in started_with}  # TensorFlow's TF2_BEHAVIOR, ...
        conn.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())  # first: a daemon that gave up makes this fail
        _become({**request, "env": {**set_by_imports, **request["env"]}}, fds)
        code = 1
        try:
            code = run_manager()
        finally:
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps({"exit": code}) + "\n").encode())
        return code


def run_manager() -> int:
    """Spark's daemon loop (``pyspark.daemon.manager``) to its exit code, its workers quiet when
    the JVM goes away mid-task.

    Why the ``FileNotFoundError``: over Unix domain sockets, Spark's daemon removes its socket file
    as it stops (if it exists, then remove) while the stopping JVM deletes the same file at exit;
    losing that race raised out of the daemon, a traceback in the driver's output. The stop then
    ends as Spark's does: SIGHUP to the daemon's process group stops the workers."""
    from pyspark import daemon as spark_daemon

    spark_worker = spark_daemon.worker

    def worker(sock: socket.socket, authenticated: bool) -> int:
        # Over a Unix socket a write to a peer that has gone raises at once (EPIPE), where loopback
        # TCP usually took it: a task the JVM stopped (a query's stop, a killed task) made its
        # worker print a traceback into the driver's output. The worker ends all the same.
        try:
            result: int = spark_worker(sock, authenticated)
            return result
        except (BrokenPipeError, ConnectionResetError):
            return 1

    spark_daemon.worker = worker  # what the daemon's fork loop calls for every task
    try:
        spark_daemon.manager()
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except FileNotFoundError as gone:
        folder = os.environ.get("PYTHON_WORKER_FACTORY_SOCK_DIR")
        if not folder or not str(gone.filename or "").startswith(folder):
            raise
        os.kill(0, signal.SIGHUP)  # the daemon ignores it (manager), its workers stop
        return 0
    finally:
        spark_daemon.worker = spark_worker


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
