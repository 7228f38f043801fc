"""The oracle's warm-up as ``scripts/setup.sh`` runs it: the kernels compiled once into numba's cache, loaded after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _warm(cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-m", "services.oracle.warm"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_warm_up_compiles_the_kernels_once_and_every_later_process_loads_them(tmp_path):
    """What setup does for the first ``musichal``: a process with an empty cache compiles (and writes the cache),
    the next one compiles nothing and loads every kernel it uses from the cache."""
    first = _warm(tmp_path)
    assert first["compiled"] > 0 and first["from_cache"] == 0, first
    assert list(tmp_path.rglob("*.nbi")), "nothing written to numba's cache"
    second = _warm(tmp_path)
    assert second["compiled"] == 0 and second["from_cache"] > 0, second
