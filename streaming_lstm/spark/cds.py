"""A class-data-sharing archive for the local driver JVM: Spark's classes mapped from one file
instead of read from jars, parsed and verified at every start.

A local run's JVM loads about ten thousand classes before its first batch is applied; that is most
of the seconds a ``train`` spends before its Python workers start. JDK 17 can record the classes
one run loaded into a dynamic archive (``-XX:ArchiveClassesAtExit``) and map them at later starts
(``-XX:SharedArchiveFile``). :func:`build` makes that archive by running a real one-batch ``train``
in a child process with the recording on (``scripts/setup.sh`` calls it; about 40 s, once per
machine); :func:`java_options` hands the archive to every later local session. Measured with
``python -m bench coldstart`` (README).

The archive is keyed by the Java runtime and PySpark's jars and their place (:func:`archive_path`):
another JDK, PySpark or virtual environment uses another file, so a stale archive is never offered. The JVM validates it anyway and,
where it does not fit, starts without it (``-Xshare:auto``, its default). Local mode only: under
spark-submit and on a cluster the JVMs are started by others. ``STREAMING_LSTM_CDS=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from streaming_lstm.local.jvm_deps import cache_dir, java_executable, pyspark_jars_dir, pyspark_version

RECORD_ENV = "STREAMING_LSTM_CDS_RECORD"  # set in build()'s first child: the path to record the archive to
CHECK_ENV = "STREAMING_LSTM_CDS_CHECK"  # set in build()'s second child: the recorded archive to start with
CHECK = "from streaming_lstm.core.config import SparkConfig; from streaming_lstm.spark.session import get_session; get_session(SparkConfig()).range(3).count()"
QUIET = "-Xlog:cds=off,cds+dynamic=off"  # the JVM's CDS notes (classes it cannot archive) are not the user's business
ROWS = "\n".join(f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{i % 2}" for i in range(40))
CONF = """[data]
columns = ["x1", "x2", "y"]
features = ["x1", "x2"]
label = "y"
classes = ["0", "1"]

[model]
timesteps = 2
features_per_step = 1
hidden = [8]
"""


def enabled() -> bool:
    return os.environ.get("STREAMING_LSTM_CDS", "1") != "0"


def archive_path() -> Path:
    """Where this machine's archive for this Java runtime and PySpark lives (it may not exist)."""
    java = Path(os.path.realpath(java_executable()))
    jars_dir = pyspark_jars_dir()  # the archive records the classpath: its place as well as its jars
    stat = java.stat() if java.exists() else None
    key = "\n".join([str(java), str(stat.st_mtime_ns if stat else 0), pyspark_version(), str(jars_dir), *sorted(p.name for p in jars_dir.glob("*.jar"))])
    return cache_dir() / "cds" / f"spark-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"


def usable(path: Path) -> bool:
    """The archive exists at the size :func:`build` checked it at. Why the size: the JVM maps the
    file without reading it, and a truncated archive crashes it (SIGBUS) instead of being skipped."""
    try:
        return path.stat().st_size == json.loads(path.with_suffix(".json").read_text())["bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def java_options() -> str:
    """JVM options for a local driver: record the archive (build()'s child), map it, or nothing."""
    if not enabled():
        return ""
    if os.environ.get(RECORD_ENV):
        return f"-XX:ArchiveClassesAtExit={os.environ[RECORD_ENV]} {QUIET}"
    path = Path(os.environ.get(CHECK_ENV) or archive_path())
    return f"-XX:SharedArchiveFile={path} {QUIET}" if os.environ.get(CHECK_ENV) or usable(path) else ""


def build(*, force: bool = False, say: bool = True) -> Path | None:
    """Make the archive unless it exists: a one-batch ``train`` in a child JVM records it, a second
    child starts a session with it; only then is it moved into place, with its size beside it.

    Returns its path, or None (with a note) when it could not be made: the project runs without it.
    """
    path = archive_path()
    if usable(path) and not force:
        if say:
            print(f"cds: {path} ({path.stat().st_size / 1e6:.0f} MB) exists", file=sys.stderr, flush=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    recorded = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            (base / "in").mkdir()
            (base / "in" / "rows.csv").write_text(ROWS + "\n")
            (base / "conf.toml").write_text(CONF)
            argv = ["train", "--conf", str(base / "conf.toml"), "--source", "file", "--path", str(base / "in"), "--checkpoint", str(base / "ck")]
            child([sys.executable, "-m", "streaming_lstm.cli", *argv, "--max-batches", "1"], {RECORD_ENV: str(recorded)}, "recording")
        if not recorded.exists():
            raise RuntimeError("the JVM wrote no archive at exit")
        # -Xshare:on: the JVM must map the archive or refuse to start, not quietly start without it.
        child([sys.executable, "-c", CHECK], {CHECK_ENV: str(recorded), "JDK_JAVA_OPTIONS": "-Xshare:on"}, "starting with it")
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        recorded.unlink(missing_ok=True)
        print(f"cds: no archive made ({err}); Spark starts without one", file=sys.stderr, flush=True)
        return None
    path.unlink(missing_ok=True)
    recorded.rename(path)
    path.with_suffix(".json").write_text(json.dumps({"bytes": path.stat().st_size}))  # written last: usable() from here on
    if say:
        print(f"cds: {path} ({path.stat().st_size / 1e6:.0f} MB) made", file=sys.stderr, flush=True)
    return path


def child(argv: list[str], env: dict[str, str], what: str) -> None:
    """Run one step of :func:`build`; RuntimeError with its last lines when it fails."""
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise RuntimeError(f"{what} exited {done.returncode}: {tail}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m streaming_lstm.spark.cds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="make it again even if it exists")
    p.add_argument("--path", action="store_true", help="print the archive's path and exit")
    args = p.parse_args(argv)
    if args.path:
        print(archive_path())
        return 0
    build(force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
