"""One definition of a valid row (rows.py): the Spark SQL executor and the local one give the same
verdict and the same reason for every line of a hostile corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from streaming_lstm.core.config_load import load_config
from streaming_lstm.parse.rows import local_row, parse_double, read_lines

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = [
    "5.1", " 5.1 ", "\t5.1", "+5", "-0", ".5", "5.", "1e3", "1E-3", "1e", "e5", "--5", "5-", "1d", "1.5F", "2f", "0x1p3", "0X1.8P1",
    "0x", "0x10", "1_000", "1,5", "five", "abc", "NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "-INF", "+Inf", "infinity",
    "1e308", "-1e308", "1e400", "1e-400", "1e10", "0.0000001", "١٢", "\u00a05", "5\u00a0", "'5'", '"5"', "5 5", "", " ",
]  # fmt: skip


def corpus(rng: random.Random, valid: list[str]) -> bytes:
    header = b"sepal_length,sepal_width,petal_length,petal_width,species"
    lines: list[bytes] = [b"\xef\xbb\xbf" + valid[0].encode()]  # a UTF-8 BOM on the first line
    for _ in range(1500):
        base = rng.choice(valid).split(",")
        kind = rng.randrange(17)
        if kind == 0:
            lines.append(",".join((base * 2)[: rng.choice([1, 2, 3, 4, 6, 7, 9])]).encode())
        elif kind == 1:
            base[rng.randrange(4)] = rng.choice(NUMBERS)
            lines.append(",".join(base).encode())
        elif kind == 2:
            base[rng.randrange(4)] = f'"{base[0]}"'  # a quoted number
            lines.append(",".join(base).encode())
        elif kind == 3:
            lines.append(f'"{base[0]},{base[1]}",{",".join(base[2:])}'.encode())  # a quoted comma
        elif kind == 4:
            lines.append(",".join(base).encode() + b"\r")  # CRLF (the \n follows)
        elif kind == 5:
            lines.append(rng.choice([b"", b"   ", b"\t", b" \t "]))
        elif kind == 6:
            lines.append(rng.choice([header, b" sepal_length , sepal_width,petal_length,petal_width,species ", header.upper()]))
        elif kind == 7:
            base[4] = rng.choice(["3", "-1", "setosa", "", "0.0", "1 1", " 2 "])
            lines.append(",".join(base).encode())
        elif kind == 8:
            lines.append(b"\xff\xfe\xfd," + ",".join(base[1:]).encode())  # not UTF-8
        elif kind == 9:
            lines.append(",".join(base[:4]).encode() + b",\xc3\x28")
        elif kind == 10:
            lines.append(b"\xef\xbb\xbf" + ",".join(base).encode())  # a BOM mid-file
        elif kind == 11:
            lines.append(",".join(base).encode() + b",")  # a trailing comma
        elif kind == 12:  # malformed quoting: unbalanced, a section inside a field, space before a quote
            broken = rng.choice([f'"{base[0]},{base[1]}', f'{base[0]}"x"', f' "{base[0]}"', f'"{base[0]}" ', f'"{base[0]}"x', f'{base[0]}""'])
            lines.append(",".join([broken, *base[1:]]).encode())
        elif kind == 13:  # well quoted: every field, a doubled quote, a quoted header, an empty quoted field
            lines.append(
                rng.choice(
                    [
                        ",".join(f'"{x}"' for x in base),
                        f'{",".join(base[:4])},"{base[4]}"""',
                        ",".join(f'"{x}"' for x in header.decode().split(",")),
                        f'"",{",".join(base[1:])}',
                    ]
                ).encode()
            )
        elif kind == 14:  # a row to score: the features only, or the header without the label
            lines.append(rng.choice([",".join(base[:4]), ",".join(header.decode().split(",")[:4]), f'"{base[0]}",{",".join(base[1:4])}']).encode())
        else:
            lines.append(",".join(base).encode())
    lines.append(b"7" * 1_000_000)  # a 1 MB line
    lines.append(b"1," * 300_000 + b"0")
    return b"\n".join(lines) + b"\n"


@pytest.mark.spark
@pytest.mark.parametrize("require_label", [True, False], ids=["training", "scoring"])
def test_spark_and_local_executors_agree_on_every_line_of_a_hostile_corpus(spark: Any, iris_lines: list[str], tmp_path: Path, require_label: bool) -> None:
    """Training rules, and scoring rules (a row may leave out its label column)."""
    from streaming_lstm.parse.spark_parse import parse

    cfg = load_config(ROOT / "conf" / "iris.toml")
    path = tmp_path / "hostile.csv"
    path.write_bytes(corpus(random.Random(17), iris_lines))
    lines = list(read_lines(path))
    # One file of ~2 MB is one partition, read in order: Spark's rows line up with the file's lines.
    parsed = parse(spark.read.text(str(path)).coalesce(1), cfg.data, require_label=require_label)
    spark_rows = parsed.select("reason", "label", *cfg.data.feature_columns()).collect()
    assert len(spark_rows) == len(lines), "both read the same lines"
    disagreements = []
    reasons: dict[str, int] = {}
    for i, (line, s) in enumerate(zip(lines, spark_rows, strict=True)):
        local = local_row(line, cfg.data, require_label=require_label)
        reasons[str(local.reason)] = reasons.get(str(local.reason), 0) + 1
        same = local.reason == s["reason"]
        if same and local.reason is None:
            same = local.label == s["label"] and list(local.features) == [s[c] for c in cfg.data.feature_columns()]
        if not same:
            disagreements.append((i, line[:80], local.reason, s["reason"]))
    assert not disagreements, disagreements[:10]
    # The corpus exercised every rule.
    rules = ("None", "empty row", "header row", "malformed quoting", "non-numeric feature", "non-finite feature", "out of range")
    for prefix in (*rules, *(("expected 5 fields", "unknown label") if require_label else ("expected 4 fields (or 5 with the label)",))):
        assert any(r.startswith(prefix) or prefix in r for r in reasons), (prefix, reasons)
    if not require_label:  # rows without their label were scored
        assert sum(1 for line in lines if local_row(line, cfg.data, require_label=False).reason is None and line.count(",") == 3) > 20


@pytest.mark.spark
def test_the_arrow_executor_agrees_with_the_local_one_and_keeps_sparks_dead_letter_text(spark: Any, iris_lines: list[str], tmp_path: Path) -> None:
    """arrow_parse (the training plan built once parses there) on the hostile corpus as Spark
    reads it (the rows' bytes, not-UTF-8 ones included): the same verdict, features and label as
    rows.local_row on every line; a rejected row's ``raw`` is Spark's own ``substring(value, 1,
    RAW_LIMIT)``, lines longer than that in several encodings included."""
    from pyspark.sql import functions as F

    from streaming_lstm.parse.arrow_parse import spark_prefix, verdicts
    from streaming_lstm.parse.rows import RAW_LIMIT

    cfg = load_config(ROOT / "conf" / "iris.toml")
    path = tmp_path / "hostile.csv"
    long_lines = [
        b"\xff\xfe" * 40_000,
        "\u00e9\u20ac\U0001f600".encode() * 30_000,
        b"\xe2\x82" + b"a\xc3" * 70_000 + b"a",
        b"1,2,3," + b"\xf0\x9f\x98" * 30_000,
    ]
    path.write_bytes(corpus(random.Random(17), iris_lines) + b"\n".join(long_lines) + b"\n")
    lines = list(read_lines(path))
    value = F.col("value")
    rows = (
        spark.read.text(str(path))
        .coalesce(1)
        .select(value.cast("binary").alias("b"), F.length(value).alias("n"), F.substring(value, 1, RAW_LIMIT).cast("binary").alias("raw"))
    )
    table = rows.toArrow()
    assert table.num_rows == len(lines), "both read the same lines"
    got = verdicts(table.column("b").combine_chunks(), cfg.data)
    for i, line in enumerate(lines):
        local = local_row(line, cfg.data)
        assert got.reason[i] == local.reason, (i, line[:80], got.reason[i], local.reason)
        if local.reason is None:
            assert list(got.x[i]) == list(local.features) and got.label[i] == local.label, (i, line[:80])
    b, n, raw = (table.column(c).to_pylist() for c in ("b", "n", "raw"))
    assert [spark_prefix(x, k) for x, k in zip(b, n, strict=True)] == raw
    assert sum(k > RAW_LIMIT for k in n) >= len(long_lines) + 1


def test_the_arrow_executor_decides_plain_rows_without_the_per_row_rules(monkeypatch: pytest.MonkeyPatch, iris_lines: list[str]) -> None:
    """Plain valid CSV rows never reach rows.local_row (Arrow's kernels decide them); a row
    that is not plain does."""
    import pyarrow as pa

    from streaming_lstm.parse import arrow_parse

    cfg = load_config(ROOT / "conf" / "iris.toml")
    seen: list[str] = []
    monkeypatch.setattr(arrow_parse, "local_row", lambda line, data: seen.append(line) or local_row(line, data))
    n = len(iris_lines)
    rows = [*iris_lines, f'"{iris_lines[0]}"', " 1e400,1,1,1,Iris-setosa"]
    got = arrow_parse.verdicts(pa.array([r.encode() for r in rows], pa.binary()), cfg.data)
    assert got.reason[:n] == [None] * n and sorted(set(got.label[:n])) == [0, 1, 2]
    assert seen == rows[n:]
    assert got.reason[n] == "expected 5 fields, got 1" and str(got.reason[n + 1]).startswith("non-finite feature")


def test_numbers_parse_as_sparks_cast_does() -> None:
    # Expected values measured with Spark's try_cast (see the Spark test above for the whole corpus).
    assert parse_double("1d") == 1.0 and parse_double("1.5F") == 1.5
    assert parse_double("0x1p3") == 8.0
    assert parse_double(" inf ") == float("inf") and parse_double("-INF") == float("-inf")
    assert parse_double("1e400") == float("inf")
    for bad in ("1_000", "five", "", "1e", "--5", "0x", "١٢"):
        assert parse_double(bad) is None, bad


@pytest.mark.spark
def test_wide_rows_stream_without_code_generation_errors(spark: Any, tmp_path: Path) -> None:
    """600 features (2 timesteps x 300: the parse is the point, not a long unrolled LSTM, whose
    tracing took most of a minute at 100 x 6): the row rules stay compact, so Spark compiles its plan
    (the per-feature rules of before grew past the JVM's 64 KB method limit from 64 features on,
    with a ~245-line stack trace per batch). Code generation may not fall back to the interpreter
    here: a plan that does not compile fails the batch. (In this process since the eighth session:
    the CLI run cost ~30 s of start-up.)"""
    from tests.test_streaming import streaming

    rng = random.Random(3)
    features = [f"v{i}" for i in range(600)]
    rows = [",".join([*(f"{rng.gauss(0, 1):.3f}" for _ in features), str(rng.randrange(2))]) for _ in range(60)]
    broken = rows[7].split(",")
    broken[123] = "oops"
    rows[7] = ",".join(broken)
    rows[9] = ",".join(f'"{x}"' for x in rows[9].split(","))  # RFC 4180 quoting through Spark's CSV parser, 601 fields
    rows[11] = rows[11].replace(",", ',"', 1)  # an unbalanced quote
    conf = tmp_path / "wide.toml"
    conf.write_text(
        f'[data]\nfeatures = {json.dumps(features)}\nlabel = "y"\nclasses = ["0", "1"]\n'
        "[model]\ntimesteps = 2\nfeatures_per_step = 300\nhidden = [4]\n[train]\nlocal_epochs = 1\nwarmup_epochs = 0\nbatch_size = 30\n"
    )
    strict = {"spark.sql.codegen.fallback": "false", "spark.sql.codegen.factoryMode": "CODEGEN_ONLY"}
    before = {k: spark.conf.get(k, None) for k in strict}
    for k, v in strict.items():
        spark.conf.set(k, v)
    try:
        with streaming(spark, load_config(conf), tmp_path / "ck") as (_, feed):
            feed([",".join([*features, "y"]), *rows])
    finally:
        for k, old in before.items():
            spark.conf.unset(k) if old is None else spark.conf.set(k, old)
    metrics = [json.loads(x) for x in (tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["rows_valid"], m["rows_dead"], m["headers_skipped"]) for m in metrics] == [(58, 2, 1)]
    assert metrics[0]["dead_reasons"] == {"non-numeric feature 'v123'": 1, "malformed quoting": 1}


@pytest.mark.spark
def test_rfc_4180_fields_agree_with_sparks_csv_parser_on_quote_heavy_fuzz(spark: Any) -> None:
    """rows.csv_fields (the one-process commands) and spark_parse.csv_fields (Spark's from_csv) read
    every short line built from quotes, commas, white space, NUL and line breaks alike."""
    from pyspark.sql import functions as F

    from streaming_lstm.parse.rows import WHITESPACE, csv_fields
    from streaming_lstm.parse.spark_parse import csv_fields as spark_csv_fields

    rng = random.Random(5)
    alphabet = ["\n", "\r", "\r\n", '"', '"', ",", ",", "a", "1", " ", "\t", '""', "\x00", "\\", "'", "é"]
    lines = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(6000)})
    fields, count, malformed = spark_csv_fields(F.col("value"), 3)
    got = spark.createDataFrame([(x,) for x in lines], "value string").select(fields.alias("f"), count.alias("n"), malformed.alias("m")).collect()
    kinds = {"malformed": 0, "other count": 0, "three fields": 0}
    for line, s in zip(lines, got, strict=True):
        local = csv_fields(line)
        assert (local is None) == s["m"], (line, local, s)
        if local is None:
            kinds["malformed"] += 1
            continue
        assert len(local) == s["n"], (line, local, s)
        if len(local) == 3:
            kinds["three fields"] += 1
            assert [x.strip(WHITESPACE) for x in local] == [x or "" for x in s["f"]], (line, local, s)  # Spark reads "" as NULL
        else:
            kinds["other count"] += 1
    assert min(kinds.values()) > 100, kinds  # every kind of line was exercised
