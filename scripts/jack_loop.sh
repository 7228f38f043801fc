#!/usr/bin/env bash
# The JACK MIDI, lifecycle and exit-path tests N times in a row beside one busy process (a slower machine);
# fails on the first failure. CI runs it with N=10; locally: bash scripts/jack_loop.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
python3 -c 'while True: pass' &
busy=$!
trap 'kill "$busy" 2>/dev/null || true' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if ! bash scripts/run_tests.sh tests/midi_out tests/shared/test_jack_plumbing.py; then
    echo "[jack-loop] run $i of $runs FAILED beside a busy process"
    exit 1
  fi
  echo "[jack-loop] run $i of $runs passed in $(( $(date +%s) - start )) s (load $(cut -d' ' -f1 /proc/loadavg))"
done
echo "[jack-loop] $runs of $runs runs passed"
