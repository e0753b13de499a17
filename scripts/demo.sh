#!/usr/bin/env bash
# Set everything up, then run the main job: a local Apache Kafka broker, a replay producer streaming
# Iris into it, and the Spark streaming trainer reading it with Spark's Kafka connector (extra
# arguments go to 'streaming-lstm demo', e.g. --json, --source socket, --broker tansu, --rows 3000).
# Set-up fetches the two jar sets the demo uses (the connector and the broker), not the HDFS one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh kafka-connector kafka-broker
exec .venv/bin/streaming-lstm demo "$@"
