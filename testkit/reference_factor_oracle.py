"""Small pure-Python factor oracle (the previous dict-based implementation), the reference for the array port.

Allauzen, Crochemore & Raffinot (1999) with Lefebvre & Lecroq's LRS and vmo's "find better" step, written
as plainly as possible: per-state ``dict`` transitions in insertion order, per-state reverse-suffix lists
and a ``(suffix state, lrs, preceding symbol)`` index.
"""

from __future__ import annotations

__all__ = ["ReferenceFactorOracle"]


class ReferenceFactorOracle:
    def __init__(self) -> None:
        self.sfx = [-1]
        self.lrs = [0]
        self.symbols = [-1]
        self.trn: list[dict[int, int]] = [{}]  # all transitions (forward first), insertion order
        self.rsfx: list[list[int]] = [[]]
        self.better: dict[tuple[int, int, int], int] = {}

    def add(self, symbol: int) -> int:
        i = len(self.sfx)
        self.symbols.append(symbol)
        self.trn.append({})
        self.rsfx.append([])
        self.trn[i - 1][symbol] = i
        k, pi_1, target = self.sfx[i - 1], i - 1, -1
        while k != -1:
            if symbol in self.trn[k]:
                target = self.trn[k][symbol]
                break
            self.trn[k][symbol] = i
            pi_1, k = k, self.sfx[k]
        if k == -1:
            s_i, l_i = 0, 0
        else:
            s_i, p2, s_p1 = target, target - 1, self.sfx[pi_1]
            if p2 == s_p1:
                common = self.lrs[pi_1]
            else:
                while self.sfx[p2] != s_p1 and p2 != 0:
                    p2 = self.sfx[p2]
                common = min(self.lrs[pi_1], self.lrs[p2])
            l_i = common + 1
        j = self.better.get((s_i, l_i, self.symbols[i - l_i]), -1)
        if j != -1:
            s_i, l_i = j, l_i + 1
        self.sfx.append(s_i)
        self.lrs.append(l_i)
        self.rsfx[s_i].append(i)
        self.better.setdefault((s_i, l_i, self.symbols[i - l_i]), i)
        return i

    def extend(self, symbols) -> None:
        for symbol in symbols:
            self.add(int(symbol))


def reference_model_parts(ref: ReferenceFactorOracle, *, prefix: str = "oracle.") -> tuple[dict, dict]:
    """The model parts the previous implementation wrote (schema ``musichal-factor-oracle/1``)."""
    import numpy as np

    src, sym, dst = [], [], []
    for state, table in enumerate(ref.trn):
        for symbol, target in table.items():
            if target != state + 1:
                src.append(state)
                sym.append(symbol)
                dst.append(target)
    meta = {"schema": "musichal-factor-oracle/1", "kind": "factor", "n_states": len(ref.sfx)}
    arrays = {
        f"{prefix}{name}": np.asarray(values, dtype=np.int64)
        for name, values in (
            ("sfx", ref.sfx),
            ("lrs", ref.lrs),
            ("symbols", ref.symbols),
            ("trn_src", src),
            ("trn_symbol", sym),
            ("trn_dst", dst),
        )
    }
    return meta, arrays
