#!/usr/bin/env bash
# The demo: the whole stack on a bundled clip, MIDI recorded to demo_out.mid and rendered to demo_out.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m scripts.demo "$@"
