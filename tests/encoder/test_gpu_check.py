"""scripts/gpu_check.sh without CUDA: one error line, exit code 2, no JSON written (the GPU run itself needs a GPU)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_without_cuda_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=str(Path(os.sys.executable)))  # hide any GPU
    output = tmp_path / "gpu.json"
    result = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), "--output", str(output), "--no-ray"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: no CUDA device"), result.stderr
    assert result.stdout == "" and not output.exists()
