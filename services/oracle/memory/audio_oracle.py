"""Continuous Audio Oracle (Dubnov, Assayag & Cont 2007), built online in amortised linear time.

Semantics are those of ``vmo.build_oracle(X, 'a', threshold=t, dfunc='euclidean')`` (suffix method
``'inc'``): a transition from state ``k`` to ``j`` "matches" a new frame ``x`` when the Euclidean distance
from ``x`` to frame ``j`` is ``< threshold`` (strict, as vmo); among matching transitions the closest one
(first in insertion order on ties) becomes the suffix link. LRS follows Lefebvre & Lecroq with vmo's
"find better" correction; labels (vmo's ``data``, the latent cluster of each state) are kept too.

The construction runs in a numba kernel over flat, growable numpy arrays:

- frames ``(capacity, dim)`` float64; ``sfx``, ``lrs``, ``labels`` int64 per state;
- transitions as per-state singly linked lists in insertion order (``trn_head/trn_tail`` per state,
  ``edge_dst/edge_next`` per edge) — the forward link ``i-1 -> i`` is stored like any other;
- reverse suffix links as per-state linked lists (``rs_head/rs_tail`` per parent, ``rs_next`` per child);
- the "find better" step looks up ``(suffix state, lrs, label)`` in a hash map instead of scanning.

Per-frame work is amortised O(1) suffix-chain steps; each step computes distances to the frames of the
targets of one state's transitions (vmo does the same with ``scipy.spatial.distance.cdist``). The one
cost that can grow is the fan-out of state 0 (one transition per new "cluster"), which is bounded by the
number of distinct clusters the threshold allows, not by the number of frames.

>>> import numpy as np
>>> ao = AudioOracle(threshold=0.5, dim=1)
>>> ao.extend(np.array([[0.0], [1.0], [0.1], [1.05], [5.0]]))
>>> ao.sfx.tolist(), ao.lrs.tolist()
([-1, 0, 0, 1, 2, 0], [0, 0, 0, 1, 2, 0])
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
    rehash,
    require_parts,
    validate_links,
)
from services.oracle.memory.states import StateInfo, StateStore
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors

__all__ = ["AudioOracle", "AO_SCHEMA"]

AO_SCHEMA = "musichal-audio-oracle/1"

# per-state row columns of ``_st`` (one 64-byte line per state)
_SFX, _LRS, _LAB, _THEAD, _TTAIL, _RSHEAD, _RSTAIL, _RSNEXT = range(8)
# counters layout: [n_states, n_edges, n_labels]
_N, _E, _L = 0, 1, 2


@numba.njit(cache=True, fastmath=True)
def _squared_distance_fast(frames, i, j):
    """Squared distance with reassociated (SIMD) summation: a prefilter only, within ~1e-14 relative."""
    acc = 0.0
    for d in range(frames.shape[1]):
        diff = frames[i, d] - frames[j, d]
        acc += diff * diff
    return acc


@numba.njit(cache=True, nogil=True)
def _extend_kernel(frames, st, edges, better, counters, x_rows, start, threshold):
    """Add rows ``x_rows[start:]``; stops early (returns the next row) when capacity runs short.

    Returns ``-1`` (adding nothing) if a row is not finite. Targets are first screened with a vectorised
    squared distance against ``threshold**2`` (with a relative margin far above its rounding error); the few
    that pass get the exact sequential distance and vmo's ``dist < threshold`` / ``dist < best`` tests.
    """
    dim = frames.shape[1]
    capacity = frames.shape[0]
    edge_capacity = edges.shape[0]
    n_rows = x_rows.shape[0]
    for r in range(start, n_rows):
        for d in range(dim):
            if not np.isfinite(x_rows[r, d]):
                return -1
    bound = threshold * threshold * (1.0 + 1e-9) + 1e-300
    row = start
    while row < n_rows:
        i = counters[_N]
        # room for the state and for the worst-case number of new edges (one per state on the chain)
        if i >= capacity or counters[_E] + i + 1 > edge_capacity:
            return row
        for d in range(dim):
            frames[i, d] = x_rows[row, d]
        counters[_N] = i + 1
        st[i, _THEAD] = -1
        st[i, _TTAIL] = -1
        st[i, _RSHEAD] = -1
        st[i, _RSTAIL] = -1
        st[i, _RSNEXT] = -1
        # forward link i-1 -> i
        e = counters[_E]
        counters[_E] = e + 1
        edges[e, 0] = i
        edges[e, 1] = -1
        if st[i - 1, _TTAIL] == -1:
            st[i - 1, _THEAD] = e
        else:
            edges[st[i - 1, _TTAIL], 1] = e
        st[i - 1, _TTAIL] = e
        k = st[i - 1, _SFX]
        pi_1 = i - 1
        candidate = 0
        while k != -1:
            best = np.inf
            best_target = -1
            edge = st[k, _THEAD]
            while edge != -1:
                target = edges[edge, 0]
                if _squared_distance_fast(frames, i, target) <= bound:
                    acc = 0.0  # exact, in vmo's order, for the few targets near or inside the threshold
                    for d in range(dim):
                        diff = frames[i, d] - frames[target, d]
                        acc += diff * diff
                    dist = np.sqrt(acc)
                    if dist < threshold and dist < best:
                        best = dist
                        best_target = target
                edge = edges[edge, 1]
            if best_target == -1:
                e = counters[_E]
                counters[_E] = e + 1
                edges[e, 0] = i
                edges[e, 1] = -1
                if st[k, _TTAIL] == -1:
                    st[k, _THEAD] = e
                else:
                    edges[st[k, _TTAIL], 1] = e
                st[k, _TTAIL] = e
                pi_1 = k
                k = st[k, _SFX]
            else:
                candidate = best_target
                break
        if k == -1:
            s_i = 0
            l_i = 0
            st[i, _LAB] = counters[_L]
            counters[_L] += 1
        else:
            s_i = candidate
            l_i = lrs_after_jump(st, _SFX, _LRS, pi_1, candidate)
            st[i, _LAB] = st[candidate, _LAB]
        s_i, l_i = find_better(st, _LAB, better, s_i, l_i, i)
        st[i, _SFX] = s_i
        st[i, _LRS] = l_i
        link_state(st, _LAB, _RSHEAD, _RSTAIL, _RSNEXT, better, s_i, l_i, i)
        row += 1
    return row


@numba.njit(cache=True, nogil=True)
def _flatten_transitions(st, edges, n, src, dst):
    """Transitions as (src, dst) pairs grouped by source state, each in insertion order; returns the count."""
    e = 0
    for state in range(n):
        edge = st[state, _THEAD]
        while edge != -1:
            src[e] = state
            dst[e] = edges[edge, 0]
            e += 1
            edge = edges[edge, 1]
    return e


@numba.njit(cache=True, nogil=True)
def _rebuild_index(st, n, better):
    for i in range(n):
        st[i, _RSHEAD] = -1
        st[i, _RSTAIL] = -1
        st[i, _RSNEXT] = -1
    for i in range(1, n):
        link_state(st, _LAB, _RSHEAD, _RSTAIL, _RSNEXT, better, st[i, _SFX], st[i, _LRS], i)


class AudioOracle:
    """Online Audio Oracle over ``dim``-dimensional frames with a Euclidean distance threshold.

    Parameters
    ----------
    threshold : float
        Distance below which two frames count as the same (``>= 0``; 0 makes every frame new).
    dim : int
        Frame dimension.
    capacity : int
        Initial number of states to allocate (grows by doubling).

    Notes
    -----
    Each state (from 1) also carries its event in :attr:`states` (token, descriptors, event id, source).
    """

    def __init__(self, threshold: float, dim: int, *, capacity: int = 1024) -> None:
        threshold = float(threshold)
        if not np.isfinite(threshold) or threshold < 0.0:
            raise ParameterError(f"threshold must be a finite number >= 0, got {threshold}")
        if int(dim) < 1:
            raise ParameterError(f"dim must be >= 1, got {dim}")
        if int(capacity) < 2:
            raise ParameterError("capacity must be >= 2")
        self.threshold = threshold
        self.dim = int(dim)
        self.states = StateStore()
        self._allocate(int(capacity))

    # ------------------------------------------------------------------ storage
    def _allocate(self, capacity: int) -> None:
        capacity = 1 << max(1, (capacity - 1).bit_length())
        self._frames = np.zeros((capacity, self.dim), dtype=np.float64)
        self._set_st(aligned((capacity, 8), -1))
        self._st[:, _LRS] = 0
        self._st[:, _LAB] = 0
        self._set_edges(np.full((2 * capacity, 2), -1, dtype=np.int64))
        self._better = np.full((2 * capacity, 4), -1, dtype=np.int64)  # <= 1 entry per state: load <= 1/2
        self._counters = np.array([1, 0, 0], dtype=np.int64)
        self._sfx[0] = -1
        self._labels[0] = -1

    def _set_st(self, st: np.ndarray) -> None:
        self._st = st
        (
            self._sfx,
            self._lrs,
            self._labels,
            self._trn_head,
            self._trn_tail,
            self._rs_head,
            self._rs_tail,
            self._rs_next,
        ) = (st[:, c] for c in range(8))

    def _set_edges(self, edges: np.ndarray) -> None:
        self._edges = edges
        self._edge_dst, self._edge_next = edges[:, 0], edges[:, 1]

    def _grow_states(self, needed: int) -> None:
        capacity = self._frames.shape[0]
        if needed <= capacity:
            return
        new = 1 << (max(needed, 2 * capacity) - 1).bit_length()
        n = self.n_states
        frames = np.zeros((new, self.dim), dtype=np.float64)
        frames[:n] = self._frames[:n]
        self._frames = frames
        st = aligned((new, 8), -1)
        st[:n] = self._st[:n]
        self._set_st(st)
        better = np.full((2 * new, 4), -1, dtype=np.int64)
        rehash(self._better, better)
        self._better = better

    def _grow_edges(self, needed: int) -> None:
        capacity = self._edges.shape[0]
        if needed <= capacity:
            return
        new = max(needed, 2 * capacity)
        used = int(self._counters[_E])
        edges = np.full((new, 2), -1, dtype=np.int64)
        edges[:used] = self._edges[:used]
        self._set_edges(edges)

    def _run(self, rows: np.ndarray) -> None:
        row = 0
        total = rows.shape[0]
        while row < total:
            self._grow_states(self.n_states + (total - row))
            self._grow_edges(int(self._counters[_E]) + self.n_states + 1)
            row = _extend_kernel(
                self._frames, self._st, self._edges, self._better, self._counters, rows, row, self.threshold
            )
            if row < 0:
                raise ParameterError("frames must be finite (no NaN or inf)")

    def _check_rows(self, frames: Any) -> np.ndarray:
        rows = np.asarray(frames, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ParameterError(f"frames must have shape (n, {self.dim}), got {np.shape(frames)}")
        if not np.isfinite(rows).all():
            raise ParameterError("frames must be finite (no NaN or inf)")
        return np.ascontiguousarray(rows)

    # ------------------------------------------------------------------ building
    def add(
        self,
        features: Any,
        *,
        token: int = -1,
        descriptors: EventDescriptors | None = None,
        event_id: int = -1,
        source: str = "",
    ) -> int:
        """Append one event (its feature row and metadata); returns the new state's index."""
        rows = np.ascontiguousarray(features, dtype=np.float64).reshape(1, -1) if np.ndim(features) == 1 else None
        if rows is None or rows.shape[1] != self.dim:
            rows = self._check_rows(features)
            if rows.shape[0] != 1:
                raise ParameterError("add() takes one feature row; use extend() for many")
        i = self.n_states
        if i >= self._frames.shape[0] or int(self._counters[_E]) + i + 1 > self._edges.shape[0]:
            self._grow_states(i + 1)
            self._grow_edges(int(self._counters[_E]) + i + 2)
        # the kernel checks finiteness before changing anything
        if (
            _extend_kernel(self._frames, self._st, self._edges, self._better, self._counters, rows, 0, self.threshold)
            < 0
        ):
            raise ParameterError("frames must be finite (no NaN or inf)")
        self.states.append(token=token, descriptors=descriptors, event_id=event_id, source=source)
        return i

    def extend(
        self,
        frames: Any,
        *,
        tokens: Iterable[int] | None = None,
        descriptors: Iterable[EventDescriptors | None] | None = None,
        event_ids: Iterable[int] | None = None,
        source: str = "",
        columns: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Append many frames at once (the fast path for training); metadata is optional per column.

        ``columns`` (descriptor columns, see :meth:`StateStore.extend_columns`) instead of ``descriptors`` keeps
        the whole append in numpy: no Python work per state.
        """
        rows = self._check_rows(frames)
        n = rows.shape[0]
        tokens_a = np.full(n, -1, dtype=np.int64) if tokens is None else _int_array(tokens)
        ids_a = np.full(n, -1, dtype=np.int64) if event_ids is None else _int_array(event_ids)
        if columns is not None:
            if descriptors is not None:
                raise ParameterError("give descriptors or columns, not both")
            prepared = StateStore.prepare_columns(tokens_a, ids_a, columns)  # validates before anything changes
            if prepared["token"].size != n:
                raise ParameterError("tokens, event_ids and descriptor columns must have one entry per frame")
            self._grow_states(self.n_states + n)
            self._run(rows)
            self.states.append_prepared(prepared, source=source)
            return
        desc_l = None if descriptors is None else list(descriptors)
        if tokens_a.size != n or ids_a.size != n or (desc_l is not None and len(desc_l) != n):
            raise ParameterError("tokens, descriptors and event_ids must have one entry per frame")
        if n and tokens_a.min() < -1:
            raise ParameterError(f"token must be >= 0 (or -1 for unknown), got {int(tokens_a.min())}")
        self._grow_states(self.n_states + n)  # one allocation for the whole batch
        self._run(rows)
        if desc_l is None:
            self.states.extend_plain(tokens_a, ids_a, source=source)
        else:
            for t, d, e in zip(tokens_a.tolist(), desc_l, ids_a.tolist()):
                self.states.append(token=t, descriptors=d, event_id=e, source=source)

    def rebuild(self, threshold: float) -> None:
        """Rebuild every link for a new threshold, keeping the same states (indices stay valid)."""
        threshold = float(threshold)
        if not np.isfinite(threshold) or threshold < 0.0:
            raise ParameterError(f"threshold must be a finite number >= 0, got {threshold}")
        frames = self.frames.copy()
        self.threshold = threshold
        self._allocate(max(2, frames.shape[0] + 1))
        self._run(frames)

    @classmethod
    def links_for(cls, frames: np.ndarray, threshold: float) -> AudioOracle:
        """An oracle holding only links (no event metadata) for ``frames`` (rows of states 1..n) at ``threshold``.

        Meant for a background rebuild: it reads ``frames`` only and holds the GIL just for set-up (the
        construction kernel releases it); hand the result to :meth:`adopt_links` on the live oracle.
        """
        rows = np.asarray(frames, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] < 1:
            raise ParameterError(f"frames must have shape (n, dim), got {np.shape(frames)}")
        oracle = cls(threshold, rows.shape[1], capacity=max(2, rows.shape[0] + 1))
        oracle._run(np.ascontiguousarray(rows))
        return oracle

    def adopt_links(self, other: AudioOracle) -> None:
        """Replace this oracle's links by ``other``'s (built by :meth:`links_for` on a prefix of this oracle's
        frames, possibly at another threshold): the states added since are re-added to ``other`` first, so the
        result is exactly the oracle of all frames at ``other.threshold``. States, indices and metadata stay.

        Raises
        ------
        ParameterError
            If ``other`` has another dimension or more states than this oracle.
        """
        if not isinstance(other, AudioOracle) or other.dim != self.dim or other.n_states > self.n_states:
            raise ParameterError("adopt_links takes an AudioOracle of the same dim built on a prefix of these frames")
        if other.n_states < self.n_states:
            other._run(np.ascontiguousarray(self._frames[other.n_states : self.n_states]))
        self._frames = other._frames
        self._set_st(other._st)
        self._set_edges(other._edges)
        self._better = other._better
        self._counters = other._counters
        self.threshold = other.threshold

    # ------------------------------------------------------------------ queries
    @property
    def n_states(self) -> int:
        return int(self._counters[_N])

    def __len__(self) -> int:
        return self.n_states

    @property
    def n_transitions(self) -> int:
        return int(self._counters[_E])

    @property
    def n_labels(self) -> int:
        return int(self._counters[_L])

    @property
    def sfx(self) -> np.ndarray:
        """Suffix links (``sfx[0] == -1``), a read-only view."""
        return _ro(self._sfx[: self.n_states])

    @property
    def lrs(self) -> np.ndarray:
        return _ro(self._lrs[: self.n_states])

    @property
    def labels(self) -> np.ndarray:
        """Latent cluster of each state (vmo's ``data``; ``labels[0] == -1``)."""
        return _ro(self._labels[: self.n_states])

    @property
    def frames(self) -> np.ndarray:
        """Feature rows of states 1..n-1 (row ``i-1`` is state ``i``)."""
        return _ro(self._frames[1 : self.n_states])

    def label(self, state: int) -> int:
        return int(self._labels[state])

    def transition_targets(self, state: int) -> list[int]:
        """Targets of ``state``'s transitions in insertion order (vmo's ``trn[state]``)."""
        out = []
        edge = self._trn_head[state]
        while edge != -1:
            out.append(int(self._edge_dst[edge]))
            edge = self._edge_next[edge]
        return out

    def rsfx(self, state: int) -> list[int]:
        out = []
        child = self._rs_head[state]
        while child != -1:
            out.append(int(child))
            child = self._rs_next[child]
        return out

    def state_info(self, state: int) -> StateInfo:
        return self.states.info(state, features=self._frames[state])

    # ------------------------------------------------------------------ persistence
    def _flat_transitions(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_states
        total = int(self._counters[_E])
        src = np.empty(total, dtype=np.int64)
        dst = np.empty(total, dtype=np.int64)
        e = _flatten_transitions(self._st, self._edges, n, src, dst)
        return src[:e], dst[:e]

    def to_model_parts(self, *, prefix: str = "oracle.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)`` for :func:`shared.model_io.save_model` (transitions as flat src/dst arrays)."""
        src, dst = self._flat_transitions()
        n = self.n_states
        meta = {
            "schema": AO_SCHEMA,
            "kind": "audio",
            "distance": "euclidean",
            "threshold": self.threshold,
            "dim": self.dim,
            "n_states": n,
            "n_labels": self.n_labels,
            "states": self.states.meta(),
        }
        arrays = {
            f"{prefix}sfx": self._sfx[:n].copy(),
            f"{prefix}lrs": self._lrs[:n].copy(),
            f"{prefix}labels": self._labels[:n].copy(),
            f"{prefix}frames": self._frames[:n].copy(),
            f"{prefix}trn_src": src,
            f"{prefix}trn_dst": dst,
        }
        arrays.update(self.states.arrays(prefix=f"{prefix}state."))
        return meta, arrays

    @classmethod
    def from_model_parts(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, prefix: str = "oracle."
    ) -> AudioOracle:
        """Inverse of :meth:`to_model_parts`; inconsistent data raises ModelFormatError (one line)."""
        names = ["sfx", "lrs", "labels", "frames", "trn_src", "trn_dst"]
        require_parts("audio oracle", meta, arrays, schema=AO_SCHEMA, names=names, prefix=prefix)
        try:
            n = int(meta["n_states"])
            dim = int(meta["dim"])
            threshold = float(meta["threshold"])
            n_labels = int(meta["n_labels"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(f"audio oracle: meta field missing or malformed: {error}") from None
        if dim < 1 or not np.isfinite(threshold) or threshold < 0:
            raise ModelFormatError("audio oracle: dim must be >= 1 and threshold a finite number >= 0")
        ints = {}
        for name in ("sfx", "lrs", "labels", "trn_src", "trn_dst"):
            a = np.asarray(arrays[prefix + name])
            if a.dtype.kind not in "iu" or a.ndim != 1:
                raise ModelFormatError(f"audio oracle: {prefix + name} must be a 1-D integer array")
            ints[name] = a.astype(np.int64)
        frames = np.asarray(arrays[prefix + "frames"])
        if frames.dtype.kind != "f" or frames.shape != (n, dim) or not np.isfinite(frames).all():
            raise ModelFormatError(f"audio oracle: frames must be finite floats of shape ({n}, {dim})")
        sfx, lrs, labels, src, dst = (ints[k] for k in ("sfx", "lrs", "labels", "trn_src", "trn_dst"))
        validate_links(sfx, lrs, n, what="audio oracle")
        if (
            labels.shape != (n,)
            or labels[0] != -1
            or (n > 1 and ((labels[1:] < 0).any() or (labels[1:] >= n_labels).any()))
        ):
            raise ModelFormatError("audio oracle: labels must be in 0..n_labels-1 (and -1 for state 0)")
        if src.shape != dst.shape or (src.size and ((src < 0).any() or (dst <= src).any() or (dst >= n).any())):
            raise ModelFormatError("audio oracle: a transition points outside the oracle or backwards")
        if src.size and (np.diff(src) < 0).any():
            raise ModelFormatError("audio oracle: transitions must be grouped by source state")
        oracle = cls(threshold, dim, capacity=max(2, n))
        oracle.states = StateStore.from_arrays(meta.get("states"), arrays, prefix=f"{prefix}state.", n_states=n)
        oracle._frames[:n] = frames
        oracle._sfx[:n] = sfx
        oracle._lrs[:n] = lrs
        oracle._labels[:n] = labels
        oracle._grow_edges(src.size + n + 1)
        e = src.size
        oracle._edge_dst[:e] = dst
        oracle._edge_next[:e] = -1
        head = oracle._trn_head
        tail = oracle._trn_tail
        head[:n] = -1
        tail[:n] = -1
        if e:
            same = np.flatnonzero(src[1:] == src[:-1])
            oracle._edge_next[same] = same + 1
            firsts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
            lasts = np.flatnonzero(np.r_[src[1:] != src[:-1], True])
            head[src[firsts]] = firsts
            tail[src[lasts]] = lasts
        oracle._counters[:] = (n, e, n_labels)
        _rebuild_index(oracle._st, n, oracle._better)
        return oracle


def _int_array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return np.ascontiguousarray(values, dtype=np.int64).ravel()
    if isinstance(values, range):
        return np.arange(values.start, values.stop, values.step, dtype=np.int64)
    return np.fromiter((int(v) for v in values), dtype=np.int64)


def _ro(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view
