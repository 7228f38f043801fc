#!/usr/bin/env bash
# GPU check for the wav2vec encoder (needs CUDA): device, fp16, encode vs encode_batch(16) per window, p50/p99,
# memory, and the encoder actor placed through Ray with num_gpus. Prints JSON (also written to --output).
# Without CUDA: one line "gpu_check: error: ..." and exit code 2.
#   scripts/gpu_check.sh [--model facebook/wav2vec2-base] [--repeats 50] [--output gpu_check.json] [--no-ray]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
