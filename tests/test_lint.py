"""ruff and mypy, as configured in pyproject.toml, stay clean."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    r = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_mypy_is_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_report_and_metrics_import_neither_spark_nor_tensorflow() -> None:
    """The layering holds: reading a checkpoint's metrics needs no JVM and no TF."""
    code = "import sys, streaming_lstm.commands.report, streaming_lstm.storage.metrics; bad = {'pyspark', 'tensorflow'} & set(sys.modules); assert not bad, bad"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_driver_side_imports_no_tensorflow() -> None:
    """The foreachBatch driver references the executor's functions but never runs them: TF (3.5 s and
    its memory) is imported in the Python workers only (TensorBoard logging aside)."""
    code = "import sys, streaming_lstm.trainer.handler, streaming_lstm.trainer.runner, streaming_lstm.trainer.predictor; assert 'tensorflow' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
