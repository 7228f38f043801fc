"""scripts/quick_test.sh runs in CI: train → live stack → comparison, a PASS line per step."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "quick_test.sh"


@pytest.mark.slow
@pytest.mark.jack
@pytest.mark.timeout(280)
def test_quick_test_script_passes(jack_server):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=270)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for step in ("setup", "train", "live", "compare"):
        assert f"PASS {step}" in output, output
    assert "FAIL" not in output and "SKIP" not in output, output
    assert output.strip().splitlines()[-1] == "quick test: PASS"
