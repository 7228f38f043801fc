"""Information Rate (IR) of an oracle and the IR-optimal distance threshold.

IR follows vmo's default ``ir_type='cum'`` (Wang & Dubnov): the oracle's Compror code is computed from
the LRS array; ``h0`` is the log2 count of new symbols so far, ``h1`` the log2 count of code words so far
divided by the current block length; ``IR = alpha * h0 - h1`` clipped at 0. The threshold sweep builds one
oracle per candidate (fast numba build) and keeps the one with the largest total IR.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.repeat(rng.normal(size=(8, 3)), 1, axis=0)[rng.integers(0, 8, 200)] + rng.normal(scale=0.01, size=(200, 3))
>>> threshold, curve = select_threshold(x)
>>> bool(curve[:, 1].max() == curve[curve[:, 0] == threshold, 1][0])
True
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from shared.errors import ParameterError

__all__ = ["information_rate", "total_information_rate", "default_candidates", "select_threshold"]


@numba.njit(cache=True, nogil=True)
def _ir_cum(lrs, alpha):
    n = lrs.shape[0]  # n_states
    m = n - 1
    cw0 = np.zeros(m)
    cw1 = np.zeros(m)
    block = np.zeros(m)
    j = 0
    i = 0
    pos = 0  # output position (vmo's second ``j``)
    while j < m:
        while i < m and lrs[i + 1] >= i - j + 1:
            i += 1
        if i == j:
            i += 1
            cw0[pos] = 1.0
            cw1[pos] = 1.0
            block[pos] = 1.0
            pos += 1
        else:
            length = i - j
            cw1[pos] = 1.0
            for q in range(pos, min(pos + length, m)):
                block[q] = length
            pos += length
        j = i
    ir = np.zeros(m)
    c0 = 0.0
    c1 = 0.0
    for q in range(m):
        c0 += cw0[q]
        c1 += cw1[q]
        value = alpha * np.log2(c0) - np.log2(c1) / block[q]
        ir[q] = value if value > 0.0 else 0.0
    return ir


def information_rate(lrs: Any, *, alpha: float = 1.0) -> np.ndarray:
    """Per-frame IR (length ``n_states - 1``) from an oracle's LRS array (vmo ``IR(ir_type='cum')``).

    Raises
    ------
    ParameterError
        If ``lrs`` is not a 1-D integer array starting with 0.
    """
    lrs = np.ascontiguousarray(lrs, dtype=np.int64)
    if lrs.ndim != 1 or lrs.size < 1 or lrs[0] != 0:
        raise ParameterError("lrs must be a 1-D array of an oracle's LRS values (lrs[0] == 0)")
    if lrs.size == 1:
        return np.zeros(0)
    return _ir_cum(lrs, float(alpha))


def total_information_rate(lrs: Any, *, alpha: float = 1.0) -> float:
    return float(information_rate(lrs, alpha=alpha).sum())


def default_candidates(features: np.ndarray, *, count: int = 24, max_pairs: int = 4096, seed: int = 0) -> np.ndarray:
    """Candidate thresholds: quantiles (1 %..90 %) of distances between random pairs of frames."""
    n = features.shape[0]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, max_pairs)
    b = rng.integers(0, n, max_pairs)
    keep = a != b
    distances = np.linalg.norm(features[a[keep]] - features[b[keep]], axis=1)
    distances = distances[distances > 0]
    if distances.size == 0:
        return np.array([1e-6])
    return np.unique(np.quantile(distances, np.linspace(0.01, 0.9, count)))


def select_threshold(features: Any, *, candidates: Any | None = None, alpha: float = 1.0) -> tuple[float, np.ndarray]:
    """Sweep thresholds and keep the one with the largest total IR.

    Parameters
    ----------
    features : array_like, shape (n, dim)
        Frames the oracle will be built on (n >= 2).
    candidates : array_like, optional
        Thresholds to try (>= 0); default :func:`default_candidates`.

    Returns
    -------
    threshold : float
        The IR-maximising threshold (the smallest one on ties).
    ir_curve : ndarray, shape (k, 2)
        Rows ``[threshold, total IR]`` for every candidate, in increasing threshold order.

    Raises
    ------
    ParameterError
        On fewer than 2 frames, non-finite values or negative candidates.
    """
    from services.oracle.memory.audio_oracle import AudioOracle

    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ParameterError(f"features must have shape (n >= 2, dim), got {np.shape(features)}")
    if not np.isfinite(x).all():
        raise ParameterError("features must be finite")
    cands = default_candidates(x) if candidates is None else np.unique(np.asarray(candidates, dtype=np.float64).ravel())
    if cands.size == 0 or not np.isfinite(cands).all() or (cands < 0).any():
        raise ParameterError("candidates must be a non-empty list of finite thresholds >= 0")
    curve = np.zeros((cands.size, 2))
    for row, threshold in enumerate(cands):
        oracle = AudioOracle(float(threshold), x.shape[1], capacity=x.shape[0] + 1)
        oracle.extend(x)
        curve[row] = (threshold, total_information_rate(oracle.lrs, alpha=alpha))
    best = int(np.argmax(curve[:, 1]))
    return float(curve[best, 0]), curve
