#!/usr/bin/env bash
# Set everything up, then run the main job (extra arguments go to 'streaming-lstm demo').
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
out="runs/iris-standalone"
.venv/bin/streaming-lstm fit --data data/iris.csv --out "$out" --holdout 0.3 "$@"
.venv/bin/streaming-lstm evaluate --model "$out" --data data/iris.csv
