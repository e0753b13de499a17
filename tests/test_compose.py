"""docker-compose.yml: valid against the Compose Specification schema, and its commands are real.

No Docker engine runs here, so the file is validated against the official JSON Schema (copied from
compose-spec/compose-spec into tests/data) instead of ``docker compose config``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pyspark
import pytest
import yaml

from streaming_lstm.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_valid_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    jsonschema.validate(compose, schema)
    broken = {**compose, "services": {**compose["services"], "kafka": {**compose["services"]["kafka"], "healthcheck": {"interval": 5}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_services_health_and_ordering(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert set(s) == {"kafka", "spark-master", "spark-worker", "producer", "trainer"}
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert "healthcheck" in s["kafka"] and "healthcheck" in s["spark-master"]
    assert s["trainer"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert s["producer"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "checkpoints" in compose["volumes"]


def test_commands_are_real_invocations_of_this_project(compose: dict[str, Any]) -> None:
    s = compose["services"]
    producer = s["producer"]["command"]
    assert producer[:2] == ["streaming-lstm", "produce"]
    args = build_parser().parse_args(producer[1:])  # the console script's own parser
    assert args.command == "produce"
    assert args.sink == "kafka" and args.bootstrap == "kafka:9092"
    assert (ROOT / args.data).exists()

    trainer = s["trainer"]["command"]
    assert trainer[0] == "spark-submit"
    script = next(i for i, a in enumerate(trainer) if a.endswith(".py"))
    assert (ROOT / trainer[script]).exists()
    t = build_parser().parse_args(trainer[script + 1 :])
    assert t.command == "train" and t.source == "kafka" and t.topic == args.topic
    assert (ROOT / t.conf).exists()
    package = trainer[trainer.index("--packages") + 1]
    assert package == f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}", "the connector must match the PySpark version"


def test_the_local_broker_is_the_composed_kafka_version(compose: dict[str, Any]) -> None:
    from streaming_lstm.local.jvm_deps import KAFKA_VERSION

    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}", "tests and demo run the broker users deploy"
