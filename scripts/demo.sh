#!/usr/bin/env bash
# Set everything up, then run the main job: the embedded Kafka-compatible broker, a replay producer
# streaming Iris into it, and the Spark streaming trainer learning from it (extra arguments go to
# 'streaming-lstm demo', e.g. --json, --source socket, --rows 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streaming-lstm demo "$@"
