"""Event mode on a single series: no entity column, sub-second event times (ISO with milliseconds,
and epoch seconds with a fraction) arriving across files, configured by ``init-config --events``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.spark]

HZ = 50  # 20 ms between events
PER_FILE = 200


def signal(k: int) -> float:
    return math.sin(2 * math.pi * k / 37) + 0.3 * math.sin(2 * math.pi * k / 11)


def iso(seconds: float) -> str:
    whole = int(seconds)
    return f"1970-01-01 00:{whole // 60:02d}:{whole % 60:02d}.{round((seconds - whole) * 1000):03d}"


def write_files(incoming: Path) -> None:
    """Three files of 200 events each: ISO times with milliseconds in the first two, epoch seconds
    with a fraction in the third; each file a later modification time (the file source's order)."""
    for f in range(3):
        lines = ["time,value"]
        for k in range(f * PER_FILE, (f + 1) * PER_FILE):
            t = k / HZ
            lines.append(f"{iso(t) if f < 2 else f'{t:.3f}'},{signal(k):.5f}")
        path = incoming / f"part-{f}.csv"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (1_000_000 + f, 1_000_000 + f))


def test_a_single_series_with_millisecond_times_trains_through_the_file_source(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_files(incoming)
    conf = tmp_path / "sensor.toml"
    cli = [sys.executable, "-m", "streaming_lstm.cli"]
    proposed = subprocess.run(
        [*cli, "init-config", "--data", str(incoming / "part-0.csv"), "--events", "--time", "time", "--targets", "value",
         "--timesteps", "8", "--out", str(conf)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proposed.returncode == 0, proposed.stderr[-2000:]
    text = conf.read_text()
    assert 'mode = "events"' in text and "entity" not in text, text
    ck = tmp_path / "ck"
    run = subprocess.run(
        [*cli, "train", "--source", "file", "--path", str(incoming), "--checkpoint", str(ck), "--conf", str(conf),
         "--trigger", "0s", "--idle-timeout", "5", "--set", "spark.conf={\"spark.sql.shuffle.partitions\" = \"2\"}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    history = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_dead"] for m in history) == 0, [m.get("dead_reasons") for m in history]
    # One series in time order: windows of 8 + 1 events, stride 1, over 600 events, whatever file
    # (and time format) each event came in.
    assert sum(m["rows_valid"] for m in history) == 3 * PER_FILE - 8
    assert len(history) == 3 and all("prequential_mae" in m for m in history)
    summary = next(line for line in run.stdout.splitlines() if line.startswith("stopped ("))
    assert "skill" in summary and "windows trained" in summary, summary
