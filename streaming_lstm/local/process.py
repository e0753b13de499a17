"""One lifecycle for every local service: a child process started in its own session, watched until
it is ready, its log's tail quoted when it fails, stopped with SIGTERM (SIGKILL after a timeout),
usable as a context manager.

A subclass says what to run (:meth:`Service.command`), how to tell that it is ready
(:meth:`Service.ready`), and optionally what to prepare first and clean up after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self


class ServiceError(RuntimeError):
    """A local service is not installed, or did not start; the message has the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class Service:
    """A child process serving on loopback. Subclasses set ``name``, ``log_file`` and ``error``."""

    name: ClassVar[str] = "service"
    error: ClassVar[type[ServiceError]] = ServiceError
    start_timeout: ClassVar[float] = 60.0
    poll_interval: ClassVar[float] = 0.2
    # A service in its own session is not hit by a terminal's Ctrl-C; its owner stops it.
    own_session: ClassVar[bool] = True

    process: subprocess.Popen[bytes] | None = None
    # Every service started in this process and not stopped yet: what a hard exit must not orphan.
    running: ClassVar[weakref.WeakSet[Service]] = weakref.WeakSet()

    @classmethod
    def kill_running(cls) -> None:
        """``kill -9`` every service still running (a process about to ``os._exit``)."""
        for service in list(cls.running):
            service.kill()

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    @property
    def output_file(self) -> Path:
        """Where the process's stdout and stderr go (its log file unless it writes one itself)."""
        return self.log_file

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Called by :meth:`start` before the process is launched (write configuration files)."""

    def cleanup(self) -> None:
        """Called by :meth:`stop` after the process is gone (remove temporary directories)."""

    def env(self) -> dict[str, str] | None:
        return None

    def start(self, timeout: float | None = None) -> Self:
        timeout = self.start_timeout if timeout is None else timeout
        self.prepare()
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output_file, "ab") as out:
            self._log_start = out.tell()
            # stdin is a pipe kept open: some Java launchers exit when they read end-of-file.
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, start_new_session=self.own_session, env=self.env()
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise self.error(f"{self.name} exited with code {code}: {self.tail()}")
            if self.ready():
                Service.running.add(self)
                return self
            time.sleep(self.poll_interval)
        self.stop()
        raise self.error(f"{self.name} did not start within {timeout:g} s: {self.tail()}")

    def new_log(self) -> str:
        """What the process wrote to its output since this start."""
        if not self.output_file.exists():
            return ""
        with open(self.output_file, "rb") as f:
            f.seek(getattr(self, "_log_start", 0))
            return f.read().decode(errors="replace")

    def tail(self, lines: int = 8) -> str:
        text = "".join(f.read_text(errors="replace") for f in dict.fromkeys([self.log_file, self.output_file]) if f.exists())
        return " | ".join(text.strip().splitlines()[-lines:]) or f"nothing in its log {self.log_file}"

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        if self.own_session:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (to the whole process group of a service in its own session), SIGKILL after
        ``timeout``; then :meth:`cleanup`."""
        Service.running.discard(self)
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                self._signal(proc, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(10)
            except ProcessLookupError:
                pass
        if proc is not None and proc.stdin:
            proc.stdin.close()
        self.cleanup()

    def kill(self) -> None:
        """``kill -9`` the service (fault tests); nothing is cleaned up."""
        Service.running.discard(self)
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            self._signal(proc, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
