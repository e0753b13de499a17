"""What the subcommands share: flag groups as argparse parents (configuration, ``--json``,
``--strict``, ``--remote``, the stream source), flags that declare their own configuration key, and
turning parsed flags into an :class:`~streaming_lstm.core.config.AppConfig`.

Precedence: typed defaults in code, then the TOML file (``--conf``), then ``--set KEY=VALUE``, then
the dedicated flags (``--epochs``, ``--partitions`` ...), each of which names its key in its help.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming_lstm.core.config import KAFKA_READERS, AppConfig, ConfigError
from streaming_lstm.core.config_load import load_config
from streaming_lstm.local.process import Service

DEFAULT_CONF = "conf/iris.toml"
OVERRIDES = "config_overrides"


class ConfigFlag(argparse.Action):
    """A flag that sets one configuration key: its value lands in ``dest`` as usual and in the
    namespace's ``config_overrides`` under ``key`` (only when the flag is given)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, key: str, **kwargs: Any) -> None:
        self.key = key
        kwargs["help"] = f"{kwargs.get('help', '')} ({key})".strip()
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, OVERRIDES, {**(getattr(namespace, OVERRIDES, None) or {}), self.key: values})


def parent() -> argparse.ArgumentParser:
    """A parser to be used as ``parents=[...]`` (no ``-h`` of its own)."""
    return argparse.ArgumentParser(add_help=False)


def config_parent() -> argparse.ArgumentParser:
    p = parent()
    g = p.add_argument_group("configuration")
    g.add_argument("--conf", metavar="TOML", help=f"configuration file (default: {DEFAULT_CONF} if it exists)")
    g.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="settings", help="override any key, e.g. --set train.learning_rate=0.003 (repeatable)"
    )
    g.add_argument("--epochs", type=int, action=ConfigFlag, key="train.epochs", help="standalone training epochs")
    g.add_argument("--local-epochs", type=int, action=ConfigFlag, key="train.local_epochs", help="epochs per streaming partition task")
    g.add_argument("--hidden", metavar="H1,H2,..", action=ConfigFlag, key="model.hidden", help="LSTM layer sizes, e.g. 128,256")
    g.add_argument("--seed", type=int, action=ConfigFlag, key="model.seed", help="model seed")
    return p


def json_parent(what: str = "print the result as one JSON object") -> argparse.ArgumentParser:
    p = parent()
    p.add_argument("--json", action="store_true", help=what)
    return p


def strict_parent() -> argparse.ArgumentParser:
    p = parent()
    p.add_argument(
        "--strict",
        action="store_true",
        help="any rejected row is an error (default: rejected rows are counted by reason, with a warning above 1%%)",
    )
    return p


def add_remote(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--remote",
        metavar="URL",
        help="run over Spark Connect: sc://HOST:PORT, or 'local' to start a local Connect server for this run (default: $SPARK_REMOTE; unset: classic Spark)",
    )


def add_reader(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--kafka-reader",
        choices=KAFKA_READERS,
        action=ConfigFlag,
        key="stream.kafka_reader",
        help="Kafka: spark = Spark's own connector (fetched by scripts/setup.sh), python = the project's Python data source; "
        "auto (default) = the connector when its jar is on the classpath",
    )


def source_parent(*, required: bool) -> argparse.ArgumentParser:
    """The stream source flags shared by ``train`` and ``predict``."""
    p = parent()
    src = p.add_argument_group("source")
    what = "where rows come from" + ("" if required else "; omit to score --data")
    src.add_argument("--source", choices=("socket", "file", "kafka"), required=required, help=what)
    src.add_argument("--host", default="127.0.0.1", help="socket source host (default 127.0.0.1)")
    src.add_argument("--port", type=int, help="socket source port")
    src.add_argument("--path", metavar="DIR", help="file source: directory of CSV (or JSON lines) files")
    src.add_argument("--bootstrap", metavar="SERVERS", help="Kafka bootstrap servers (default: $STREAMING_LSTM_BOOTSTRAP or $KAFKA_BOOTSTRAP_SERVERS)")
    src.add_argument("--topic", help="Kafka topic")
    src.add_argument(
        "--kafka-option", metavar="KEY=VALUE", action="append", default=[], help="passed to Kafka as is, e.g. kafka.security.protocol=SASL_SSL (repeatable)"
    )
    src.add_argument("--kafka-properties", metavar="FILE", help="a Kafka client properties file (security.protocol=SASL_SSL ...); --kafka-option wins")
    add_reader(src)
    return p


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> AppConfig:
    """The configuration the flags describe: ``defaults`` (a command's own), the TOML file,
    ``--set``, then the flags that name a key."""
    overrides: dict[str, Any] = dict(defaults or {})
    for item in getattr(args, "settings", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    overrides.update(getattr(args, OVERRIDES, None) or {})
    path = args.conf
    if path is None:
        if not Path(DEFAULT_CONF).exists():
            raise ConfigError(f"no --conf given and {DEFAULT_CONF} not found in {Path.cwd()}: pass --conf FILE")
        path = DEFAULT_CONF
    return load_config(path, overrides)


def interrupt_exits_quietly() -> None:
    """Until the stream runs (the runner then installs its own handler, which finishes the batch in
    flight): Ctrl-C exits 130 with one line. Raising KeyboardInterrupt into a py4j call instead
    leaves py4j and the JVM to print pages of tracebacks while the process unwinds; the JVM
    gateway exits when this process does."""

    def _exit(_signum: int, _frame: object) -> None:
        print("streaming-lstm: interrupted during start-up", file=sys.stderr, flush=True)
        Service.kill_running()  # a broker or Connect server this run started goes with it
        os._exit(130)

    signal.signal(signal.SIGINT, _exit)
