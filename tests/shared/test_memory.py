"""shared.memory: large freed buffers go back to the system in a long-running process (glibc)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import psutil
    from shared.memory import fix_malloc_thresholds

    pinned = fix_malloc_thresholds() if sys.argv[1] == "fix" else False
    rss = lambda: psutil.Process().memory_info().rss
    big = np.ones(8 << 20, dtype=np.uint8)   # mmap'd; freeing it raises glibc's dynamic threshold to 8 MB
    del big
    keep = []
    base = rss()
    previous = None
    for i in range(40):                       # growing 1-5 MB arrays, each replacing the last (like a live oracle's
        a = np.ones((1 << 20) + i * (100 << 10), dtype=np.uint8)   # swaps), small long-lived objects in between
        keep.append(np.ones(64, dtype=np.uint8))
        previous = a
    del a, previous
    print(int(pinned), (rss() - base) >> 20)
""")


def _run(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=120)
    pinned, growth_mb = out.stdout.split()
    return int(pinned), int(growth_mb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_pinned_thresholds_return_freed_buffers() -> None:
    pinned, growth_mb = _run("fix")
    assert pinned == 1
    assert growth_mb <= 2, f"RSS grew {growth_mb} MB over 40 freed arrays"
    _, unpinned_mb = _run("default")  # the same work with glibc's dynamic thresholds keeps the freed arrays
    assert unpinned_mb >= growth_mb + 8, (unpinned_mb, growth_mb)


def test_fix_is_idempotent() -> None:
    from shared.memory import fix_malloc_thresholds

    assert fix_malloc_thresholds() == fix_malloc_thresholds()
