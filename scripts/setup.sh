#!/usr/bin/env bash
# Set up everything MusicHal needs on a Debian/Ubuntu machine (idempotent):
# apt packages (when root), a .venv, a CPU torch on Linux without CUDA (unless a torch is present), the package with [dev].
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
APT_PACKAGES="jackd2 libjack-jackd2-dev portaudio19-dev libasound2-dev fluidsynth fluid-soundfont-gm libsndfile1 iproute2"
# the console's browser tests (tests/console): headless Chromium driven by Selenium
APT_PACKAGES="$APT_PACKAGES chromium chromium-driver"

log() { printf '[setup] %s\n' "$*"; }

if [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ]; then
      log "installing apt packages:$missing"
      export DEBIAN_FRONTEND=noninteractive
      echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections || true
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      log "missing apt packages:$missing (run as root, or: sudo apt-get install$missing)"
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    log "installing CPU torch 2.13.0 (bring your own torch build for CUDA/MPS before running this)"
    "$PY" -m pip install -q "torch==2.13.0"
  else
    log "installing torch (a CUDA/MPS machine: install the torch build you want first to skip this)"
    "$PY" -m pip install -q "torch>=2.1,<3"
  fi
fi

log "installing musichal[dev]"
"$PY" -m pip install -q -e ".[dev]"
# the oracle's numba kernels compiled into numba's cache now, not on the first `musichal` (its start-up's
# critical path: ~7 s here); later starts load them in < 1 s
log "compiling the oracle's numba kernels: $("$PY" -m services.oracle.warm)"
log "ready: $VENV"
