#!/usr/bin/env bash
# The demo: the whole stack on the bundled piece, MIDI recorded to demo_out.mid and rendered to demo_out.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
