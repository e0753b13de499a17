"""``streaming-lstm jars``: fetch the JVM parts (Kafka connector, Kafka broker, HDFS minicluster)
from Maven Central; :mod:`streaming_lstm.local.jvm_deps` does the work."""

from __future__ import annotations

from typing import Any

from streaming_lstm.local import jvm_deps


def add_command(sub: Any) -> None:
    p = sub.add_parser("jars", help="fetch the JVM parts (Kafka connector, Kafka broker, HDFS minicluster) with Maven", description=jvm_deps.description())
    jvm_deps.add_arguments(p)
    p.set_defaults(func=jvm_deps.run)
