"""A fresh local session's start-up: the Python daemon imported ahead of time (spark/zygote.py),
whose workers fork from the zygote with the environment Spark gave the daemon (an environment that
differs where the imports read it makes the launched daemon import for itself), and the driver
JVM's JIT settings (local/jvm_deps.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streaming_lstm.spark import zygote

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import pandas as pd
    from streaming_lstm.core.config import SparkConfig
    from streaming_lstm.spark import session

    def probe(frames):
        for _ in frames:
            pass
        yield pd.DataFrame({"info": [json.dumps({
            "ppid": os.getppid(), "pid": os.getpid(), "socket_dir": os.environ.get("PYTHON_WORKER_FACTORY_SOCK_DIR"),
            "tf": "tensorflow" in sys.modules, "tf2": os.environ.get("TF2_BEHAVIOR"),
            "hash_randomization": sys.flags.hash_randomization, "omp": os.environ.get("OMP_NUM_THREADS"),
            "unix_sockets": os.environ.get("PYTHON_UNIX_DOMAIN_ENABLED", "").lower(),
        })]})

    spark = session.get_session(SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false"}))
    rows = spark.range(2).repartition(2).mapInPandas(probe, "info string").collect()
    zygotes = [z.pid for z in session._zygotes]
    jvm = [str(a) for a in spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()]
    spark.stop()
    print("RESULT " + json.dumps({"zygotes": zygotes, "workers": [json.loads(r.info) for r in rows], "jvm": jvm}))
    """
)


def run_probe(**env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env={**os.environ, "PYSPARK_PYTHON": sys.executable, **env}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, object] = json.loads(line[len("RESULT ") :])
    result["stderr"] = out.stderr
    return result


@pytest.mark.spark
def test_a_fresh_session_s_workers_fork_from_the_zygote_with_spark_s_environment() -> None:
    result = run_probe()
    zygotes, workers = result["zygotes"], result["workers"]
    assert isinstance(zygotes, list) and len(zygotes) == 1
    assert isinstance(workers, list) and len(workers) == 2
    for w in workers:
        assert w["ppid"] == zygotes[0], f"worker {w} was not forked by the zygote {zygotes[0]}"
        assert w["socket_dir"], "the daemon took Spark's environment (the directory of its Unix sockets)"
        assert w["tf"] and w["tf2"] == "1", "TensorFlow imported before the fork, with what its import set"
        assert w["hash_randomization"] == 0 and w["omp"] == "1", "started with the hash seed and threads Spark gives workers"
        assert w["unix_sockets"] == "true", "the JVM reaches its workers over Unix domain sockets (session.py)"
    assert "refused" not in str(result["stderr"])


@pytest.mark.spark
def test_a_local_driver_compiles_with_c2_late_and_the_user_s_options_win() -> None:
    """jvm_deps.LATE_C2 in the driver JVM's arguments, before ``$STREAMING_LSTM_JAVA_OPTIONS``
    (the JVM takes an option's last value)."""
    from streaming_lstm.local.jvm_deps import JAVA_OPTIONS_ENV, LATE_C2

    result = run_probe(**{JAVA_OPTIONS_ENV: "-XX:Tier4InvocationThreshold=7000"})
    jvm = result["jvm"]
    assert isinstance(jvm, list) and all(option in jvm for option in LATE_C2), jvm
    assert jvm.index("-XX:Tier4InvocationThreshold=7000") > jvm.index(LATE_C2[0])


@pytest.mark.spark
def test_zygotes_off_the_workers_fork_from_the_daemon_spark_launched() -> None:
    result = run_probe(**{zygote.ENV: zygote.OFF})
    assert result["zygotes"] == []
    workers = result["workers"]
    assert isinstance(workers, list) and all(w["socket_dir"] and w["unix_sockets"] == "true" and w["tf"] for w in workers)


def test_a_daemon_whose_import_time_environment_differs_imports_itself(tmp_path: Path) -> None:
    """A zygote started with one OMP_NUM_THREADS refuses a daemon launched with another: the
    daemon's hand_over answers None (it imports for itself) and says why."""
    env = {k: v for k, v in os.environ.items() if k != zygote.ENV}
    starter = textwrap.dedent(
        """
        import os, subprocess, sys
        from streaming_lstm.spark import zygote
        proc = zygote.start("1")
        daemon_env = {**os.environ, "OMP_NUM_THREADS": "3", "PYTHONHASHSEED": "0"}
        code = "from streaming_lstm.spark import zygote; print('HANDED', zygote.hand_over())"
        out = subprocess.run([sys.executable, "-c", code], env=daemon_env, capture_output=True, text=True, timeout=120)
        print(out.stdout.strip()); print(out.stderr.strip(), file=sys.stderr)
        print("ZYGOTE_EXIT", proc.wait(timeout=60))
        """
    )
    out = subprocess.run([sys.executable, "-c", starter], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HANDED None" in out.stdout and "ZYGOTE_EXIT 0" in out.stdout, out
    assert "environment differs in OMP_NUM_THREADS);" in out.stderr


def test_which_variables_must_agree() -> None:
    mine = {"PATH": "/a", "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "SPARK_REUSE_WORKER": "1"}
    theirs = {**mine, "PATH": "/b", "SPARK_REUSE_WORKER": "0", "PYTHON_WORKER_FACTORY_SECRET": "s", zygote.ENV: "/tmp/x"}
    assert zygote.differing(mine, theirs) == []
    assert zygote.differing(mine, {**theirs, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONHASHSEED": "1"}) == ["PYTHONHASHSEED", "TF_CPP_MIN_LOG_LEVEL"]
    assert zygote.differing(mine, {k: v for k, v in theirs.items() if k != "OMP_NUM_THREADS"}) == ["OMP_NUM_THREADS"]


def test_a_daemon_that_loses_the_race_for_its_socket_file_stops_its_workers_quietly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Spark's daemon removes its Unix socket file as it stops while the exiting JVM deletes it:
    that FileNotFoundError ends the daemon like its own stop (SIGHUP to its workers, no traceback);
    any other missing file is still an error."""
    import signal

    from pyspark import daemon as spark_daemon

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(zygote.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setenv("PYTHON_WORKER_FACTORY_SOCK_DIR", str(tmp_path))
    gone = str(tmp_path / ".daemon.sock")

    def lost_race() -> None:
        raise FileNotFoundError(2, "No such file or directory", gone)

    monkeypatch.setattr(spark_daemon, "manager", lost_race)
    spark_worker = spark_daemon.worker
    assert zygote.run_manager() == 0
    assert spark_daemon.worker is spark_worker  # Spark's own again once the loop ended
    assert sent == [(0, signal.SIGHUP)]

    def other() -> None:
        raise FileNotFoundError(2, "No such file or directory", "/elsewhere/model.npz")

    monkeypatch.setattr(spark_daemon, "manager", other)
    with pytest.raises(FileNotFoundError):
        zygote.run_manager()

    def stopped() -> None:
        raise SystemExit(1)

    monkeypatch.setattr(spark_daemon, "manager", stopped)
    assert zygote.run_manager() == 1 and len(sent) == 1


def test_a_worker_whose_jvm_went_away_mid_write_ends_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a Unix socket, a task the JVM stopped fails its last flush with EPIPE: the worker
    ends (a non-zero code: not reused) instead of raising into the daemon's traceback."""
    from pyspark import daemon as spark_daemon

    def broken(sock: object, authenticated: bool) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fork_loop() -> None:  # what manager's forked child does with each task's connection
        raise SystemExit(spark_daemon.worker(None, True) + 40)

    monkeypatch.setattr(spark_daemon, "worker", broken)
    monkeypatch.setattr(spark_daemon, "manager", fork_loop)
    assert zygote.run_manager() == 41
