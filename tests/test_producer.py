"""The replay producer's schedule and the Kafka offset cap: fast unit tests."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from producers.replay import build_parser, corrupt, schedule
from streaming_lstm.kafka.settings import client_config
from streaming_lstm.kafka.source import cap_offsets

ROWS = [f"{i},1,2,3,{i % 3}" for i in range(20)]


def test_each_loop_is_a_fresh_seeded_shuffle_of_every_row() -> None:
    out = [r for r, _ in schedule(ROWS, seed=1, loops=3, limit=None, corrupt_rate=0.0)]
    assert len(out) == 60
    loops = [out[i * 20 : (i + 1) * 20] for i in range(3)]
    assert all(sorted(loop) == sorted(ROWS) for loop in loops)
    assert loops[0] != loops[1] and loops[0] != ROWS
    assert out == [r for r, _ in schedule(ROWS, seed=1, loops=3, limit=None, corrupt_rate=0.0)]


def test_limit_forever_and_corrupt_rows_are_counted() -> None:
    out = list(schedule(ROWS, seed=2, loops=0, limit=1000, corrupt_rate=0.2))
    assert len(out) == 1000
    bad = [r for r, is_bad in out if is_bad]
    assert 120 < len(bad) < 280
    assert all(r not in ROWS for r in bad)


def test_corrupt_rows_are_all_malformed() -> None:
    import random

    rng = random.Random(0)
    kinds = Counter()
    for _ in range(200):
        r = corrupt("5.1,3.5,1.4,0.2,0", rng)
        fields = r.split(",")
        if r == "":
            kinds["empty"] += 1
        elif len(fields) != 5:
            kinds["fields"] += 1
        elif fields[0] in ("not-a-number", "NaN"):
            kinds["feature"] += 1
        else:
            assert fields[-1] == "no-such-label"
            kinds["label"] += 1
    assert len(kinds) == 4


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 5), st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1), st.integers(1, 500))
def test_cap_offsets_admits_at_most_max_rows_within_each_backlog(parts: dict[int, tuple[int, int]], max_rows: int) -> None:
    start = {p: min(a, b) for p, (a, b) in parts.items()}
    latest = {p: max(a, b) for p, (a, b) in parts.items()}
    end = cap_offsets(start, latest, max_rows)
    admitted = sum(end[p] - start[p] for p in latest)
    backlog = sum(latest[p] - start[p] for p in latest)
    assert admitted == min(max_rows, backlog)
    assert all(start[p] <= end[p] <= latest[p] for p in latest)


def test_kafka_options_pass_through_as_kafka_python_names() -> None:
    cfg = client_config({"kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": "PLAIN", "kafka.bootstrap.servers": "x", "subscribe": "t"})
    assert cfg == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}


def test_help_explains() -> None:
    text = build_parser().format_help()
    assert "--rate" in text and "--corrupt-rate" in text and "--loops" in text
