"""Kafka connection settings shared by everything that talks to Kafka (trainer, ``predict``, the
replay producer): where the brokers are, and ``--kafka-option`` values.

One spelling everywhere: ``--kafka-option kafka.<Java client name>=VALUE`` (``kafka.security.protocol
=SASL_SSL``), or a Kafka client properties file (``--kafka-properties FILE``: Java names without the
prefix; ``--kafka-option`` wins where both set a key). Spark's connector takes these as they are;
kafka-python (the Python source and the producer) gets them translated (:func:`client_config`):
the JAAS line's username and password, a PEM truststore as its CA file, and the other names with
the ``kafka.`` prefix dropped and dots as underscores.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streaming_lstm.core.config import ConfigError

BOOTSTRAP_ENV = ("STREAMING_LSTM_BOOTSTRAP", "KAFKA_BOOTSTRAP_SERVERS")


def bootstrap_servers(flag: str | None) -> str:
    """``--bootstrap`` or the first of the environment variables in :data:`BOOTSTRAP_ENV`."""
    if flag:
        return flag
    for name in BOOTSTRAP_ENV:
        if os.environ.get(name):
            return os.environ[name]
    raise ConfigError(f"--bootstrap is required for Kafka (or set {' or '.join(BOOTSTRAP_ENV)})")


def parse_options(items: list[str], flag: str = "--kafka-option") -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict; a malformed one is a ConfigError naming it."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_properties(path: str | None) -> dict[str, str]:
    """A Kafka client properties file as ``kafka.``-prefixed options ({} for None)."""
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--kafka-properties {path}: {exc.strerror}") from None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"--kafka-properties {path}:{n}: expected key=value")
        out[f"kafka.{key.strip()}"] = value.strip()
    return out


def kafka_options(option_flags: list[str], properties: str | None) -> dict[str, str]:
    """``--kafka-properties`` then ``--kafka-option`` (which wins), as one dict of options."""
    return {**load_properties(properties), **parse_options(option_flags)}


JAAS = re.compile(r'username\s*=\s*"(?P<user>[^"]*)"\s+password\s*=\s*"(?P<password>[^"]*)"')


def _translated(key: str, value: str, options: Mapping[str, str]) -> dict[str, Any]:
    """One Java client setting in kafka-python's terms."""
    if key == "sasl.jaas.config":
        found = JAAS.search(value)
        if not found:
            raise ConfigError('kafka.sasl.jaas.config: expected a login module line with username="..." password="..."')
        return {"sasl_plain_username": found["user"], "sasl_plain_password": found["password"]}
    if key == "ssl.truststore.location":
        if options.get("kafka.ssl.truststore.type", "JKS").upper() != "PEM":
            raise ConfigError(
                "kafka.ssl.truststore.location: the Python Kafka reader and the producer read a PEM truststore; "
                "set kafka.ssl.truststore.type=PEM (Java clients, Spark's connector included, read PEM too)"
            )
        return {"ssl_cafile": value}
    if key == "ssl.truststore.type":
        return {}
    if key == "ssl.endpoint.identification.algorithm":
        return {"ssl_check_hostname": bool(value)}
    return {key.replace(".", "_"): typed(value)}


def typed(value: str) -> Any:
    """A Java client setting's text as the Python client wants it: numbers as numbers (kafka-python
    compares ``fetch.max.wait.ms`` with its other timeouts), true/false as booleans, else text."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def client_config(options: Mapping[str, str]) -> dict[str, Any]:
    """``kafka.*`` options as kafka-python keyword arguments (other options are not the client's)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key.startswith("kafka.") and key != "kafka.bootstrap.servers":
            out.update(_translated(key[len("kafka.") :], value, options))
    return out


# How kafka-python (3.0) words a bootstrap connection the broker closed: an orderly close, or a
# reset ("Connection reset by peer", or "104 ECONNRESET") when the broker closed with the
# client's bytes unread.
CLOSED_WORDING = ("socket disconnected", "reset by peer", "ECONNRESET")


class AuthFailures(logging.Handler):
    """kafka-python's reports of a failed SASL authentication while a client connects. It retries
    such a failure until its bootstrap timeout and then says only that it could not bootstrap; this
    keeps the first report, so the error can name the cause.

    The broker answers a failed authentication and then closes the connection. When the answer and
    the close arrive in one read, kafka-python (3.0) reports only "socket disconnected" and the
    answer is lost; when the client's next request was still unread, the close arrives as a reset
    ("Connection reset by peer"). So with SASL configured a bootstrap whose every connection the
    broker closed is named as a probable authentication failure (:meth:`cause`), never a bare
    timeout."""

    def __init__(self, sasl: bool = False) -> None:
        super().__init__(logging.WARNING)
        self.sasl = sasl
        self.seen: str | None = None
        self.closed_in_setup = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.seen is None and ("uthentication failed" in text or "SaslAuthentication" in text):
            self.seen = text.removeprefix("Connection failed: ")
        elif text.startswith("Bootstrap connection") and any(closed in text for closed in CLOSED_WORDING):
            self.closed_in_setup += 1

    def cause(self) -> str | None:
        """The authentication failure seen, else the probable one (see the class docstring)."""
        if self.seen:
            return f"authentication failed: {self.seen}"
        if self.sasl and self.closed_in_setup:
            return (
                f"authentication probably failed: the broker closed {self.closed_in_setup} connection(s) while "
                "they were set up, as it does after a wrong SASL user or password (or a security.protocol its "
                "listener does not speak)"
            )
        return None


def uses_sasl(config: Mapping[str, Any]) -> bool:
    """Whether kafka-python keyword arguments (:func:`client_config`) authenticate with SASL."""
    return str(config.get("security_protocol", "")).upper().startswith("SASL")


@contextmanager
def authentication_named(where: str, config: Mapping[str, Any]) -> Iterator[AuthFailures]:
    """Within the block, a failure after a failed authentication becomes one ConfigError naming it;
    ``config`` is the client's kafka-python keyword arguments."""
    watch = AuthFailures(uses_sasl(config))
    logger = logging.getLogger("kafka")
    logger.addHandler(watch)
    try:
        yield watch
    except Exception as exc:
        cause = watch.cause()
        if cause:
            raise ConfigError(f"Kafka at {where}: {cause} ({type(exc).__name__})") from None
        raise
    finally:
        logger.removeHandler(watch)


def ensure_topic(bootstrap: str, topic: str, partitions: int, config: dict[str, Any]) -> None:
    """Create ``topic`` if the cluster lacks it (``partitions`` = -1: the broker's default count
    and replication factor); one that exists is left as it is."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    with authentication_named(bootstrap, config):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **config)
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, partitions, 1 if partitions > 0 else -1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
