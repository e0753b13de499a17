"""The one-process commands on imperfect files: one output line per row, rejected rows counted by
reason, a model that does not fit the data refused with a hint, strict JSON, init-config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streaming_lstm.cli import main

ROOT = Path(__file__).resolve().parent.parent
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"


def strict_loads(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert main(["fit", "--data", str(ROOT / "data" / "iris.csv"), "--out", str(out), "--epochs", "5", "--conf", str(ROOT / "conf" / "iris.toml")]) == 0
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_data_writes_one_line_per_row_in_order(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["5.1,3.5,1.4,0.2,0", "6.7,3.0,5.2,2.3,2", "5.1,3.5,abc,0.2,0", HEADER, "5.9,3.0,4.2,1.5,1", "5.9,3.0,4.2,1.5,1,7"]
    f = tmp_path / "rows.csv"
    f.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "predict", "--model", str(model), "--data", str(f))
    assert code == 0
    lines = [strict_loads(x) for x in out.splitlines()]
    assert [x["row"] for x in lines] == [0, 1, 2, 3, 4], "every non-header row, in order"
    assert [x.get("error") for x in lines] == [None, None, "non-numeric feature 'petal_length'", None, "expected 4 fields (or 5 with the label), got 6"]
    assert lines[2]["value"] == "5.1,3.5,abc,0.2,0"
    assert all("class" in x and len(x["probabilities"]) == 3 for x in lines if "error" not in x)
    assert 'scored 3 rows, 2 rejected (an "error" line each), 1 header line skipped' in err
    assert "WARNING: 2 of 5 rows" in err, "a rejected share above 1 % is a warning"
    code, out, err = run(capsys, "predict", "--model", str(model), "--data", str(f), "--strict")
    assert code == 1 and "2 of 5 rows rejected (--strict)" in err


def test_predict_scores_rows_without_their_label_with_or_without_a_header(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows to score carry the features only; a file of them may start with the header of those
    columns. Rows that also carry the label are scored the same, and the accuracy over them reported."""
    good = (ROOT / "data" / "iris.csv").read_text().splitlines()[1:]
    features_only = [",".join(line.split(",")[:4]) for line in good]
    for name, lines in {"headed": [HEADER.rsplit(",", 1)[0], *features_only], "bare": features_only}.items():
        f = tmp_path / f"{name}.csv"
        f.write_text("\n".join(lines) + "\n")
        code, out, err = run(capsys, "predict", "--model", str(model), "--data", str(f))
        assert code == 0, err
        records = [strict_loads(x) for x in out.splitlines()]
        assert len(records) == 150 and all("class" in r and "label" not in r for r in records)
        assert "scored 150 rows, 0 rejected" in err and "accuracy" not in err
    f = tmp_path / "mixed.csv"
    f.write_text("\n".join([*features_only[:50], *good[50:]]) + "\n")
    code, out, err = run(capsys, "predict", "--model", str(model), "--data", str(f))
    records = [strict_loads(x) for x in out.splitlines()]
    assert code == 0 and [("label" in r) for r in records] == [False] * 50 + [True] * 100
    accuracy = sum(r["class"] == r["label"] for r in records[50:]) / 100
    assert f"accuracy {accuracy:.4f} on the 100 rows that carry a label" in err


def test_evaluate_reports_rejected_rows_by_reason_in_text_and_strict_json(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = (ROOT / "data" / "iris.csv").read_text().splitlines()[1:]
    f = tmp_path / "rows.csv"
    f.write_text("\n".join([HEADER, *good[:4], "5.1,3.5,abc,0.2,0", "5.1,3.5,1.4,0.2,9", HEADER]) + "\n")
    code, out, _ = run(capsys, "evaluate", "--model", str(model), "--data", str(f), "--json")
    assert code == 0
    r = strict_loads(out)
    assert r["rows"] == 4 and r["headers_skipped"] == 2
    assert r["rows_rejected"] == {"non-numeric feature 'petal_length'": 1, "unknown label": 1}
    code, out, _ = run(capsys, "evaluate", "--model", str(model), "--data", str(f))
    assert "rejected 2 (non-numeric feature 'petal_length': 1; unknown label: 1)   headers skipped 2" in out


def test_a_model_that_does_not_fit_the_data_is_one_clear_error(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nine = tmp_path / "nine.csv"
    nine.write_text("\n".join(",".join(["0.5"] * 9 + [str(i % 2)]) for i in range(20)) + "\n")
    for command, reason in (("evaluate", "expected 5 fields, got 10"), ("predict", "expected 4 fields (or 5 with the label), got 10")):
        code, out, err = run(capsys, command, "--model", str(model), "--data", str(nine))
        assert code == 1 and out == ""
        assert f'no usable row: all 20 were rejected, most as "{reason}" (20); does the model match this data?' in err
    headed = tmp_path / "headed.csv"
    headed.write_text(",".join(f"x{i}" for i in range(9)) + ",y\n" + nine.read_text())
    code, _, err = run(capsys, "evaluate", "--model", str(model), "--data", str(headed))
    assert code == 1 and "its header names 10 columns (x0, x1" in err and "but the model expects 5" in err
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(f"5.1,3.5,1.4,0.2,{c}" for c in ("cat", "dog")) + "\n")
    code, _, err = run(capsys, "evaluate", "--model", str(model), "--data", str(labels))
    assert code == 1 and 'most as "unknown label"' in err and "labels 0, 1, 2" in err


def test_json_outputs_are_strict_json_even_without_scores(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "fit", "--data", str(ROOT / "data" / "iris.csv"), "--out", str(tmp_path / "m"), "--epochs", "1", "--json")
    assert code == 0 and strict_loads(out)["rows_trained"] == 150
    code, out, _ = run(capsys, "export", "--checkpoint", str(model), "--out", str(tmp_path / "sm"), "--json")
    assert code == 0 and strict_loads(out)["model_version"] >= 1
    # A checkpoint whose only batch had no valid row: prequential accuracy is NaN inside, null outside.
    ck = tmp_path / "ck"
    ck.mkdir()
    batch = {"batch_id": 0, "version": 1, "rows_in": 3, "rows_valid": 0, "rows_dead": 3, "prequential_correct": 0, "prequential_accuracy": float("nan")}
    batch.update(prequential_loss=float("nan"), train_loss=float("nan"), rows_per_s=0.0, latency_s=0.1, time=0.0, dead_reasons={"empty row": 3})
    (ck / "metrics.jsonl").write_text(json.dumps(batch) + "\n")
    code, out, _ = run(capsys, "report", "--checkpoint", str(ck), "--json")
    assert code == 0
    report = strict_loads(out)
    assert report["prequential_accuracy_last_150"] is None


def test_init_config_writes_a_configuration_that_fits_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "wide.csv"
    names = [f"s{i}" for i in range(6)]
    rows = [",".join(["id", *names, "kind"])] + [",".join([f"r{i}", *[str(0.1 * j + i % 3) for j in range(6)], ["a", "b"][i % 2]]) for i in range(40)]
    f.write_text("\n".join(rows) + "\n")
    out = tmp_path / "wide.toml"
    code, text, _ = run(capsys, "init-config", "--data", str(f), "--timesteps", "3", "--out", str(out))
    assert code == 0 and "6 features, label 'kind' with 2 classes, timesteps 3" in text
    from streaming_lstm.core.config_load import load_config

    cfg = load_config(out)
    assert list(cfg.data.features) == names and cfg.data.classes == ("a", "b")
    assert cfg.data.columns == ("id", *names, "kind"), "the non-numeric id column is kept in the layout, not a feature"
    assert (cfg.model.timesteps, cfg.model.features_per_step) == (3, 2)
    code, text, _ = run(capsys, "fit", "--data", str(f), "--conf", str(out), "--out", str(tmp_path / "m"), "--epochs", "2", "--json")
    assert code == 0 and strict_loads(text)["rows_trained"] == 40 and strict_loads(text)["headers_skipped"] == 1
    code, _, err = run(capsys, "init-config", "--data", str(f), "--timesteps", "4")
    assert code == 2 and "--timesteps 4: must divide the 6 feature columns evenly" in err
    code, text, _ = run(capsys, "init-config", "--data", str(f))
    assert code == 0 and "timesteps = 1" in text and "features_per_step = 6" in text, "by default every feature is in one step"


def test_init_config_keeps_a_feature_with_empty_cells_and_names_what_it_leaves_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "sensors.csv"
    lines = ["id,temp,humidity,note,state"]
    lines += [f"r{i},{20 + i % 3},{'' if i % 10 == 4 else 40 + i % 5},,{['idle', 'hot'][i % 2]}" for i in range(30)]
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sensors.toml"
    code, text, _ = run(capsys, "init-config", "--data", str(f), "--out", str(out))
    assert code == 0 and "2 features, label 'state'" in text, text
    assert "left out 'id': not a number: 'r0' in sample row 1" in text
    assert "left out 'note': empty in every sample row" in text
    assert "'humidity': 3 empty of 30 sample rows" in text
    header = out.read_text().split("[data]")[0]
    assert "# left out 'id'" in header and "# 'humidity': 3 empty" in header, "the notes are in the file too"
    code, text, _ = run(capsys, "fit", "--data", str(f), "--conf", str(out), "--out", str(tmp_path / "m"), "--epochs", "1", "--json")
    result = strict_loads(text)
    assert code == 0 and result["rows_trained"] == 27 and sum(result["rows_rejected"].values()) == 3, result


def test_the_confusion_table_keeps_its_columns_apart_for_any_count() -> None:
    from streaming_lstm.commands.standalone import Evaluation

    table = Evaluation(500, 0.92, 0.2, [[223, 21], [20, 236]], ["0", "1"]).format().splitlines()[-3:]
    assert [line.split() for line in table] == [["0", "1"], ["0", "223", "21"], ["1", "20", "236"]], table
    assert len({len(line) for line in table}) == 1, "every line as wide as the header"


@pytest.mark.parametrize("sep", [";", "\t"])
def test_init_config_names_a_delimiter_other_than_the_comma(tmp_path: Path, capsys: pytest.CaptureFixture[str], sep: str) -> None:
    f = tmp_path / "other.csv"
    f.write_text("\n".join(sep.join(r) for r in [["a", "b", "label"], ["1", "2", "x"], ["2", "3", "y"]]) + "\n")
    code, _, err = run(capsys, "init-config", "--data", str(f))
    assert code == 2 and f"this file looks separated by {sep!r}; convert it to commas first" in err, err


def test_init_config_events_names_the_columns_known_ahead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "sales.csv"
    f.write_text("time,sales,price\n" + "\n".join(f"{60 * k},{10 + k % 7},{2 + k % 3}" for k in range(30)) + "\n")
    out = tmp_path / "sales.toml"
    code, _, err = run(capsys, "init-config", "--data", str(f), "--events", "--time", "time", "--targets", "sales", "--known", "price", "--out", str(out))
    assert code == 0, err
    from streaming_lstm.core.config_load import load_config

    cfg = load_config(out)
    assert cfg.data.known == ("price",) and cfg.data.features == ("sales", "price") and cfg.data.known_positions() == [1]
    code, _, err = run(capsys, "init-config", "--data", str(f), "--events", "--time", "time", "--targets", "sales", "--known", "cost")
    assert code == 2 and "--known 'cost': not a column of" in err
    code, _, err = run(capsys, "init-config", "--data", str(f), "--events", "--time", "time", "--targets", "sales", "--known", "sales")
    assert code == 2 and "data.known: a target cannot be known ahead (remove: sales)" in err
