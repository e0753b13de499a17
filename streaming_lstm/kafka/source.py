"""The Python Kafka data source, for environments without Spark's connector jar (which reader runs
is chosen in kafka/reader.py). Columns ``key, value, topic, partition, offset, timestamp``.

Contract (``streaming_lstm_kafka``):

* An offset is ``{"<partition>": next_offset, ...}`` for the one topic; a micro-batch covering
  ``start -> end`` includes, for each partition, the records with ``start[p] <= offset < end[p]``.
  The offsets are Spark's: they are logged in the checkpoint before the batch runs, so a replayed
  batch reads exactly the same records, and Spark's commit makes the stream exactly-once.
* The latest offset of a partition is the larger of ListOffsets' answer and the high watermark of a
  Fetch response: the embedded broker under-reports ListOffsets (the last record batch's base offset
  + 1) when a batch holds several records.
* ``maxOffsetsPerTrigger`` caps a batch through Spark's admission control (``ReadMaxRows``), shared
  out across partitions in proportion to their backlog.
* One input partition per Kafka partition and range; ranges over ``maxOffsetsPerPartition`` split.
* ``kafka.*`` options pass through to kafka-python with dots as underscores
  (``kafka.security.protocol`` -> ``security_protocol``, ``kafka.sasl.plain.username`` ...).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pyspark.sql.datasource import CaseInsensitiveDict, DataSource, DataSourceStreamReader, InputPartition

from streaming_lstm.kafka.settings import AuthFailures, client_config, uses_sasl

log = logging.getLogger(__name__)
SOURCE_NAME = "streaming_lstm_kafka"
SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
CONNECT_TIMEOUT_S = 30.0
T = TypeVar("T")


class KafkaSourceError(RuntimeError):
    """Kafka cannot be reached, the topic is missing, or data was lost; names servers and topic."""


def _consumer(bootstrap: str, options: Mapping[str, str], **extra: Any) -> Any:
    from kafka import KafkaConsumer

    # 5 s (not kafka-python's 30 s) so that a dead broker is noticed, and waited out, promptly;
    # a user's kafka.request.timeout.ms (or any other kafka.* option) wins.
    settings: dict[str, Any] = {"enable_auto_commit": False, "group_id": None, "request_timeout_ms": 5000, "bootstrap_timeout_ms": 5000}
    settings.update(extra)
    settings.update(client_config(options))
    return KafkaConsumer(bootstrap_servers=bootstrap.split(","), **settings)


def connect(bootstrap: str, topic: str, options: Mapping[str, str], timeout: float = CONNECT_TIMEOUT_S) -> tuple[Any, list[int]]:
    """A consumer and the topic's partitions, retrying for at most ``timeout`` seconds."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last = "no answer"
    probable: str | None = None
    sasl = uses_sasl(client_config(options))
    while True:
        consumer = None
        watch = AuthFailures(sasl)
        logging.getLogger("kafka").addHandler(watch)
        try:
            left_ms = max(500, int((deadline - time.monotonic()) * 1000))
            # fetch_max_wait_ms: the high-watermark poll below must not sit in the broker's 500 ms
            # wait for new data on every trigger. No incremental fetch sessions (KIP-227): in one,
            # the broker leaves unchanged partitions out of its Fetch responses, so their high
            # watermark never came and every trigger waited out latest_offsets' 2 s deadline.
            consumer = _consumer(bootstrap, options, bootstrap_timeout_ms=min(5000, left_ms), fetch_max_wait_ms=50, enable_incremental_fetch_sessions=False)
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return consumer, sorted(parts)
            last = f"topic '{topic}' does not exist"
        except KafkaError as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            logging.getLogger("kafka").removeHandler(watch)
        if consumer is not None:
            consumer.close()
        if watch.seen:  # retrying cannot help: the credentials are wrong
            raise KafkaSourceError(f"Kafka at {bootstrap}, topic '{topic}': {watch.cause()}")
        probable = watch.cause() or probable
        if time.monotonic() >= deadline:
            named = f"{probable}; " if probable else ""
            raise KafkaSourceError(f"Kafka at {bootstrap}, topic '{topic}': {named}{last} (gave up after {timeout:g} s)")
        time.sleep(0.5)


def latest_offsets(consumer: Any, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """max(ListOffsets "latest", Fetch high watermark) per partition (see the module docstring)."""
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in partitions]
    listed = {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    # Re-assigning gives every partition a fresh state whose high watermark is unknown (None), so
    # the loop below waits for a Fetch response from now, never a cached value from an earlier call.
    consumer.assign([])
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, listed[tp.partition])
    # Any Fetch response carries the high watermark; poll until every partition has reported one.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in tps):
        consumer.poll(timeout_ms=20, max_records=1)  # short: poll waits its whole timeout when no record comes
    out = {}
    for tp in tps:
        hw = consumer.highwater(tp)
        out[tp.partition] = max(listed[tp.partition], int(hw) if hw is not None else 0)
    return out


def earliest_offsets(consumer: Any, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    from kafka import TopicPartition

    return {tp.partition: int(o) for tp, o in consumer.beginning_offsets([TopicPartition(topic, p) for p in partitions]).items()}


def cap_offsets(start: Mapping[int, int], latest: Mapping[int, int], max_rows: int) -> dict[int, int]:
    """End offsets that admit at most ``max_rows`` records, shared in proportion to each backlog."""
    backlog = {p: max(0, latest[p] - start.get(p, 0)) for p in latest}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(latest)
    end = {p: start.get(p, 0) + (backlog[p] * max_rows) // total for p in latest}
    left = max_rows - sum(end[p] - start.get(p, 0) for p in latest)
    for p in sorted(latest, key=lambda q: -backlog[q]):  # hand out the rounding remainder
        if left <= 0:
            break
        if end[p] < latest[p]:
            end[p] += 1
            left -= 1
    return end


def _say(message: str) -> None:
    """One line on stderr: this runs in Spark's Python planner process, where logging is not set up."""
    print(f"streaming-lstm kafka: {message}", file=sys.stderr, flush=True)


_READ_CONSUMERS: dict[str, Any] = {}


def _read_key(bootstrap: str, options: Mapping[str, str]) -> str:
    return json.dumps([bootstrap, sorted(client_config(options).items())], default=str)


def _read_consumer(bootstrap: str, options: Mapping[str, str]) -> Any:
    """The executor-side consumer, one per Python worker and broker settings.

    Spark reuses Python workers and runs one task at a time in each, so a consumer kept here saves
    the bootstrap and metadata round trips of a new one for every partition of every batch.
    """
    key = _read_key(bootstrap, options)
    consumer = _READ_CONSUMERS.get(key)
    if consumer is None:
        consumer = _READ_CONSUMERS[key] = _consumer(bootstrap, options, max_poll_records=5000, fetch_max_wait_ms=100)
    return consumer


def _drop_read_consumer(bootstrap: str, options: Mapping[str, str]) -> None:
    consumer = _READ_CONSUMERS.pop(_read_key(bootstrap, options), None)
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.close()


@dataclass
class KafkaRange(InputPartition):
    topic: str
    partition: int
    start: int
    end: int  # exclusive


class KafkaStreamReader(DataSourceStreamReader):
    def __init__(self, options: Mapping[str, str]) -> None:
        # Spark hands over a case-insensitive mapping whose keys are lowercased: dict(options) would
        # make every camelCase lookup below miss and silently fall back to its default.
        self.options = CaseInsensitiveDict(options)
        self.bootstrap = self.options["kafka.bootstrap.servers"]
        self.topic = self.options["subscribe"]
        self.starting = self.options.get("startingOffsets", "earliest")
        self.max_rows = int(self.options.get("maxOffsetsPerTrigger", "0") or 0)
        self.max_per_split = int(self.options.get("maxOffsetsPerPartition", "100000"))
        self.fail_on_data_loss = self.options.get("failOnDataLoss", "true").lower() == "true"
        self._consumer: Any = None
        self._partitions: list[int] = []
        self._last_latest: dict[int, int] | None = None

    def _client(self, timeout: float = CONNECT_TIMEOUT_S) -> Any:
        if self._consumer is None:
            self._consumer, self._partitions = connect(self.bootstrap, self.topic, self.options, timeout)
        return self._consumer

    def _drop_client(self) -> None:
        if self._consumer is not None:
            # Closing a consumer whose broker is gone may fail; it is dropped anyway.
            with contextlib.suppress(Exception):
                self._consumer.close()
        self._consumer = None

    def _latest(self) -> dict[int, int]:
        """Latest offsets, waiting while the broker or the topic is unavailable (:meth:`_waiting`)."""

        def latest(consumer: Any) -> dict[int, int]:
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                raise KafkaSourceError(f"topic '{self.topic}' does not exist")
            return latest_offsets(consumer, self.topic, sorted(parts))

        return self._waiting(latest)

    def _waiting(self, ask: Callable[[Any], T]) -> T:
        """``ask(consumer)``; while the broker or topic is unavailable, wait (one line), then resume.
        Every call to the broker while a trigger is planned goes through here: the broker may go
        between two of them (after the latest offsets, before the partitions are planned).

        Gives up with :class:`KafkaSourceError` after ``brokerWaitSeconds`` (default 600).
        """
        waiting_since: float | None = None
        limit = float(self.options.get("brokerWaitSeconds", "600"))
        while True:
            try:
                answer = ask(self._client(timeout=2.0))
                if waiting_since is not None:
                    waited = time.monotonic() - waiting_since
                    _say(f"Kafka at {self.bootstrap}, topic '{self.topic}' is back after {waited:.0f} s; resuming")
                return answer
            except Exception as exc:
                self._drop_client()
                if "authentication failed" in str(exc):
                    raise  # waiting cannot mend wrong credentials
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                    _say(f"Kafka at {self.bootstrap}, topic '{self.topic}' is unavailable ({reason}); waiting for it (up to {limit:g} s)")
                if now - waiting_since > limit:
                    raise KafkaSourceError(f"Kafka at {self.bootstrap}, topic '{self.topic}': unavailable for {limit:g} s: {exc}") from None
                time.sleep(1.0)

    def initialOffset(self) -> dict:
        consumer = self._client()
        if self.starting == "earliest":
            return {str(p): o for p, o in earliest_offsets(consumer, self.topic, self._partitions).items()}
        if self.starting == "latest":
            return {str(p): o for p, o in self._latest().items()}
        given = json.loads(self.starting).get(self.topic, {})
        earliest = earliest_offsets(consumer, self.topic, self._partitions)
        # Kafka's convention: -2 = earliest, -1 = latest.
        latest = self._latest() if -1 in given.values() else {}
        out = {}
        for p in self._partitions:
            o = int(given.get(str(p), -2))
            out[str(p)] = earliest[p] if o == -2 else latest[p] if o == -1 else o
        return out

    def getDefaultReadLimit(self) -> Any:
        from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

        return ReadMaxRows(self.max_rows) if self.max_rows > 0 else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: Any) -> dict:
        from pyspark.sql.streaming.datasource import ReadMaxRows

        latest = self._latest()
        self._last_latest = latest
        begin = {int(p): int(o) for p, o in start.items()}
        for p in latest:  # a partition added after the start begins at 0
            begin.setdefault(p, 0)
        behind = {p: o for p, o in latest.items() if o < begin[p]}
        if behind:
            # Offsets went backwards: the topic was deleted and recreated, or the broker lost its log
            # (the embedded broker keeps nothing across a restart).
            detail = ", ".join(f"partition {p}: latest {o} < next {begin[p]}" for p, o in sorted(behind.items()))
            msg = f"Kafka topic '{self.topic}' at {self.bootstrap} went back in time ({detail})"
            if self.fail_on_data_loss:
                raise KafkaSourceError(msg + "; set failOnDataLoss=false to continue from its earliest offsets")
            _say(msg + "; continuing from its earliest offsets (failOnDataLoss=false)")
            earliest = earliest_offsets(self._client(), self.topic, sorted(behind))
            return {str(p): (earliest[p] if p in behind else max(o, begin[p])) for p, o in latest.items()}
        if isinstance(limit, ReadMaxRows):
            latest = cap_offsets(begin, latest, limit.max_rows)
        return {str(p): max(o, begin[p]) for p, o in latest.items()}

    def reportLatestOffset(self) -> dict | None:
        """For the progress report, right after latestOffset in the same trigger: its answer, not a
        second round trip to the broker (0.2 s per trigger, measured)."""
        latest = self._last_latest if self._last_latest is not None else self._latest()
        return {str(p): o for p, o in latest.items()}

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        out: list[InputPartition] = []
        earliest = self._waiting(lambda consumer: earliest_offsets(consumer, self.topic, [int(p) for p in end]))
        gone = {int(p): (int(start.get(p, 0)), earliest.get(int(p), 0)) for p in end if int(start.get(p, 0)) < earliest.get(int(p), 0)}
        if gone:
            where = ", ".join(f"partition {p} offsets {a}..{b - 1}" for p, (a, b) in sorted(gone.items()))
            msg = f"Kafka topic '{self.topic}': records gone before they were read (retention, or a deleted topic): {where}"
            if self.fail_on_data_loss:
                raise KafkaSourceError(msg + "; set stream.fail_on_data_loss = false (failOnDataLoss=false) to skip them and go on")
            _say(msg + "; skipping them (failOnDataLoss=false)")
        for p_str, stop in sorted(end.items(), key=lambda kv: int(kv[0])):
            p = int(p_str)
            begin = max(int(start.get(p_str, 0)), earliest.get(p, 0))
            for lo in range(begin, int(stop), self.max_per_split):
                out.append(KafkaRange(self.topic, p, lo, min(int(stop), lo + self.max_per_split)))
        return out

    def read(self, partition: InputPartition) -> Iterator[tuple[Any, ...]]:
        """Records with start <= offset < end of one partition; fails rather than return fewer."""
        import datetime as dt

        from kafka import TopicPartition

        assert isinstance(partition, KafkaRange)
        if partition.end <= partition.start:
            return
        consumer = _read_consumer(self.bootstrap, self.options)
        try:
            tp = TopicPartition(partition.topic, partition.partition)
            consumer.assign([tp])
            consumer.seek(tp, partition.start)
            deadline = time.monotonic() + float(self.options.get("readTimeoutSeconds", "120"))
            while consumer.position(tp) < partition.end:
                if time.monotonic() > deadline:
                    raise KafkaSourceError(
                        f"Kafka at {self.bootstrap}, topic '{partition.topic}' partition {partition.partition}: timed out reading "
                        f"offsets {partition.start}..{partition.end - 1} (at {consumer.position(tp)})"
                    )
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    if record.offset >= partition.end:
                        break
                    if record.offset >= partition.start:
                        ts = dt.datetime.fromtimestamp(record.timestamp / 1000.0, tz=dt.UTC) if record.timestamp is not None else None
                        yield (record.key, record.value, partition.topic, partition.partition, record.offset, ts)
        except BaseException:
            _drop_read_consumer(self.bootstrap, self.options)
            raise

    def commit(self, end: dict) -> None:
        """Nothing to do: Spark's checkpoint holds the offsets; no consumer group is used."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> DataSourceStreamReader:
        return KafkaStreamReader(self.options)
