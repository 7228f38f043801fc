"""Symbolic factor oracle, built online in amortised linear time over flat numpy arrays (numba kernels).

Construction follows Allauzen, Crochemore & Raffinot (1999) with the longest-repeated-suffix (LRS)
computation of Lefebvre & Lecroq (2000), exactly as the ``vmo`` package's ``FO.add_state`` does it
(including its "find better suffix" correction), so results agree with vmo link by link.

Layout (all ``int64``, growable by doubling, no Python object per state):

- ``_rows`` ``(capacity, 8)``, one 64-byte cache line per state: symbol, symbol of the next state (so the
  implicit forward transition ``k -> k+1`` is checked without touching row ``k+1``), suffix link, LRS, head
  of the state's jump list, head/tail of its reverse-suffix list, next sibling in its parent's list;
- ``_edges`` ``(capacity, 4)``: the non-forward transitions in creation order ``(src, symbol, dst, next)``,
  each state's jumps chained newest first;
- ``_jumps`` (open addressing, linear probing): ``(state, symbol) -> target`` so a transition lookup is
  O(1) however many transitions a state has (state 0 has one per distinct symbol);
- ``_better``: the same kind of table for the "find better" step, keyed ``(suffix state, lrs, preceding
  symbol)``, so it never scans a reverse-suffix list.

Each symbol costs amortised O(1) suffix-chain steps and O(1) hash probes: the cost per event does not grow
with the oracle (beyond cache effects). Kernels are compiled with ``cache=True`` (first use in a fresh
environment compiles them once, about a second; later processes load the cache from ``__pycache__``).

>>> fo = FactorOracle()
>>> fo.extend([0, 1, 1, 1, 0, 0, 1])  # "abbbaab"
>>> fo.sfx.tolist(), fo.lrs.tolist()
([-1, 0, 0, 2, 3, 1, 1, 2], [0, 0, 0, 1, 2, 1, 1, 2])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numba
import numpy as np

from services.oracle.memory.kernels import (
    aligned,
    find_better,
    link_state,
    lrs_after_jump,
    probe,
    rehash,
    require_parts,
    validate_links,
)
from shared.errors import ModelFormatError, ParameterError

__all__ = ["FactorOracle", "FO_SCHEMA"]

FO_SCHEMA = "musichal-factor-oracle/1"

# row columns
_SYM, _FWD, _SFX, _LRS, _JHEAD, _RSHEAD, _RSTAIL, _RSNEXT = range(8)
_NCOL = 8
# counters: [n_states, n_edges, n_better]
_N, _E, _B = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _extend_kernel(rows, edges, jumps, better, counters, symbols, start):
    """Add ``symbols[start:]``; stops early (returns the next position) when the state capacity runs out."""
    capacity = rows.shape[0]
    pos = start
    total = symbols.shape[0]
    while pos < total:
        i = counters[_N]
        if i >= capacity:
            return pos
        symbol = symbols[pos]
        rows[i, _SYM] = symbol
        rows[i, _FWD] = -1
        rows[i, _JHEAD] = -1
        rows[i, _RSHEAD] = -1
        rows[i, _RSTAIL] = -1
        rows[i, _RSNEXT] = -1
        rows[i - 1, _FWD] = symbol
        counters[_N] = i + 1
        k = rows[i - 1, _SFX]
        pi_1 = i - 1
        target = -1
        while k != -1:
            if rows[k, _FWD] == symbol:  # k < i - 1, so k + 1 exists
                target = k + 1
                break
            slot = probe(jumps, k, symbol, 0)
            if jumps[slot, 0] != -1:
                target = jumps[slot, 3]
                break
            jumps[slot, 0] = k
            jumps[slot, 1] = symbol
            jumps[slot, 2] = 0
            jumps[slot, 3] = i
            e = counters[_E]
            counters[_E] = e + 1
            edges[e, 0] = k
            edges[e, 1] = symbol
            edges[e, 2] = i
            edges[e, 3] = rows[k, _JHEAD]
            rows[k, _JHEAD] = e
            pi_1 = k
            k = rows[k, _SFX]
        if k == -1:
            s_i = 0
            l_i = 0
        else:
            s_i = target
            l_i = lrs_after_jump(rows, _SFX, _LRS, pi_1, target)
        s_i, l_i = find_better(rows, _SYM, better, s_i, l_i, i)
        rows[i, _SFX] = s_i
        rows[i, _LRS] = l_i
        counters[_B] += link_state(rows, _SYM, _RSHEAD, _RSTAIL, _RSNEXT, better, s_i, l_i, i)
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def _load_kernel(rows, edges, jumps, better, counters, n, src, sym, dst):
    """Rebuild rows/edges/indexes from saved links; returns the index of a duplicate transition or -1."""
    for i in range(n):
        rows[i, _FWD] = rows[i + 1, _SYM] if i + 1 < n else -1
        rows[i, _JHEAD] = -1
        rows[i, _RSHEAD] = -1
        rows[i, _RSTAIL] = -1
        rows[i, _RSNEXT] = -1
    for e in range(src.shape[0]):
        k = src[e]
        slot = probe(jumps, k, sym[e], 0)
        if jumps[slot, 0] != -1:
            return e
        jumps[slot, 0] = k
        jumps[slot, 1] = sym[e]
        jumps[slot, 2] = 0
        jumps[slot, 3] = dst[e]
        edges[e, 0] = k
        edges[e, 1] = sym[e]
        edges[e, 2] = dst[e]
        edges[e, 3] = rows[k, _JHEAD]
        rows[k, _JHEAD] = e
    counters[_N] = n
    counters[_E] = src.shape[0]
    for i in range(1, n):
        s_i = rows[i, _SFX]
        l_i = rows[i, _LRS]
        counters[_B] += link_state(rows, _SYM, _RSHEAD, _RSTAIL, _RSNEXT, better, s_i, l_i, i)
    return -1


@numba.njit(cache=True)
def _transition(rows, jumps, n, state, symbol):
    if state + 1 < n and rows[state, _FWD] == symbol:
        return state + 1
    slot = probe(jumps, state, symbol, 0)
    return jumps[slot, 3] if jumps[slot, 0] != -1 else -1


@numba.njit(cache=True)
def _find_context(rows, jumps, n, context):
    state = 0
    for symbol in context:
        state = _transition(rows, jumps, n, state, symbol)
        if state < 0:
            return -1
    length = context.shape[0]
    if state < length:
        return -1
    for offset in range(length):
        if rows[state - length + 1 + offset, _SYM] != context[offset]:
            return -1
    return state


@numba.njit(cache=True)
def _jump_edges(rows, edges, state):
    """Edge indices of ``state``'s jumps in insertion order."""
    count = 0
    e = rows[state, _JHEAD]
    while e != -1:
        count += 1
        e = edges[e, 3]
    out = np.empty(count, dtype=np.int64)
    e = rows[state, _JHEAD]
    while e != -1:
        count -= 1
        out[count] = e
        e = edges[e, 3]
    return out


@numba.njit(cache=True)
def _children(rows, state, limit):
    out = np.empty(limit, dtype=np.int64)
    count = 0
    child = rows[state, _RSHEAD]
    while child != -1 and count < limit:
        out[count] = child
        count += 1
        child = rows[child, _RSNEXT]
    return out[:count]


@numba.njit(cache=True)
def _occurrences(rows, end_state, length, limit):
    out = np.empty(limit, dtype=np.int64)
    out[0] = end_state
    count = 1
    head = 0
    while head < count and count < limit:
        node = out[head]
        head += 1
        child = rows[node, _RSHEAD]
        while child != -1 and count < limit:
            if rows[child, _LRS] >= length:
                out[count] = child
                count += 1
            child = rows[child, _RSNEXT]
    return out[:count]


def _ro(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class FactorOracle:
    """Online factor oracle over non-negative integer symbols (tokens).

    State 0 is the empty prefix; state ``i`` (1-based) is reached after the ``i``-th symbol.
    ``sfx[0] == -1`` (no suffix link), ``symbols[0] == -1``.

    Parameters
    ----------
    capacity : int
        Initial number of states to allocate (grows by doubling).
    """

    __slots__ = ("_rows", "_edges", "_jumps", "_better", "_counters", "_one")

    def __init__(self, *, capacity: int = 1024) -> None:
        if int(capacity) < 2:
            raise ParameterError("capacity must be >= 2")
        self._allocate(int(capacity))
        self._rows[0, _SYM] = -1
        self._rows[0, _SFX] = -1
        self._rows[0, _LRS] = 0
        self._counters = np.array([1, 0, 0], dtype=np.int64)
        self._one = np.zeros(1, dtype=np.int64)

    # ------------------------------------------------------------------ storage
    def _allocate(self, capacity: int) -> None:
        capacity = 1 << max(1, (capacity - 1).bit_length())
        self._rows = aligned((capacity, _NCOL), -1)
        self._edges = np.full((capacity, 4), -1, dtype=np.int64)  # a factor oracle has < n jump transitions
        self._jumps = np.full((2 * capacity, 4), -1, dtype=np.int64)  # load factor <= 1/2
        self._better = np.full((2 * capacity, 4), -1, dtype=np.int64)

    def _grow(self) -> None:
        self._reserve(2 * self._rows.shape[0])

    def _reserve(self, n_states: int) -> None:
        """Make room for ``n_states`` states with a single reallocation (and rehash)."""
        if n_states > self._rows.shape[0]:
            n, e = self.n_states, int(self._counters[_E])
            rows, edges, jumps, better = self._rows, self._edges, self._jumps, self._better
            self._allocate(n_states)
            self._rows[:n] = rows[:n]
            self._edges[:e] = edges[:e]
            rehash(jumps, self._jumps)
            rehash(better, self._better)

    def _run(self, symbols: np.ndarray) -> None:
        self._reserve(self.n_states + symbols.shape[0])
        pos = 0
        while pos < symbols.shape[0]:
            if self.n_states >= self._rows.shape[0]:
                self._grow()
            pos = _extend_kernel(self._rows, self._edges, self._jumps, self._better, self._counters, symbols, pos)

    # ------------------------------------------------------------------ queries
    @property
    def n_states(self) -> int:
        return int(self._counters[_N])

    def __len__(self) -> int:
        return self.n_states

    @property
    def n_transitions(self) -> int:
        """Number of transitions, forward ones included."""
        return self.n_states - 1 + int(self._counters[_E])

    @property
    def sfx(self) -> np.ndarray:
        """Suffix links (``sfx[0] == -1``), a read-only view."""
        return _ro(self._rows[: self.n_states, _SFX])

    @property
    def lrs(self) -> np.ndarray:
        """Longest repeated suffix per state, a read-only view."""
        return _ro(self._rows[: self.n_states, _LRS])

    @property
    def symbols(self) -> np.ndarray:
        """Incoming symbol per state (``symbols[0] == -1``), a read-only view."""
        return _ro(self._rows[: self.n_states, _SYM])

    @property
    def nbytes(self) -> int:
        """Bytes held by the oracle's arrays (allocated capacity included)."""
        return sum(a.nbytes for a in (self._rows, self._edges, self._jumps, self._better))

    def transition(self, state: int, symbol: int) -> int:
        """Target of the transition from ``state`` on ``symbol``, or -1."""
        return int(_transition(self._rows, self._jumps, self.n_states, int(state), int(symbol)))

    def transitions(self, state: int) -> dict[int, int]:
        """All transitions of ``state`` as ``{symbol: target}`` in insertion order (forward link first)."""
        state = int(state)
        out: dict[int, int] = {}
        if state + 1 < self.n_states:
            out[int(self._rows[state, _FWD])] = state + 1
        for e in _jump_edges(self._rows, self._edges, state).tolist():
            out[int(self._edges[e, 1])] = int(self._edges[e, 2])
        return out

    def transition_targets(self, state: int) -> list[int]:
        """Targets of ``state``'s transitions in insertion order (vmo's ``trn[state]``)."""
        return list(self.transitions(state).values())

    def rsfx(self, state: int, *, limit: int | None = None) -> list[int]:
        """Reverse suffix links of ``state`` (states whose suffix link points here), increasing; at most ``limit``."""
        count = self.n_states if limit is None else max(0, int(limit))
        return _children(self._rows, int(state), count).tolist()

    def label(self, state: int) -> int:
        return int(self._rows[state, _SYM])

    def state_info(self, state: int):
        """A :class:`~services.oracle.memory.states.StateInfo` with the symbol as token and default descriptors."""
        from services.oracle.memory.states import StateInfo

        if not 0 <= state < self.n_states:
            raise ParameterError(f"state {state} is outside 0..{self.n_states - 1}")
        return StateInfo(
            state=state,
            token=int(self._rows[state, _SYM]),
            onset_s=0.0,
            duration_s=0.25,
            velocity=80,
            f0_hz=0.0,
            chroma_peaks=(),
            event_id=state - 1,
            source="",
        )

    def add(self, symbol: int) -> int:
        """Append one symbol; returns the new state's index.

        Raises
        ------
        ParameterError
            If ``symbol`` is not a non-negative integer.
        """
        symbol = int(symbol)
        if symbol < 0:
            raise ParameterError(f"factor oracle symbols must be >= 0, got {symbol}")
        if self.n_states >= self._rows.shape[0]:
            self._grow()
        self._one[0] = symbol
        _extend_kernel(self._rows, self._edges, self._jumps, self._better, self._counters, self._one, 0)
        return self.n_states - 1

    def extend(self, symbols: Iterable[int]) -> None:
        """Append many symbols (one kernel call per capacity doubling).

        Raises
        ------
        ParameterError
            If a symbol is negative or not an integer.
        """
        if isinstance(symbols, np.ndarray):
            array = symbols
        elif isinstance(symbols, (list, tuple, range)):
            array = np.asarray(symbols)
        else:
            array = np.fromiter((int(s) for s in symbols), dtype=np.int64)
        if array.size == 0:
            return
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ParameterError("symbols must be a 1-D sequence of integers")
        array = np.ascontiguousarray(array, dtype=np.int64)
        if array.min() < 0:
            raise ParameterError(f"factor oracle symbols must be >= 0, got {int(array.min())}")
        self._run(array)

    def find_context(self, context: list[int]) -> int:
        """End state of the first occurrence of ``context``, or -1 when the oracle cannot place it.

        Reading a factor ends at a state ``<=`` the end of its first occurrence (Allauzen et al.), equal in
        most cases; the candidate is verified against the symbols, so a returned state is always the first
        occurrence, and -1 is returned when the check fails (callers then try a shorter context).
        """
        return int(_find_context(self._rows, self._jumps, self.n_states, np.asarray(context, dtype=np.int64)))

    def occurrences(self, end_state: int, length: int, *, limit: int = 64) -> list[int]:
        """End states of occurrences of the length-``length`` context ending at ``end_state`` (first occurrence).

        Walks the reverse-suffix tree below ``end_state`` keeping states whose LRS is ``>= length``
        (breadth first, at most ``limit`` states). ``end_state`` itself comes first.
        """
        if limit < 1:
            raise ParameterError(f"limit must be >= 1, got {limit}")
        return _occurrences(self._rows, int(end_state), int(length), int(limit)).tolist()

    # ------------------------------------------------------------------ persistence
    def to_model_parts(self, *, prefix: str = "oracle.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)`` for :func:`shared.model_io.save_model`; transitions as flat arrays.

        Jump transitions (the forward ones are implicit) are grouped by source state, each state's in
        insertion order.
        """
        n, e = self.n_states, int(self._counters[_E])
        edges = self._edges[:e]
        order = np.argsort(edges[:, 0], kind="stable")
        meta = {"schema": FO_SCHEMA, "kind": "factor", "n_states": n}
        arrays = {
            f"{prefix}sfx": self._rows[:n, _SFX].copy(),
            f"{prefix}lrs": self._rows[:n, _LRS].copy(),
            f"{prefix}symbols": self._rows[:n, _SYM].copy(),
            f"{prefix}trn_src": edges[order, 0].copy(),
            f"{prefix}trn_symbol": edges[order, 1].copy(),
            f"{prefix}trn_dst": edges[order, 2].copy(),
        }
        return meta, arrays

    @classmethod
    def from_model_parts(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, prefix: str = "oracle."
    ) -> FactorOracle:
        """Inverse of :meth:`to_model_parts`; inconsistent data raises ModelFormatError (one line)."""
        names = ["sfx", "lrs", "symbols", "trn_src", "trn_symbol", "trn_dst"]
        require_parts("factor oracle", meta, arrays, schema=FO_SCHEMA, names=names, prefix=prefix)
        try:
            sfx, lrs, symbols, src, sym, dst = (
                np.asarray(arrays[prefix + n]).astype(np.int64, casting="same_kind") for n in names
            )
        except TypeError as error:
            raise ModelFormatError(f"factor oracle: arrays must be integers: {error}") from None
        try:
            n = int(meta.get("n_states", -1))
        except (TypeError, ValueError):
            raise ModelFormatError("factor oracle: n_states must be an integer") from None
        validate_links(sfx, lrs, n, what="factor oracle")
        if symbols.shape != (n,) or (n and symbols[0] != -1) or (symbols[1:] < 0).any():
            raise ModelFormatError(
                "factor oracle: symbols must have one non-negative symbol per state (and -1 for state 0)"
            )
        if not (src.shape == sym.shape == dst.shape) or src.ndim != 1:
            raise ModelFormatError("factor oracle: transition arrays must be 1-D and of equal length")
        if src.size and ((src < 0).any() or (dst <= src + 1).any() or (dst >= n).any() or (symbols[dst] != sym).any()):
            raise ModelFormatError(
                "factor oracle: a transition points outside the oracle or disagrees with the target's symbol"
            )
        if src.size >= n:
            raise ModelFormatError("factor oracle: more jump transitions than a factor oracle can have")
        oracle = cls(capacity=max(2, n))
        oracle._rows[:n, _SYM] = symbols
        oracle._rows[:n, _SFX] = sfx
        oracle._rows[:n, _LRS] = lrs
        duplicate = _load_kernel(
            oracle._rows,
            oracle._edges,
            oracle._jumps,
            oracle._better,
            oracle._counters,
            n,
            np.ascontiguousarray(src),
            np.ascontiguousarray(sym),
            np.ascontiguousarray(dst),
        )
        if duplicate != -1:
            raise ModelFormatError(
                f"factor oracle: state {int(src[duplicate])} has two transitions on symbol {int(sym[duplicate])}"
            )
        return oracle
