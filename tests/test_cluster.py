"""The trainer under spark-submit on a real standalone cluster on this machine, storage on HDFS.

The commands are docs/cluster.md's (the block after ``<!-- cluster-commands``), run line by line with
free ports, the HDFS fixture and temporary directories swapped in: a Spark standalone Master and
two Workers started with ``bin/spark-class`` (separate JVMs, one core each), the package as a zip in
``--py-files``, input and checkpoint on ``hdfs://``. One Worker is killed mid-stream.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streaming_lstm.local.process import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster, pytest.mark.hdfs, pytest.mark.faults]
BATCHES = 6


def readme_commands() -> list[str]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = re.search(r"<!-- cluster-commands[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/cluster.md has no cluster-commands block"
    return [line for line in block.group(1).splitlines() if line.strip()]


class Commands:
    """Runs the README's lines: ``export`` sets the environment, ``... &`` starts a service."""

    def __init__(self, replace: dict[str, str], logs: Path) -> None:
        self.replace = replace
        self.env = dict(os.environ)
        for key in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):  # spark-submit must get them from the command
            self.env.pop(key, None)
        self.services: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.logs = logs

    def argv(self, line: str) -> list[str]:
        for old, new in self.replace.items():
            line = line.replace(old, new)
        return shlex.split(line)

    def run(self, line: str, extra: list[str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str] | None:
        if line.startswith("export "):
            for item in self.argv(line)[1:]:
                key, _, value = item.partition("=")
                self.env[key] = value
            return None
        if line.rstrip().endswith("&"):
            log = self.logs / f"service-{len(self.services)}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(self.argv(line.rstrip()[:-1]), cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.services.append((proc, log))
            return None
        return subprocess.run([*self.argv(line), *(extra or [])], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def signal(self, index: int, sig: signal.Signals) -> None:
        os.killpg(self.services[index][0].pid, sig)

    def kill(self, index: int) -> None:
        """``kill -9`` a service's process group: a Worker with its executor JVM and Python workers."""
        proc, _ = self.services[index]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc, _ in reversed(self.services):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


@pytest.fixture
def commands(hdfs: Any, tmp_path: Path) -> Iterator[tuple[Commands, str]]:
    from pyspark.find_spark_home import _find_spark_home

    base = f"{hdfs.uri}/cluster-{uuid.uuid4().hex[:8]}"
    ports = {p: str(free_port("127.0.0.1")) for p in ("7077", "8080", "8081", "8082")}
    replace = {
        "$(python -c 'from pyspark.find_spark_home import _find_spark_home; print(_find_spark_home())')": _find_spark_home(),
        "$(which python)": sys.executable,
        "$SPARK_HOME": _find_spark_home(),
        "python -m zipfile": f"{sys.executable} -m zipfile",
        "/etc/hadoop/conf": str(hdfs.conf_dir),
        "hdfs://NAMENODE:8020/streaming-lstm": base,
        "/tmp/spark-worker-": str(tmp_path / "worker-"),
        "streaming_lstm.zip": str(tmp_path / "streaming_lstm.zip"),
        **{f":{p}": f":{q}" for p, q in ports.items()},
        **{f"-port {p}": f"-port {q}" for p, q in ports.items()},
    }
    cmds = Commands(replace, tmp_path)
    try:
        yield cmds, base
    finally:
        cmds.stop()


def wait_for(what: str, check: Any, timeout: float, cmds: Commands) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-1500:]}" for _, log in cmds.services)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def rest(ui_port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/applications{path}", timeout=2) as r:
        return json.load(r)


def running_training_tasks(ui_port: int) -> list[tuple[str, str]]:
    """(task URL path, executor id) of each running "score and train" task, from the driver's REST API."""
    try:
        app = rest(ui_port, "")[0]["id"]
        tasks = []
        for stage in rest(ui_port, f"/{app}/stages?status=active"):
            if "score and train" in (stage.get("description") or ""):
                path = f"/{app}/stages/{stage['stageId']}/{stage['attemptId']}/taskList?status=RUNNING"
                tasks += [(f"{path}#{t['taskId']}", t["executorId"]) for t in rest(ui_port, path)]
        return tasks
    except (OSError, ValueError, IndexError, KeyError):
        return []


def still_running(ui_port: int, task: str) -> bool:
    path, _, task_id = task.partition("#")
    try:
        return any(str(t["taskId"]) == task_id for t in rest(ui_port, path))
    except (OSError, ValueError, KeyError):
        return False


def kill_a_worker_mid_task(ui_port: int, work_dirs: list[Path], cmds: Commands, timeout: float = 300) -> int:
    """``kill -9`` a Worker while its executor runs a training task; returns the Worker's service index.

    Why the SIGSTOP: polling for a busy executor and then killing it raced the end of one-second
    tasks (CI once killed a Worker between tasks). So the Worker's whole process group is frozen
    first; if the driver still lists the task as running half a second later, it cannot finish any
    more and the kill lands mid-task; otherwise the Worker is thawed and the search goes on. A
    Worker's ``--work-dir`` holds ``app-ID/EXECUTOR-ID/``: that maps an executor to its Worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task, executor in running_training_tasks(ui_port):
            app = task.split("/")[1]
            worker = next((i + 1 for i, w in enumerate(work_dirs) if (w / app / executor).is_dir()), None)
            if worker is None:  # services: the Master, then the Workers
                continue
            cmds.signal(worker, signal.SIGSTOP)
            time.sleep(0.5)
            if still_running(ui_port, task):
                cmds.kill(worker)
                return worker
            cmds.signal(worker, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("no executor ever ran a training task")


def test_spark_submit_to_a_standalone_cluster_on_hdfs_survives_a_killed_worker(
    spark: Any, hdfs: Any, commands: tuple[Commands, str], iris_lines: list[str], iris_csv: Path, tmp_path: Path
) -> None:
    from streaming_lstm.commands.standalone import evaluate
    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.storage.fs import filesystem, join
    from streaming_lstm.storage.metrics import METRICS_FILE, read_metrics
    from streaming_lstm.trainer.handler import StreamingTrainer
    from streaming_lstm.trainer.runner import run
    from streaming_lstm.trainer.sources import file_source
    from tests.test_hdfs import put_shuffled

    cmds, base = commands
    # 600 rows per file and batch, one key of 300 rows per task.
    put_shuffled(join(base, "incoming"), iris_lines * 4, BATCHES, seed=21)
    lines = readme_commands()
    submit = next(i for i, line in enumerate(lines) if "spark-submit" in line)
    for line in lines[:submit]:
        r = cmds.run(line)
        assert r is None or r.returncode == 0, (line, r.stderr[-2000:])
    assert len(cmds.services) == 3, "a Master and two Workers"
    master_log = cmds.services[0][1]
    wait_for("two registered Workers", lambda: master_log.read_text(errors="replace").count("Registering worker") >= 2, 90, cmds)

    ck = join(base, "ck")
    fs = filesystem(ck)
    ui_port = free_port("127.0.0.1")
    events = tmp_path / "events"
    events.mkdir()
    # The UI's REST API shows which executor is busy; the event log shows what the kill did to tasks.
    cmds.env["SPARK_SUBMIT_OPTS"] = (
        f"-Dspark.ui.port={ui_port} -Dspark.eventLog.enabled=true -Dspark.eventLog.dir=file://{events} -Dspark.eventLog.compress=false"
    )
    driver = subprocess.Popen(
        [*cmds.argv(lines[submit]), "--max-batches", str(BATCHES), "--trigger", "0s"],
        cwd=ROOT,
        env=cmds.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics_file = join(ck, METRICS_FILE)
        wait_for("the first applied batch", lambda: fs.exists(metrics_file) and fs.read_bytes(metrics_file).count(b"\n") >= 1, 300, cmds)
        # A Worker, its executor JVM and its Python workers: kill -9 while a training task runs.
        kill_a_worker_mid_task(ui_port, [tmp_path / "worker-1", tmp_path / "worker-2"], cmds)
        applied_at_kill = fs.read_bytes(metrics_file).count(b"\n")
        _out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-4000:]
    assert applied_at_kill < BATCHES, "the Worker was killed mid-stream"
    assert re.search(r"Lost executor|Executor .* removed|[Ww]orker .* (lost|removed)", err), "the driver saw the killed Worker's executor go"
    logged = [json.loads(x) for f in events.rglob("events_*") for x in f.read_text().splitlines()]
    lost = [e for e in logged if e.get("Event") == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] == "ExecutorLostFailure"]
    assert lost, "a task was running on the killed Worker (and ran again on the other)"
    cluster_m = read_metrics(ck)
    assert [m["batch_id"] for m in cluster_m] == list(range(BATCHES)), "every batch applied exactly once"
    assert [m["rows_valid"] for m in cluster_m] == [600] * BATCHES, "every row trained exactly once"

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s"})
    local_ck = join(base, "local")
    trainer = StreamingTrainer(spark, cfg, local_ck)
    run(trainer, file_source(spark, join(base, "incoming"), cfg), max_batches=BATCHES)
    assert trainer.state.rows_seen == 600 * BATCHES
    _, cluster_ev = evaluate(ck, iris_csv)
    _, local_ev = evaluate(local_ck, iris_csv)
    assert abs(cluster_ev.accuracy - local_ev.accuracy) <= 0.02, (cluster_ev.accuracy, local_ev.accuracy)
