"""The trainer under spark-submit on a real multi-process cluster on this machine.

``local-cluster[2,1,1024]`` starts a standalone Master and two Workers with separate executor JVMs
and Python workers. The package goes to the executors as a zip with ``--py-files``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster]


def package_zip(out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for pkg in ("streaming_lstm", "producers"):
            for path in (ROOT / pkg).rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    z.write(path, path.relative_to(ROOT))
    return out


def test_spark_submit_on_a_local_cluster_matches_local_mode(spark: Any, iris_lines: list[str], iris_csv: Path, tmp_path: Path) -> None:
    from streaming_lstm.config import load_config
    from streaming_lstm.runner import run
    from streaming_lstm.sources import file_source
    from streaming_lstm.standalone import evaluate
    from streaming_lstm.stream_trainer import StreamingTrainer

    incoming = tmp_path / "in"
    incoming.mkdir()
    rng = np.random.default_rng(21)
    for i in range(4):
        (incoming / f"p{i}.csv").write_text("\n".join(iris_lines[j] for j in rng.permutation(150)) + "\n")
    deps = package_zip(tmp_path / "streaming_lstm.zip")
    submit = Path(sys.executable).parent / "spark-submit"
    ck = tmp_path / "cluster"
    cmd = [
        str(submit), "--master", "local-cluster[2,1,1024]", "--py-files", str(deps),
        "--conf", f"spark.pyspark.python={sys.executable}",
        str(ROOT / "streaming_lstm" / "cli.py"), "train", "--source", "file", "--path", str(incoming),
        "--checkpoint", str(ck), "--max-batches", "4", "--trigger", "0s", "--conf", str(ROOT / "conf" / "iris.toml"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    # spark-submit finds SPARK_HOME by running `python3` from PATH, which in CI is not the venv's
    # (no pyspark there): name it, as any Spark installation does.
    from pyspark.find_spark_home import _find_spark_home

    env["SPARK_HOME"] = _find_spark_home()
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    cluster_metrics = [json.loads(x) for x in (ck / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["rows_valid"] for m in cluster_metrics) == 600

    cfg = load_config(ROOT / "conf" / "iris.toml", {"stream.trigger": "0s"})
    local_ck = tmp_path / "local"
    trainer = StreamingTrainer(spark, cfg, local_ck, echo=False)
    run(trainer, file_source(spark, incoming, cfg), max_batches=4)
    assert trainer.state.rows_seen == 600
    _, cluster_ev = evaluate(ck, iris_csv)
    _, local_ev = evaluate(local_ck, iris_csv)
    assert abs(cluster_ev.accuracy - local_ev.accuracy) <= 0.02, (cluster_ev.accuracy, local_ev.accuracy)
