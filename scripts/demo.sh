#!/usr/bin/env bash
# Set everything up, then run the main job: a local Apache Kafka broker, a replay producer streaming
# Iris into it, and the Spark streaming trainer reading it with Spark's Kafka connector (extra
# arguments go to 'streaming-lstm demo', e.g. --json, --source socket, --broker tansu, --rows 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streaming-lstm demo "$@"
