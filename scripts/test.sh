#!/usr/bin/env bash
# Set everything up, then run the whole test suite (extra arguments go to pytest, e.g. -m "not spark").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh  # every jar set: the suite runs Kafka, HDFS and the connector
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m pytest "$@"
