"""Kafka connection settings shared by everything that talks to Kafka (trainer, ``predict``, the
replay producer): where the brokers are, and ``--kafka-option`` values.

One spelling everywhere: ``--kafka-option kafka.<Java client name>=VALUE`` (``kafka.security.protocol
=SASL_SSL``). Spark's connector takes these as they are; kafka-python (the Python source and the
producer) gets them with the ``kafka.`` prefix dropped and dots as underscores (:func:`client_config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def client_config(options: Mapping[str, str]) -> dict[str, Any]:
    """``kafka.*`` options as kafka-python keyword arguments (other options are not the client's)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key.startswith("kafka.") and key != "kafka.bootstrap.servers":
            out[key[len("kafka.") :].replace(".", "_")] = value
    return out
