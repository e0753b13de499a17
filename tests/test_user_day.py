"""A new user's first hour: small CSV files of their own, the shipped data, mistakes in flags and
files. Each finding of the issue that filed these has a test here (the quiet stop and scoring
rows without a label: test_cli_stream.py, test_cli_data.py, test_operability.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streaming_lstm.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def animals(path: Path, *, bom: bool = False) -> Path:
    """A file as Python's csv module writes it: a quoted label with a comma, CRLF line ends."""
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(["weight", "height", "temp", "kind"])
        for i in range(40):
            w.writerow([10 + i % 7, 20 + i % 5, 30 + (i * 3) % 11, "small, light" if i % 2 else "big"])
    return path


@pytest.mark.parametrize("bom", [False, True], ids=["csv-module", "excel-utf8-bom"])
def test_init_config_reads_what_fit_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str], bom: bool) -> None:
    data = animals(tmp_path / "animals.csv", bom=bom)
    conf = tmp_path / "animals.toml"
    code, out, err = run(capsys, "init-config", "--data", str(data), "--out", str(conf))
    assert code == 0, err
    text = conf.read_text()
    assert 'features = ["weight", "height", "temp"]' in text and '"small, light"' in text and "\ufeff" not in text
    code, out, err = run(capsys, "fit", "--data", str(data), "--conf", str(conf), "--out", str(tmp_path / "m"), "--epochs", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["rows_trained"] == 40


def test_init_config_reads_the_shipped_data_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "init-config", "--data", "data/iris.csv")
    assert code == 0 and 'label = "species"' in out, err
    code, out, err = run(capsys, "init-config", "--data", "data/solar-hourly.csv", "--label", "site")
    assert code == 0 and '"Greensboro, NC"' in out, err
    code, out, err = run(capsys, "init-config", "--data", "data/solar-hourly.csv", "--events", "--time", "time", "--entity", "site", "--targets", "ghi")
    assert code == 0 and 'mode = "events"' in out and 'entity = "site"' in out, err


def test_fit_refuses_another_models_directory_naming_both_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "m"
    assert run(capsys, "fit", "--data", "data/iris.csv", "--out", str(out_dir), "--epochs", "1")[0] == 0
    code, _out, err = run(capsys, "fit", "--data", "data/iris.csv", "--out", str(out_dir), "--epochs", "1", "--hidden", "8")
    assert code == 2 and "layers 64" in err and "layers 8" in err and "LSTMConfig(" not in err, err
    assert sorted(p.name for p in out_dir.glob("v*.json")) == ["v0000000001.json"], "nothing was added"


def test_export_refuses_a_non_empty_directory_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, out_dir = tmp_path / "m", tmp_path / "export"
    assert run(capsys, "fit", "--data", "data/iris.csv", "--out", str(model), "--epochs", "1")[0] == 0
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "export", "--checkpoint", str(model), "--out", str(out_dir))
    assert code == 2 and "not empty (notes.txt)" in err and "--force" in err
    code, _out, err = run(capsys, "export", "--checkpoint", str(model), "--out", str(out_dir), "--force", "--json")
    assert code == 0 and (out_dir / "saved_model.pb").exists() and (out_dir / "notes.txt").exists(), err


def test_errors_arrive_before_the_engines_load(tmp_path: Path) -> None:
    """A bad --set key, a missing model or data file, a train without its source's flags: answered
    before TensorFlow or the JVM loads (checked by what the process imported or started)."""
    probe = (
        "import sys, json; from streaming_lstm.cli import main; rc = main(sys.argv[1:]);"
        " from pyspark import SparkContext;"
        " print(json.dumps([rc, 'tensorflow' in sys.modules, SparkContext._gateway is not None]))"
    )
    cases = [
        (["fit", "--data", "data/iris.csv", "--set", "train.nope=1"], 2, "unknown key 'train.nope' in the command line"),
        (["fit", "--data", "no/such.csv", "--out", str(tmp_path / "m")], 1, "--data no/such.csv: no such file"),
        (["evaluate", "--model", str(tmp_path / "none"), "--data", "data/iris.csv"], 1, str(tmp_path / "none")),
        (["train", "--source", "file", "--checkpoint", str(tmp_path / "ck")], 2, "--path is required for --source file"),
        (["train", "--source", "file", "--path", str(tmp_path / "absent"), "--checkpoint", str(tmp_path / "ck")], 1, "not a directory"),
        (["train", "--source", "socket", "--checkpoint", str(tmp_path / "ck")], 2, "--port is required"),
    ]
    for argv, code, message in cases:
        r = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert json.loads(r.stdout.strip().splitlines()[-1]) == [code, False, False], (argv, r.stdout, r.stderr[-2000:])
        assert message in r.stderr, (argv, r.stderr[-2000:])


def test_configuration_errors_say_where_and_what(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text((ROOT / "conf" / "iris.toml").read_text().replace("hidden = [64]", "hidden = 64"))
    code, _, err = run(capsys, "fit", "--data", "data/iris.csv", "--conf", str(conf))
    assert code == 2 and "model.hidden: expected a list of int" in err and "expected tuple" not in err, err
    conf.write_text((ROOT / "conf" / "iris.toml").read_text().replace("[train]", "[train]\nnope = 1"))
    code, _, err = run(capsys, "fit", "--data", "data/iris.csv", "--conf", str(conf))
    assert code == 2 and f"unknown key 'train.nope' in {conf}" in err, err


def test_small_things_a_user_meets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # -v after the subcommand, and --version
    assert build_parser().parse_args(["fit", "--data", "x.csv", "-v"]).verbose is True
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("streaming-lstm ")
    # predict takes a file or a stream, not both
    code, _, err = run(capsys, "predict", "--model", "runs/none", "--data", "data/iris.csv", "--source", "file")
    assert code == 2 and "not both" in err
    # init-config's help is prose, not reST markup; every flag of export and report explains itself
    help_text = build_parser()._subparsers._group_actions[0].choices["init-config"].format_help()  # type: ignore[union-attr]
    assert "``" not in help_text and ":func:" not in help_text
    for command in ("export", "report"):
        for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:  # type: ignore[union-attr]
            assert action.help, f"{command} {action.option_strings}"


def test_report_into_a_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    record = {"batch_id": 0, "rows_valid": 10, "rows_dead": 0, "prequential_accuracy": 0.5, "prequential_loss": 1.0, "latency_s": 0.2,
              "version": 1, "prequential_correct": 5}  # fmt: skip
    (ck / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    target = tmp_path / "report.png"
    target.write_text("x")
    code, _out, err = run(capsys, "report", "--checkpoint", str(ck), "--out", str(target))
    assert code == 1 and "is a file" in err and "Traceback" not in err


def test_the_closing_lines_add_up() -> None:
    """The batch line shows skipped headers; a short resumed run names the rows its accuracy covers;
    the dead-letter directory is named only when something went there; the last applied batch."""
    from streaming_lstm.storage.metrics import format_line
    from streaming_lstm.trainer.runner import RunResult, summarize

    m = {"batch_id": 3, "rows_in": 31, "rows_valid": 30, "rows_dead": 0, "headers_skipped": 1, "prequential_accuracy": 0.9, "prequential_loss": 0.3,
         "train_loss": 0.2, "rows_per_s": 10.0, "latency_s": 0.5, "version": 4, "prequential_correct": 27}  # fmt: skip
    assert "rows     31 valid     30 dead    0 hdr 1" in format_line(m)
    text = summarize(RunResult(1, 30, 0, 4, "idle for 5 s", 3.0, [m], last_batch_id=3, refused_batch=4), "ck")
    assert "over the last 30 rows 0.900" in text and "dead letters" not in text
    assert "last applied batch 3; batch 4 had started and was refused: it is replayed on restart" in text
