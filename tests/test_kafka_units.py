"""Fast unit tests of the Kafka reader's helpers and the jar cache (no broker, no Spark)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streaming_lstm.kafka.reader import BrokerWatch, records_skipped
from streaming_lstm.local import jvm_deps
from streaming_lstm.trainer.runner import ProgressWatch, query_error


def progress(start: object, end: object, rows: int) -> dict[str, object]:
    return {"numInputRows": rows, "sources": [{"startOffset": start, "endOffset": end}]}


def test_records_skipped_reads_both_readers_offsets() -> None:
    # Spark's connector: {"topic": {"partition": offset}} as a JSON string.
    start = json.dumps({"t": {"0": 10, "1": 4}})
    end = json.dumps({"t": {"0": 30, "1": 9}})
    assert records_skipped(progress(start, end, 25)) == 0
    assert records_skipped(progress(start, end, 15)) == 10
    # The Python source: {"partition": offset}, here as parsed dicts.
    assert records_skipped(progress({"0": 0, "1": 0}, {"0": 5, "1": 7}, 12)) == 0
    assert records_skipped(progress({"0": 0, "1": 0}, {"0": 5, "1": 7}, 2)) == 10
    # A partition that first appears in the end offsets starts at its own end: nothing planned.
    assert records_skipped(progress({"0": 3}, {"0": 5, "1": 7}, 2)) == 0
    # The first batch of a query has no start offsets; a non-Kafka source has none at all.
    assert records_skipped(progress(None, {"0": 5}, 0)) == 0
    assert records_skipped({"numInputRows": 3, "sources": [{"startOffset": None, "endOffset": '{"logOffset":2}'}]}) == 0


def test_a_batch_replayed_and_skipped_as_already_applied_is_not_counted_as_lost() -> None:
    """After a restart Spark replays the last uncommitted batch; the handler skips it unread when
    the state has applied it (numInputRows 0): those records were trained, not gone."""
    reports = [
        {"batchId": 1, "durationMs": {"addBatch": 5}, **progress({"0": 0}, {"0": 60}, 0)},  # replayed, skipped
        {"batchId": 2, "durationMs": {"addBatch": 5}, **progress({"0": 60}, {"0": 120}, 50)},  # 10 gone
    ]
    query = type("Query", (), {"recentProgress": reports})()
    restarted, fresh = ProgressWatch(applied=1), ProgressWatch()
    restarted.scan(query)
    fresh.scan(query)
    assert (restarted.records_skipped, fresh.records_skipped) == (10, 70)
    restarted.scan(query)
    assert restarted.records_skipped == 10, "each report counted once"


def test_query_error_names_the_lost_partitions_and_offsets_not_sparks_wrappers() -> None:
    spark_text = (
        "[STREAM_FAILED] Query [id = 1] terminated with exception: Job aborted due to stage failure: Task 0 in stage 3.0 failed\n"
        ": org.apache.spark.sql.kafka010.KafkaIllegalStateException: Some data may have been lost because they are not available in Kafka any more;\n"
        "Reason: Could not read records in offset [31, 51) for topic partition topic-a-1\n"
        "Reason: Could not read records in offset [31, 51) for topic partition topic-a-1\n"
        "Reason: Could not read records in offset [7, 9) for topic partition topic-a-2\n"
    )
    line = query_error(spark_text)
    assert "partition topic-a-1 offsets [31, 51), partition topic-a-2 offsets [7, 9)" in line
    assert "fail_on_data_loss" in line and "\n" not in line
    python_text = "[STREAM_FAILED] ... pyspark.errors ... KafkaSourceError: Kafka topic 't': records gone ... partition 0 offsets 3..9; set x\nmore"
    assert query_error(python_text) == "Kafka topic 't': records gone ... partition 0 offsets 3..9; set x"
    assert query_error("first line\nsecond") == "first line"


def test_broker_watch_says_once_when_kafka_goes_and_once_when_it_is_back(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    watch = BrokerWatch(f"127.0.0.1:{port}", every=0.0)
    watch.check()
    server.close()
    for _ in range(3):
        watch.check()
    assert watch.outages == 1
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    watch.check()
    watch.check()
    server.close()
    err = capsys.readouterr().err
    assert err.count("is not answering") == 1 and err.count("is back after") == 1, err


def test_jar_names_map_to_artifacts() -> None:
    assert jvm_deps._artifact_of("kafka-clients-3.9.2.jar") == "kafka-clients"
    assert jvm_deps._artifact_of("spark-sql-kafka-0-10_2.13-4.2.0.jar") == "spark-sql-kafka-0-10_2.13"
    assert jvm_deps._artifact_of("zstd-jni-1.5.6-10.jar") == "zstd-jni"
    assert jvm_deps._artifact_of("HdrHistogram-2.2.2.jar") == "HdrHistogram"


def test_connector_set_matches_the_installed_pyspark_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspark

    (connector,) = jvm_deps.artifacts("kafka-connector")
    assert connector.version == pyspark.__version__
    # A cache fetched for another version is not used: the set is "missing", never mixed.
    monkeypatch.setenv("STREAMING_LSTM_JARS", str(tmp_path))
    folder = tmp_path / "kafka-connector"
    (folder / "lib").mkdir(parents=True)
    (folder / "set.json").write_text(json.dumps({"artifacts": ["org.apache.spark:spark-sql-kafka-0-10_2.13:0.0.1"], "jars": []}))
    assert jvm_deps.jars("kafka-connector") is None
    with pytest.raises(jvm_deps.JarsError, match=r"fetch them with 'streaming-lstm jars kafka-connector'"):  # the one command that fetches it
        jvm_deps.require("kafka-connector")
    (folder / "set.json").write_text(json.dumps({"artifacts": [str(connector)], "jars": ["a.jar"]}))
    assert jvm_deps.jars("kafka-connector") == [folder / "lib" / "a.jar"]


def test_unknown_jar_set_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        jvm_deps.main(["kafka-connectr"])
    assert exit_.value.code == 2
    assert "unknown jar set 'kafka-connectr'" in capsys.readouterr().err


def test_kraft_cluster_ids_never_look_like_an_option() -> None:
    from streaming_lstm.local.kafka_broker import cluster_id

    ids = [cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids), "the storage tool would read it as an option"
    assert len(set(ids)) == len(ids) and all(len(i) == 22 for i in ids)


def test_java_client_settings_reach_kafka_python_typed() -> None:
    from streaming_lstm.kafka.settings import client_config

    got = client_config({"kafka.fetch.max.wait.ms": "10", "kafka.enable.auto.commit": "false", "kafka.client.id": "scorer-1", "startingOffsets": "earliest"})
    assert got == {"fetch_max_wait_ms": 10, "enable_auto_commit": False, "client_id": "scorer-1"}


@pytest.mark.parametrize("close", ["close", "reset"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "PLAINTEXT"])
def test_a_broker_that_closes_every_connection_is_named_as_an_authentication_failure_only_with_sasl(protocol: str, close: str) -> None:
    # A broker closes the connection after a failed SASL authentication, and kafka-python can lose
    # its answer in the close; a listener that accepts and closes is exactly that, without the answer.
    import socket
    import struct
    import threading

    from streaming_lstm.kafka.source import KafkaSourceError, connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def close_each() -> None:
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except TimeoutError:
                continue
            if close == "reset":  # linger 0: the close is a reset, as when the client's bytes were unread
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    closer = threading.Thread(target=close_each, daemon=True)
    closer.start()
    options = {"kafka.security.protocol": protocol}
    if protocol.startswith("SASL"):
        jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";'
        options |= {"kafka.sasl.mechanism": "PLAIN", "kafka.sasl.jaas.config": jaas}
    try:
        with pytest.raises(KafkaSourceError) as failed:
            connect(f"127.0.0.1:{server.getsockname()[1]}", "t", options, timeout=5.0)
    finally:
        stop.set()
        closer.join()
        server.close()
    message = str(failed.value)
    assert "gave up after 5 s" in message, message
    named = re.search(r"authentication probably failed: the broker closed [1-9][0-9]* connection", message)
    assert bool(named) == protocol.startswith("SASL"), message
    assert 'password="' not in message and "jaas" not in message
