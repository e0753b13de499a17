"""The driver JVM's class-data-sharing archive (streaming_lstm/spark/cds.py): offered only when
whole, and really mapped by a local session (scripts/setup.sh makes it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streaming_lstm.spark import cds

ROOT = Path(__file__).resolve().parent.parent


def offered(monkeypatch: pytest.MonkeyPatch, cache: Path) -> str:
    monkeypatch.setenv("STREAMING_LSTM_JARS", str(cache))
    monkeypatch.delenv(cds.RECORD_ENV, raising=False)
    monkeypatch.delenv(cds.CHECK_ENV, raising=False)
    return cds.java_options()


def test_an_archive_is_offered_only_at_the_size_it_was_checked_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert offered(monkeypatch, tmp_path) == ""  # none made
    path = cds.archive_path()
    assert path.is_relative_to(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 4096)
    assert offered(monkeypatch, tmp_path) == ""  # no size record: build() did not finish
    path.with_suffix(".json").write_text(json.dumps({"bytes": 4096}))
    assert offered(monkeypatch, tmp_path) == f"-XX:SharedArchiveFile={path} {cds.QUIET}"
    path.write_bytes(b"\0" * 1000)  # truncated: the JVM would crash mapping it
    assert offered(monkeypatch, tmp_path) == ""
    path.write_bytes(b"\0" * 4096)
    monkeypatch.setenv("STREAMING_LSTM_CDS", "0")
    assert cds.java_options() == ""


def test_the_archive_key_follows_the_java_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Another JDK gets another archive: a stale one is never offered."""
    monkeypatch.setenv("STREAMING_LSTM_JARS", str(tmp_path))
    before = cds.archive_path()
    fake = tmp_path / "jdk" / "bin"
    fake.mkdir(parents=True)
    shutil.copy(os.path.realpath(shutil.which("java") or "java"), fake / "java")
    monkeypatch.setenv("JAVA_HOME", str(fake.parent))
    assert cds.archive_path() != before


SESSION = "; ".join(
    [
        "from streaming_lstm.core.config import SparkConfig",
        "from streaming_lstm.spark.session import get_session",
        "print(get_session(SparkConfig()).range(5).count())",
    ]
)


def start_session(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (cds.RECORD_ENV, cds.CHECK_ENV, "STREAMING_LSTM_CDS")}
    return subprocess.run([sys.executable, "-c", SESSION], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=180)


@pytest.mark.spark
def test_a_local_session_maps_the_archive_setup_made() -> None:
    """With -Xshare:on a JVM refuses to start unless it maps its archives: the session starts (the
    archive fits this JVM and classpath), and an archive that is not there stops it (the check bites)."""
    path = cds.archive_path()
    assert cds.usable(path), f"no archive at {path}: scripts/setup.sh makes it (python -m streaming_lstm.spark.cds)"
    done = start_session({"JDK_JAVA_OPTIONS": "-Xshare:on"})
    assert done.returncode == 0 and done.stdout.strip().endswith("5"), done.stderr[-2000:]
    missing = start_session({"JDK_JAVA_OPTIONS": "-Xshare:on", cds.CHECK_ENV: str(path.with_name("missing.jsa"))})
    assert missing.returncode != 0
    assert "Unable to use shared archive" in missing.stdout + missing.stderr
