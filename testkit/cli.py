"""Run the ``musichal`` command line the way the one-line-error tests need it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["cli_without_ray"]

REPO = Path(__file__).resolve().parents[1]


def cli_without_ray(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``musichal ARGS`` in a fresh interpreter in which importing Ray fails: an error before Ray starts is the only
    way to get a clean exit code 2 there (and proves the check runs before Ray). The hub is never asked for a model."""
    code = "import sys; sys.modules['ray'] = None; import launch; sys.exit(launch.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
