#!/usr/bin/env bash
# Run the test suite; "no tests collected" (pytest exit 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export JACK_NO_START_SERVER=1
export RAY_USAGE_STATS_ENABLED=0
export PYTHONHASHSEED=0
.venv/bin/python -m pytest -q -rsx -p no:cacheprovider "$@"  # -rsx: every skip and xfail is listed (a required skip fails the session)
rc=$?
if [ "$rc" = "5" ]; then echo "no tests were collected: failing"; exit 1; fi
exit "$rc"
