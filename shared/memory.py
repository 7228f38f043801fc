"""Keep a long-running process's heap from growing with large, short-lived numpy buffers (glibc only).

glibc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB) with ``mmap`` and returns them to the system on
``free``, but its *dynamic* threshold rises to the size of every mmap'd block freed (up to 32 MiB). After the live
oracle frees its first multi-MB array (a background rebuild's swap, a growth step, a checkpoint's buffers), every later
array of that size comes from the heap arenas instead, where freed blocks stay resident as fragmentation — one arena
per thread that allocated (the oracle loop, each rebuild thread). Measured offline with the live oracle's work
(9,000 events, 16-D, background rebuilds, a checkpoint every 25 events, in a thread like the actor's loop): RSS
+29 MB for +7.5 MB of oracle arrays; with the threshold fixed, +11 MB (see benchmarks/soak.py for the live figures).

:func:`fix_malloc_thresholds` pins both thresholds (pinning either one turns the dynamic adjustment off), so large
buffers always go to ``mmap`` and return to the system when freed. It is idempotent, process-wide and a no-op off
glibc or when the environment already sets ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["fix_malloc_thresholds", "MMAP_THRESHOLD_BYTES"]

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default starting value
_M_TRIM_THRESHOLD = -1  # from malloc.h
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def fix_malloc_thresholds(mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap and trim thresholds (once per process); returns True when they are pinned."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        _done = True  # the environment pinned them already (glibc reads it at start-up)
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return _done
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    size = int(mmap_threshold_bytes)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * size))
    return _done
