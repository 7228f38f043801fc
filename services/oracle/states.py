"""Per-state event metadata: every oracle state carries the event it was built from.

Columns are compact ``array`` objects (append is O(1)); state 0 (the empty prefix) holds a placeholder
row so that row ``i`` is state ``i``. Saved as flat numpy arrays; sources as a string table in meta.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors

__all__ = ["StateInfo", "StateStore", "MAX_CHROMA_PEAKS"]

MAX_CHROMA_PEAKS = 12
_DEFAULT_DURATION_S = 0.25
_DEFAULT_VELOCITY = 80


@dataclass(frozen=True, slots=True)
class StateInfo:
    """What one oracle state knows about its event."""

    state: int
    token: int
    onset_s: float
    duration_s: float
    velocity: int
    f0_hz: float
    chroma_peaks: tuple[int, ...]
    event_id: int
    source: str
    features: Optional[np.ndarray] = None


class StateStore:
    """Column store of per-state event metadata (row ``i`` = state ``i``; row 0 is a placeholder)."""

    _INT_COLUMNS = ("token", "velocity", "event_id", "source_index")
    _FLOAT_COLUMNS = ("onset_s", "duration_s", "f0_hz")

    def __init__(self) -> None:
        self.token = array("q", [-1])
        self.velocity = array("q", [_DEFAULT_VELOCITY])
        self.event_id = array("q", [-1])
        self.source_index = array("q", [0])
        self.onset_s = array("d", [0.0])
        self.duration_s = array("d", [0.0])
        self.f0_hz = array("d", [0.0])
        self.chroma = array("b", [-1] * MAX_CHROMA_PEAKS)
        self.sources: list[str] = [""]
        self._source_ids: dict[str, int] = {"": 0}

    def __len__(self) -> int:
        return len(self.token)

    @property
    def nbytes(self) -> int:
        """Bytes held by the metadata columns (allocated capacity; the source-name table not counted)."""
        columns = (*self._INT_COLUMNS, *self._FLOAT_COLUMNS, "chroma")
        return sum(getattr(self, c).buffer_info()[1] * getattr(self, c).itemsize for c in columns)

    def append(self, *, token: int = -1, descriptors: Optional[EventDescriptors] = None, event_id: int = -1,
               source: str = "") -> None:
        """Append the row for the next state."""
        if token < -1:
            raise ParameterError(f"token must be >= 0 (or -1 for unknown), got {token}")
        index = self._source_ids.get(source)
        if index is None:
            index = self._source_ids[source] = len(self.sources)
            self.sources.append(source)
        self.token.append(int(token))
        self.event_id.append(int(event_id))
        self.source_index.append(index)
        if descriptors is None:
            self.velocity.append(_DEFAULT_VELOCITY)
            self.onset_s.append(0.0)
            self.duration_s.append(_DEFAULT_DURATION_S)
            self.f0_hz.append(0.0)
            self.chroma.extend([-1] * MAX_CHROMA_PEAKS)
        else:
            self.velocity.append(int(descriptors.velocity))
            self.onset_s.append(float(descriptors.onset_s))
            self.duration_s.append(float(descriptors.duration_s))
            self.f0_hz.append(float(descriptors.f0_hz))
            peaks = list(descriptors.chroma_peaks)[:MAX_CHROMA_PEAKS]
            self.chroma.extend(peaks + [-1] * (MAX_CHROMA_PEAKS - len(peaks)))

    def extend_plain(self, tokens: Any, event_ids: Any, *, source: str = "") -> None:
        """Append rows without descriptors (default velocity/duration) in one pass per column.

        Raises
        ------
        ParameterError
            If ``tokens`` and ``event_ids`` differ in length or a token is below -1.
        """
        tok = np.ascontiguousarray(tokens, dtype=np.int64).ravel()
        ids = np.ascontiguousarray(event_ids, dtype=np.int64).ravel()
        n = tok.size
        if ids.size != n:
            raise ParameterError("tokens and event_ids must have one entry per row")
        if n and tok.min() < -1:
            raise ParameterError(f"token must be >= 0 (or -1 for unknown), got {int(tok.min())}")
        index = self._source_ids.get(source)
        if index is None:
            index = self._source_ids[source] = len(self.sources)
            self.sources.append(source)
        self.token.frombytes(tok.tobytes())
        self.event_id.frombytes(ids.tobytes())
        self.source_index.extend(array("q", [index]) * n)
        self.velocity.extend(array("q", [_DEFAULT_VELOCITY]) * n)
        self.onset_s.extend(array("d", [0.0]) * n)
        self.duration_s.extend(array("d", [_DEFAULT_DURATION_S]) * n)
        self.f0_hz.extend(array("d", [0.0]) * n)
        self.chroma.extend(array("b", [-1]) * (n * MAX_CHROMA_PEAKS))

    def extend_columns(self, tokens: Any, event_ids: Any, columns: Any, *, source: str = "") -> None:
        """Append rows from descriptor columns in one pass per column (the trainer's path: no Python per state).

        ``columns`` maps ``onset_s``, ``duration_s``, ``velocity``, ``f0_hz`` to ``(n,)`` arrays and ``chroma`` to
        ``(n, k)`` pitch classes (``-1`` = none; at most :data:`MAX_CHROMA_PEAKS` columns are kept).

        Raises
        ------
        ParameterError
            Lengths differ, a token is below -1, a velocity is outside 1..127 or a pitch class outside -1..11.
        """
        self.append_prepared(self.prepare_columns(tokens, event_ids, columns), source=source)

    @classmethod
    def prepare_columns(cls, tokens: Any, event_ids: Any, columns: Any) -> dict[str, np.ndarray]:
        """Validated, typed columns for :meth:`append_prepared` (see :meth:`extend_columns`); changes nothing."""
        tok = np.ascontiguousarray(tokens, dtype=np.int64).ravel()
        ids = np.ascontiguousarray(event_ids, dtype=np.int64).ravel()
        n = tok.size
        try:
            out = {"token": tok, "event_id": ids,
                   "velocity": np.ascontiguousarray(columns["velocity"], dtype=np.int64).ravel()}
            out.update({name: np.ascontiguousarray(columns[name], dtype=np.float64).ravel() for name in cls._FLOAT_COLUMNS})
            chroma = np.asarray(columns["chroma"], dtype=np.int64).reshape(n, -1)
        except (KeyError, ValueError, TypeError) as error:
            raise ParameterError(f"descriptor columns are missing or malformed: {error}") from None
        if any(a.size != n for a in out.values()):
            raise ParameterError("tokens, event_ids and descriptor columns must have one entry per row")
        if n and tok.min() < -1:
            raise ParameterError(f"token must be >= 0 (or -1 for unknown), got {int(tok.min())}")
        if n and (out["velocity"].min() < 1 or out["velocity"].max() > 127 or chroma.min(initial=0) < -1
                  or chroma.max(initial=0) > 11 or not all(np.isfinite(out[k]).all() for k in cls._FLOAT_COLUMNS)):
            raise ParameterError("velocity must be in 1..127, chroma pitch classes in -1..11, times finite")
        padded = np.full((n, MAX_CHROMA_PEAKS), -1, dtype=np.int8)
        k = min(MAX_CHROMA_PEAKS, chroma.shape[1])
        padded[:, :k] = chroma[:, :k]
        out["chroma"] = padded
        return out

    def append_prepared(self, prepared: dict[str, np.ndarray], *, source: str = "") -> None:
        n = prepared["token"].size
        index = self._source_ids.get(source)
        if index is None:
            index = self._source_ids[source] = len(self.sources)
            self.sources.append(source)
        self.source_index.extend(array("q", [index]) * n)
        for name, values in prepared.items():
            getattr(self, name).frombytes(values.tobytes())

    def chroma_peaks(self, state: int) -> tuple[int, ...]:
        row = self.chroma[state * MAX_CHROMA_PEAKS:(state + 1) * MAX_CHROMA_PEAKS]
        return tuple(pc for pc in row if pc >= 0)

    def info(self, state: int, *, features: Optional[np.ndarray] = None) -> StateInfo:
        if not 0 <= state < len(self.token):
            raise ParameterError(f"state {state} is outside 0..{len(self.token) - 1}")
        return StateInfo(state=state, token=self.token[state], onset_s=self.onset_s[state],
                         duration_s=self.duration_s[state], velocity=self.velocity[state], f0_hz=self.f0_hz[state],
                         chroma_peaks=self.chroma_peaks(state), event_id=self.event_id[state],
                         source=self.sources[self.source_index[state]], features=features)

    def tokens(self) -> np.ndarray:
        return np.frombuffer(self.token, dtype=np.int64)

    def meta(self) -> dict[str, Any]:
        return {"sources": list(self.sources)}

    def arrays(self, *, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{name}": np.frombuffer(getattr(self, name), dtype=np.int64).copy() for name in self._INT_COLUMNS}
        out.update({f"{prefix}{name}": np.frombuffer(getattr(self, name), dtype=np.float64).copy() for name in self._FLOAT_COLUMNS})
        out[f"{prefix}chroma"] = np.frombuffer(self.chroma, dtype=np.int8).reshape(-1, MAX_CHROMA_PEAKS).copy()
        return out

    @classmethod
    def from_arrays(cls, meta: Any, arrays: dict[str, np.ndarray], *, prefix: str, n_states: int) -> "StateStore":
        if not isinstance(meta, dict) or not isinstance(meta.get("sources"), list) or not all(isinstance(s, str) for s in meta["sources"]):
            raise ModelFormatError("oracle states: meta 'sources' must be a list of strings")
        store = cls()
        store.sources = list(meta["sources"])
        if not store.sources or store.sources[0] != "":
            raise ModelFormatError("oracle states: source 0 must be the empty string")
        store._source_ids = {s: i for i, s in enumerate(store.sources)}
        for name in cls._INT_COLUMNS + cls._FLOAT_COLUMNS + ("chroma",):
            key = prefix + name
            if key not in arrays:
                raise ModelFormatError(f"oracle states: array {key} is missing")
        for name in cls._INT_COLUMNS:
            a = np.asarray(arrays[prefix + name])
            if a.dtype.kind not in "iu" or a.shape != (n_states,):
                raise ModelFormatError(f"oracle states: {prefix + name} must be {n_states} integers")
            setattr(store, name, array("q", np.ascontiguousarray(a, dtype=np.int64).tobytes()))
        for name in cls._FLOAT_COLUMNS:
            a = np.asarray(arrays[prefix + name])
            if a.dtype.kind != "f" or a.shape != (n_states,) or not np.isfinite(a).all():
                raise ModelFormatError(f"oracle states: {prefix + name} must be {n_states} finite floats")
            setattr(store, name, array("d", np.ascontiguousarray(a, dtype=np.float64).tobytes()))
        chroma = np.asarray(arrays[prefix + "chroma"])
        if chroma.dtype.kind not in "iu" or chroma.shape != (n_states, MAX_CHROMA_PEAKS) or (chroma < -1).any() or (chroma > 11).any():
            raise ModelFormatError(f"oracle states: {prefix}chroma must be ({n_states}, {MAX_CHROMA_PEAKS}) pitch classes or -1")
        store.chroma = array("b", np.ascontiguousarray(chroma, dtype=np.int8).tobytes())
        velocity = np.frombuffer(store.velocity, dtype=np.int64)
        sources = np.frombuffer(store.source_index, dtype=np.int64)
        if n_states and ((velocity < 1).any() or (velocity > 127).any() or (sources < 0).any() or (sources >= len(store.sources)).any()):
            raise ModelFormatError("oracle states: velocity must be in 1..127 and source indices valid")
        return store
