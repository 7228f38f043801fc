"""Symbolic factor oracle, built online in amortised linear time.

Construction follows Allauzen, Crochemore & Raffinot (1999) with the longest-repeated-suffix (LRS)
computation of Lefebvre & Lecroq (2000), exactly as the ``vmo`` package's ``FO.add_state`` does it
(including its "find better suffix" correction), so results agree with vmo link by link.

Storage is compact and flat: ``array('q')`` columns for suffix links, LRS and symbols; the forward
transition ``i -> i+1`` is implicit (every state has it), and the other transitions live in a per-state
``dict[symbol, target]`` created only for states that have any. Reverse suffix links are per-state lists
(created lazily). The "find better" step uses an index keyed by ``(suffix state, lrs, preceding symbol)``
so it never scans a reverse-suffix list: the cost per symbol does not grow with the oracle.

>>> fo = FactorOracle()
>>> for s in [0, 1, 1, 1, 0, 0, 1]:  # "abbbaab"
...     _ = fo.add(s)
>>> list(fo.sfx), list(fo.lrs)
([-1, 0, 0, 2, 3, 1, 1, 2], [0, 0, 0, 1, 2, 1, 1, 2])
"""
from __future__ import annotations

import gc
from array import array
from typing import Any, Iterable, Optional

import numpy as np

from shared.errors import ModelFormatError, ParameterError

__all__ = ["FactorOracle", "add_state", "FO_SCHEMA"]

FO_SCHEMA = "musichal-factor-oracle/1"


class FactorOracle:
    """Online factor oracle over non-negative integer symbols (tokens).

    State 0 is the empty prefix; state ``i`` (1-based) is reached after the ``i``-th symbol.
    ``sfx[0] == -1`` (no suffix link), ``symbols[0] == -1``.

    Attributes
    ----------
    sfx, lrs, symbols : array('q')
        Suffix link, longest repeated suffix length and incoming symbol per state.
    """

    __slots__ = ("sfx", "lrs", "symbols", "_jumps", "_rsfx", "_better")

    def __init__(self) -> None:
        self.sfx = array("q", [-1])
        self.lrs = array("q", [0])
        self.symbols = array("q", [-1])
        self._jumps: list[Optional[dict[int, int]]] = [None]  # non-adjacent transitions per state
        self._rsfx: list[Optional[list[int]]] = [None]
        self._better: dict[tuple[int, int, int], int] = {}

    # ------------------------------------------------------------------ queries
    @property
    def n_states(self) -> int:
        return len(self.sfx)

    def __len__(self) -> int:
        return len(self.sfx)

    def transition(self, state: int, symbol: int) -> int:
        """Target of the transition from ``state`` on ``symbol``, or -1."""
        nxt = state + 1
        if nxt < len(self.symbols) and self.symbols[nxt] == symbol:
            return nxt
        jumps = self._jumps[state]
        if jumps is None:
            return -1
        return jumps.get(symbol, -1)

    def transitions(self, state: int) -> dict[int, int]:
        """All transitions of ``state`` as ``{symbol: target}`` in insertion order (forward link first)."""
        out: dict[int, int] = {}
        if state + 1 < len(self.symbols):
            out[self.symbols[state + 1]] = state + 1
        jumps = self._jumps[state]
        if jumps:
            out.update(jumps)
        return out

    def transition_targets(self, state: int) -> list[int]:
        """Targets of ``state``'s transitions in insertion order (vmo's ``trn[state]``)."""
        return list(self.transitions(state).values())

    def rsfx(self, state: int) -> list[int]:
        """Reverse suffix links of ``state`` (states whose suffix link points here), increasing."""
        children = self._rsfx[state]
        return list(children) if children else []

    def label(self, state: int) -> int:
        return self.symbols[state]

    def state_info(self, state: int):
        """A :class:`~services.oracle.states.StateInfo` with the symbol as token and default descriptors."""
        from services.oracle.states import StateInfo

        if not 0 <= state < len(self.symbols):
            raise ParameterError(f"state {state} is outside 0..{len(self.symbols) - 1}")
        return StateInfo(state=state, token=self.symbols[state], onset_s=0.0, duration_s=0.25, velocity=80,
                         f0_hz=0.0, chroma_peaks=(), event_id=state - 1, source="")

    def add(self, symbol: int) -> int:
        """Append one symbol; returns the new state's index."""
        return add_state(self, symbol)

    def extend(self, symbols: Iterable[int]) -> None:
        """Append many symbols. The cyclic GC is paused meanwhile: the oracle's millions of small
        containers would otherwise trigger full collections whose cost grows with the oracle."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for symbol in symbols:
                add_state(self, int(symbol))
        finally:
            if was_enabled:
                gc.enable()

    def find_context(self, context: list[int]) -> int:
        """End state of the first occurrence of ``context``, or -1 when the oracle cannot place it.

        Reading a factor ends at a state ``<=`` the end of its first occurrence (Allauzen et al.), equal in
        most cases; the candidate is verified against the symbols, so a returned state is always the first
        occurrence, and -1 is returned when the check fails (callers then try a shorter context).
        """
        state = 0
        for symbol in context:
            state = self.transition(state, symbol)
            if state < 0:
                return -1
        length = len(context)
        if state < length:
            return -1
        symbols = self.symbols
        for offset in range(length):
            if symbols[state - length + 1 + offset] != context[offset]:
                return -1
        return state

    def occurrences(self, end_state: int, length: int, *, limit: int = 64) -> list[int]:
        """End states of occurrences of the length-``length`` context ending at ``end_state`` (first occurrence).

        Walks the reverse-suffix tree below ``end_state`` keeping states whose LRS is ``>= length``
        (breadth first, at most ``limit`` states). ``end_state`` itself comes first.
        """
        out = [end_state]
        queue = [end_state]
        head = 0
        while head < len(queue) and len(out) < limit:
            node = queue[head]
            head += 1
            for child in self._rsfx[node] or ():
                if self.lrs[child] >= length:
                    out.append(child)
                    queue.append(child)
                    if len(out) >= limit:
                        break
        return out

    # ------------------------------------------------------------------ persistence
    def to_model_parts(self, *, prefix: str = "oracle.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)`` for :func:`shared.model_io.save_model`; transitions as flat arrays."""
        src: list[int] = []
        sym: list[int] = []
        dst: list[int] = []
        for state, jumps in enumerate(self._jumps):
            if jumps:
                for symbol, target in jumps.items():
                    src.append(state)
                    sym.append(symbol)
                    dst.append(target)
        meta = {"schema": FO_SCHEMA, "kind": "factor", "n_states": self.n_states}
        arrays = {
            f"{prefix}sfx": np.frombuffer(self.sfx, dtype=np.int64).copy(),
            f"{prefix}lrs": np.frombuffer(self.lrs, dtype=np.int64).copy(),
            f"{prefix}symbols": np.frombuffer(self.symbols, dtype=np.int64).copy(),
            f"{prefix}trn_src": np.asarray(src, dtype=np.int64),
            f"{prefix}trn_symbol": np.asarray(sym, dtype=np.int64),
            f"{prefix}trn_dst": np.asarray(dst, dtype=np.int64),
        }
        return meta, arrays

    @classmethod
    def from_model_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, prefix: str = "oracle.") -> "FactorOracle":
        """Inverse of :meth:`to_model_parts`; inconsistent data raises ModelFormatError (one line)."""
        if not isinstance(meta, dict) or meta.get("schema") != FO_SCHEMA:
            raise ModelFormatError(f"factor oracle: schema {meta.get('schema') if isinstance(meta, dict) else None!r} is not {FO_SCHEMA!r}")
        names = ["sfx", "lrs", "symbols", "trn_src", "trn_symbol", "trn_dst"]
        missing = [prefix + n for n in names if prefix + n not in arrays]
        if missing:
            raise ModelFormatError(f"factor oracle: arrays missing: {', '.join(missing)}")
        try:
            sfx, lrs, symbols, src, sym, dst = (np.asarray(arrays[prefix + n]).astype(np.int64, casting="same_kind") for n in names)
        except TypeError as error:
            raise ModelFormatError(f"factor oracle: arrays must be integers: {error}") from None
        n = int(meta.get("n_states", -1))
        _validate_links(sfx, lrs, n, what="factor oracle")
        if symbols.shape != (n,) or (n and symbols[0] != -1) or (symbols[1:] < 0).any():
            raise ModelFormatError("factor oracle: symbols must have one non-negative symbol per state (and -1 for state 0)")
        if not (src.shape == sym.shape == dst.shape) or src.ndim != 1:
            raise ModelFormatError("factor oracle: transition arrays must be 1-D and of equal length")
        if src.size and ((src < 0).any() or (dst <= src + 1).any() or (dst >= n).any() or (symbols[dst] != sym).any()):
            raise ModelFormatError("factor oracle: a transition points outside the oracle or disagrees with the target's symbol")
        oracle = cls()
        oracle.sfx = array("q", sfx.tolist())
        oracle.lrs = array("q", lrs.tolist())
        oracle.symbols = array("q", symbols.tolist())
        jumps: list[Optional[dict[int, int]]] = [None] * n
        for s, y, d in zip(src.tolist(), sym.tolist(), dst.tolist()):
            table = jumps[s]
            if table is None:
                table = jumps[s] = {}
            if y in table:
                raise ModelFormatError(f"factor oracle: state {s} has two transitions on symbol {y}")
            table[y] = d
        oracle._jumps = jumps
        rsfx: list[Optional[list[int]]] = [None] * n
        better: dict[tuple[int, int, int], int] = {}
        sfx_l, lrs_l, sym_l = oracle.sfx, oracle.lrs, oracle.symbols
        for i in range(1, n):
            parent = sfx_l[i]
            children = rsfx[parent]
            if children is None:
                rsfx[parent] = [i]
            else:
                children.append(i)
            better.setdefault((parent, lrs_l[i], sym_l[i - lrs_l[i]]), i)
        oracle._rsfx = rsfx
        oracle._better = better
        return oracle


def _validate_links(sfx: np.ndarray, lrs: np.ndarray, n: int, *, what: str) -> None:
    if n < 1 or sfx.shape != (n,) or lrs.shape != (n,):
        raise ModelFormatError(f"{what}: sfx/lrs must have n_states={n} entries")
    if sfx[0] != -1 or lrs[0] != 0:
        raise ModelFormatError(f"{what}: state 0 must have sfx -1 and lrs 0")
    index = np.arange(n)
    if n > 1 and ((sfx[1:] < 0).any() or (sfx[1:] >= index[1:]).any() or (lrs[1:] < 0).any() or (lrs[1:] >= index[1:]).any()):
        raise ModelFormatError(f"{what}: suffix links must point backwards and LRS must be in 0..i-1")


def add_state(oracle: FactorOracle, symbol: int) -> int:
    """Append ``symbol`` to ``oracle`` online (amortised O(1)); returns the new state index.

    Raises
    ------
    ParameterError
        If ``symbol`` is not a non-negative int.
    """
    if symbol < 0:
        raise ParameterError(f"factor oracle symbols must be >= 0, got {symbol}")
    sfx = oracle.sfx
    lrs = oracle.lrs
    symbols = oracle.symbols
    jumps = oracle._jumps
    i = len(sfx)
    symbols.append(symbol)
    jumps.append(None)
    oracle._rsfx.append(None)
    # forward link i-1 -> i is implicit; walk the suffix chain of i-1
    k = sfx[i - 1]
    pi_1 = i - 1
    target = -1
    while k != -1:
        # transition(k, symbol): k < i - 1 here, so k + 1 <= i - 1 is an existing state
        if symbols[k + 1] == symbol:
            target = k + 1
            break
        table = jumps[k]
        if table is None:
            jumps[k] = {symbol: i}
        else:
            found = table.get(symbol, -1)
            if found != -1:
                target = found
                break
            table[symbol] = i
        pi_1 = k
        k = sfx[k]
    if k == -1:
        s_i = 0
        l_i = 0
    else:
        s_i = target
        # length of the common suffix of pi_1 and target - 1 (Lefebvre & Lecroq)
        p2 = target - 1
        s_p1 = sfx[pi_1]
        if p2 == s_p1:
            common = lrs[pi_1]
        else:
            while sfx[p2] != s_p1 and p2 != 0:
                p2 = sfx[p2]
            common = min(lrs[pi_1], lrs[p2])
        l_i = common + 1
    # "find better": a sibling with the same LRS whose preceding symbol matches extends the suffix by one
    better = oracle._better
    j = better.get((s_i, l_i, symbols[i - l_i]), -1)
    if j != -1:
        l_i += 1
        s_i = j
    sfx.append(s_i)
    lrs.append(l_i)
    children = oracle._rsfx[s_i]
    if children is None:
        oracle._rsfx[s_i] = [i]
    else:
        children.append(i)
    better.setdefault((s_i, l_i, symbols[i - l_i]), i)
    return i
