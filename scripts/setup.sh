#!/usr/bin/env bash
# Create .venv and install streaming-lstm with its dev, embedded-broker, bench and mlflow extras, then fetch the JVM
# parts with Maven into .jars/: the jar sets named as arguments (kafka-connector, kafka-broker, hdfs),
# or all of them when none is named. scripts/demo.sh names the two the demo uses; scripts/test.sh all.
# Then the driver JVM's class-data-sharing archive (once per Java runtime and PySpark).
# Idempotent: reinstalls only when pyproject.toml changed; cached jars are reused without network.
# Fails with one clear line if Java, Python or Maven is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1 && [ ! -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
  echo "error: Java was not found. Spark needs Java 17 or 21: install it (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless) or set JAVA_HOME." >&2
  exit 1
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (tried '$PY'; set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing streaming-lstm and its dependencies into .venv (first time: about a minute)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev,embedded,bench,mlflow]"
  touch .venv/.installed
fi

# The JVM parts: one progress line per jar set with its size; a failure names the artifact and what to do.
.venv/bin/python -m streaming_lstm.local.jvm_deps "$@"

# The driver JVM's class-data-sharing archive (streaming_lstm/spark/cds.py): a local Spark session
# then starts about 3 s sooner. Made once per Java runtime and PySpark (about 40 s); without it
# everything runs, only slower to start.
.venv/bin/python -m streaming_lstm.spark.cds
