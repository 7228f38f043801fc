"""The numba kernels and checks both oracles share (the factor oracle's and the Audio Oracle's online construction).

- :func:`hash3` / :func:`probe`: an open-addressing hash table of ``(a, b, c)`` keys (column 0 == -1 marks empty);
- :func:`lrs_after_jump`, :func:`find_better`, :func:`link_state`: the suffix-link steps of Lefebvre & Lecroq
  (2000) as vmo does them, over a state table whose label column differs per oracle;
- :func:`rehash`: grow the "find better" index;
- :func:`aligned`: a 64-byte-aligned int64 array (one state row == one cache line);
- :func:`validate_links`, :func:`require_parts`: the checks of a stored oracle (ModelFormatError, one line).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from shared.errors import ModelFormatError

__all__ = [
    "hash3",
    "probe",
    "lrs_after_jump",
    "find_better",
    "link_state",
    "rehash",
    "aligned",
    "validate_links",
    "require_parts",
]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)


@numba.njit(cache=True, inline="always")
def hash3(a, b, c, mask):
    h = np.uint64(a) * _M1 ^ np.uint64(b) * _M2 ^ np.uint64(c) * _M3
    h ^= h >> np.uint64(31)
    return np.int64(h & np.uint64(mask))


@numba.njit(cache=True, inline="always")
def probe(table, a, b, c):
    """Slot of key ``(a, b, c)`` or of the empty slot where it would go (column 0 == -1 marks empty)."""
    mask = table.shape[0] - 1
    h = hash3(a, b, c, mask)
    while True:
        ka = table[h, 0]
        if ka == -1 or (ka == a and table[h, 1] == b and table[h, 2] == c):
            return h
        h = (h + 1) & mask


@numba.njit(cache=True, inline="always")
def lrs_after_jump(table, sfx_col, lrs_col, pi_1, target):
    """LRS of the new state whose suffix link is ``target``: one more than the common suffix of ``pi_1`` (the last
    state of the suffix chain walked) and ``target - 1`` (Lefebvre & Lecroq 2000). Shared by both oracles."""
    p2 = target - 1
    s_p1 = table[pi_1, sfx_col]
    if p2 == s_p1:
        common = table[pi_1, lrs_col]
    else:
        while table[p2, sfx_col] != s_p1 and p2 != 0:
            p2 = table[p2, sfx_col]
        common = min(table[pi_1, lrs_col], table[p2, lrs_col])
    return common + 1


@numba.njit(cache=True, inline="always")
def find_better(table, label_col, better, s_i, l_i, i):
    """vmo's "find better": the first state with suffix link ``s_i`` and LRS ``l_i`` whose symbol before its repeated
    suffix is the new state's makes a suffix one longer; returns the (possibly improved) ``(s_i, l_i)``. Shared by
    both oracles (the label column differs)."""
    slot = probe(better, s_i, l_i, table[i - l_i, label_col])
    if better[slot, 0] != -1:
        return better[slot, 3], l_i + 1
    return s_i, l_i


@numba.njit(cache=True, inline="always")
def link_state(table, label_col, head_col, tail_col, next_col, better, s_i, l_i, i):
    """Append state ``i`` to the reverse-suffix list of ``s_i`` and index it for :func:`find_better` (the first
    state per key stays); returns 1 when a new index entry was stored, else 0. Shared by both oracles."""
    tail = table[s_i, tail_col]
    if tail == -1:
        table[s_i, head_col] = i
    else:
        table[tail, next_col] = i
    table[s_i, tail_col] = i
    label = table[i - l_i, label_col]
    slot = probe(better, s_i, l_i, label)
    if better[slot, 0] != -1:
        return 0
    better[slot, 0] = s_i
    better[slot, 1] = l_i
    better[slot, 2] = label
    better[slot, 3] = i
    return 1


@numba.njit(cache=True, nogil=True)
def rehash(old, new):
    for slot in range(old.shape[0]):
        if old[slot, 0] != -1:
            dest = probe(new, old[slot, 0], old[slot, 1], old[slot, 2])
            for c in range(4):
                new[dest, c] = old[slot, c]


def aligned(shape: tuple[int, ...], fill: int) -> np.ndarray:
    """An int64 array whose data starts on a 64-byte boundary (one state row == one cache line)."""
    size = int(np.prod(shape))
    buffer = np.empty(size + 8, dtype=np.int64)
    offset = (-buffer.ctypes.data % 64) // 8
    out = buffer[offset : offset + size].reshape(shape)
    out.fill(fill)
    return out


def validate_links(sfx: np.ndarray, lrs: np.ndarray, n: int, *, what: str) -> None:
    if n < 1 or sfx.shape != (n,) or lrs.shape != (n,):
        raise ModelFormatError(f"{what}: sfx/lrs must have n_states={n} entries")
    if sfx[0] != -1 or lrs[0] != 0:
        raise ModelFormatError(f"{what}: state 0 must have sfx -1 and lrs 0")
    index = np.arange(n)
    if n > 1 and (
        (sfx[1:] < 0).any() or (sfx[1:] >= index[1:]).any() or (lrs[1:] < 0).any() or (lrs[1:] >= index[1:]).any()
    ):
        raise ModelFormatError(f"{what}: suffix links must point backwards and LRS must be in 0..i-1")


def require_parts(
    kind: str, meta: Any, arrays: dict[str, np.ndarray], *, schema: str, names: list[str], prefix: str
) -> None:
    """Check a stored oracle's schema and that its arrays are all there (ModelFormatError, one line)."""
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise ModelFormatError(f"{kind}: schema {found!r} is not {schema!r}")
    missing = [prefix + n for n in names if prefix + n not in arrays]
    if missing:
        raise ModelFormatError(f"{kind}: arrays missing: {', '.join(missing)}")
