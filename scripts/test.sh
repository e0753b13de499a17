#!/usr/bin/env bash
# Set everything up, then run the whole test suite (extra arguments go to pytest, e.g. -m "not spark").
# The tests run in STREAMING_LSTM_TEST_WORKERS pytest-xdist worker processes (default 2), one test at
# a time each, an idle worker taking tests from a busy one: most of a command-line test is a JVM
# starting or a stream waiting for its trigger, so two workers on two cores finish the suite in about
# two thirds of the serial time. Each worker starts its own Spark session and, when its tests need
# them, its own broker, HDFS and Connect server (all on free ports). -n 0 runs serially.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh  # every jar set: the suite runs Kafka, HDFS and the connector
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m pytest -n "${STREAMING_LSTM_TEST_WORKERS:-2}" --dist worksteal "$@"
