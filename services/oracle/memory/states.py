"""Per-state event metadata: every oracle state carries the event it was built from.

Columns are compact ``array`` objects (append is O(1)); state 0 (the empty prefix) holds a placeholder
row so that row ``i`` is state ``i``. Saved as flat numpy arrays; sources as a string table in meta.

What a slice holds (schema 3): the notes sounding in it, stored CSR-style — ``note_offsets`` (``n_states + 1``)
indexes flat note columns (pitch, onset in the slice, duration, velocity, bend and glide in cents) — and its
expression: a pressure envelope and an f0 curve (cents) of :data:`EXPRESSION_POINTS` values each, and a CC74
value. Files written before schema 3 load with no notes and neutral expression.

>>> from shared.messages import EventDescriptors
>>> store = StateStore()
>>> store.append(token=0, descriptors=EventDescriptors(onset_s=0.0, duration_s=0.5, rms=0.1, velocity=80, f0_hz=0.0,
...     f0_confidence=0.0, notes=((60, 0.0, 0.4, 90, 3.0, 0.0), (64, 0.01, 0.4, 80, -2.0, 0.0))))
>>> [(n[0], n[3]) for n in store.notes(1)]
[(60, 90), (64, 80)]
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors

__all__ = [
    "StateInfo",
    "StateStore",
    "MAX_CHROMA_PEAKS",
    "MAX_SLICE_NOTES",
    "EXPRESSION_POINTS",
    "SLICE_COLUMNS",
    "slice_columns",
    "slice_fields",
]

MAX_CHROMA_PEAKS = 12
#: notes a slice keeps (the trainer's shard columns are padded to this many; the lowest onsets first)
MAX_SLICE_NOTES = 16
EXPRESSION_POINTS = 8
_NOTE_INT_COLUMNS = ("note_pitch", "note_velocity")
_NOTE_FLOAT_COLUMNS = ("note_onset_s", "note_duration_s", "note_bend_cents", "note_glide_cents")
_NOTE_FIELDS = ("note_pitch", "note_onset_s", "note_duration_s", "note_velocity", "note_bend_cents", "note_glide_cents")
#: row-aligned descriptor columns for the slice contents (padded: notes with pitch -1, curves to EXPRESSION_POINTS)
SLICE_COLUMNS = _NOTE_FIELDS + ("pressure", "f0_cents", "timbre")
_DEFAULT_TIMBRE = 64


def _fit_curve(values: Any, *, dtype: Any) -> np.ndarray:
    """``values`` as exactly EXPRESSION_POINTS entries (padded with the last one; zeros when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return np.zeros(EXPRESSION_POINTS, dtype=dtype)
    if v.size >= EXPRESSION_POINTS:
        return v[:EXPRESSION_POINTS].astype(dtype)
    return np.concatenate([v, np.full(EXPRESSION_POINTS - v.size, v[-1])]).astype(dtype)


def slice_columns(descriptors: Any) -> dict[str, np.ndarray]:
    """Row-aligned slice columns of many descriptors (the trainer's shards): notes padded to MAX_SLICE_NOTES."""
    descriptors = list(descriptors)
    n = len(descriptors)
    out: dict[str, np.ndarray] = {
        name: np.full(
            (n, MAX_SLICE_NOTES),
            -1 if name in _NOTE_INT_COLUMNS else 0.0,
            dtype=np.int16 if name in _NOTE_INT_COLUMNS else np.float64,
        )
        for name in _NOTE_FIELDS
    }
    out["pressure"] = np.zeros((n, EXPRESSION_POINTS), dtype=np.int16)
    out["f0_cents"] = np.zeros((n, EXPRESSION_POINTS), dtype=np.float64)
    out["timbre"] = np.full(n, _DEFAULT_TIMBRE, dtype=np.int64)
    for row, d in enumerate(descriptors):
        notes = sorted(d.notes, key=lambda note: (note[1], note[0]))[:MAX_SLICE_NOTES]
        for k, note in enumerate(notes):
            for name, value in zip(_NOTE_FIELDS, note):
                out[name][row, k] = value
        out["pressure"][row] = _fit_curve(d.pressure, dtype=np.int16)
        out["f0_cents"][row] = _fit_curve(d.f0_cents, dtype=np.float64)
        out["timbre"][row] = int(d.timbre)
    return out


def slice_fields(columns: Any) -> list[dict[str, Any]]:
    """Inverse of :func:`slice_columns`: ``EventDescriptors`` keyword arguments per row (empty dicts when the columns
    are absent)."""
    n = int(np.asarray(columns["velocity"]).shape[0])
    if "note_pitch" not in columns:
        return [{} for _ in range(n)]
    cols = {name: np.asarray(columns[name]) for name in SLICE_COLUMNS}
    out = []
    for row in range(n):
        keep = np.nonzero(cols["note_pitch"][row] >= 0)[0]
        notes = tuple(
            (
                int(cols["note_pitch"][row, k]),
                float(cols["note_onset_s"][row, k]),
                float(cols["note_duration_s"][row, k]),
                int(cols["note_velocity"][row, k]),
                float(cols["note_bend_cents"][row, k]),
                float(cols["note_glide_cents"][row, k]),
            )
            for k in keep
        )
        out.append(
            {
                "notes": notes,
                "pressure": tuple(int(p) for p in cols["pressure"][row]),
                "f0_cents": tuple(float(c) for c in cols["f0_cents"][row]),
                "timbre": int(cols["timbre"][row]),
            }
        )
    return out


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
    features: np.ndarray | None = None
    #: the notes sounding in the slice: (pitch, onset_s in the slice, duration_s, velocity, bend_cents, glide_cents)
    notes: tuple[tuple[int, float, float, int, float, float], ...] = ()
    pressure: tuple[int, ...] = ()  # loudness envelope → channel pressure 0..127 (EXPRESSION_POINTS values)
    f0_cents: tuple[float, ...] = ()  # f0 deviation/glide curve in cents
    timbre: int = _DEFAULT_TIMBRE  # spectral centroid → CC74


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
        self.note_offsets = array("q", [0, 0])
        for name in _NOTE_INT_COLUMNS:
            setattr(self, name, array("q"))
        for name in _NOTE_FLOAT_COLUMNS:
            setattr(self, name, array("d"))
        self.pressure = array("b", [0] * EXPRESSION_POINTS)
        self.f0_cents = array("d", [0.0] * EXPRESSION_POINTS)
        self.timbre = array("q", [_DEFAULT_TIMBRE])
        self.sources: list[str] = [""]
        self._source_ids: dict[str, int] = {"": 0}

    def __len__(self) -> int:
        return len(self.token)

    def append(
        self, *, token: int = -1, descriptors: EventDescriptors | None = None, event_id: int = -1, source: str = ""
    ) -> None:
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
            self._append_slices({}, 1)  # no notes, neutral expression (slice_columns([]) has no row)
        else:
            self._append_slices(slice_columns([descriptors]), 1)
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
        self._append_slices({}, n)

    _SLICE_KEYS = frozenset(SLICE_COLUMNS)

    def _append_slices(self, columns: dict[str, np.ndarray], n: int) -> None:
        """Append ``n`` rows of slice columns (``{}``: no notes, neutral expression)."""
        if not columns:
            self.note_offsets.extend(array("q", [self.note_offsets[-1]]) * n)
            self.pressure.extend(array("b", [0]) * (n * EXPRESSION_POINTS))
            self.f0_cents.extend(array("d", [0.0]) * (n * EXPRESSION_POINTS))
            self.timbre.extend(array("q", [_DEFAULT_TIMBRE]) * n)
            return
        present = columns["note_pitch"] >= 0
        counts = present.sum(axis=1).astype(np.int64)
        offsets = self.note_offsets[-1] + np.cumsum(counts)
        self.note_offsets.frombytes(offsets.astype(np.int64).tobytes())
        for name in _NOTE_INT_COLUMNS:
            getattr(self, name).frombytes(np.ascontiguousarray(columns[name][present], dtype=np.int64).tobytes())
        for name in _NOTE_FLOAT_COLUMNS:
            getattr(self, name).frombytes(np.ascontiguousarray(columns[name][present], dtype=np.float64).tobytes())
        self.pressure.frombytes(np.ascontiguousarray(columns["pressure"], dtype=np.int8).tobytes())
        self.f0_cents.frombytes(np.ascontiguousarray(columns["f0_cents"], dtype=np.float64).tobytes())
        self.timbre.frombytes(np.ascontiguousarray(columns["timbre"], dtype=np.int64).tobytes())

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
            out = {
                "token": tok,
                "event_id": ids,
                "velocity": np.ascontiguousarray(columns["velocity"], dtype=np.int64).ravel(),
            }
            out.update(
                {name: np.ascontiguousarray(columns[name], dtype=np.float64).ravel() for name in cls._FLOAT_COLUMNS}
            )
            chroma = np.asarray(columns["chroma"], dtype=np.int64).reshape(n, -1)
        except (KeyError, ValueError, TypeError) as error:
            raise ParameterError(f"descriptor columns are missing or malformed: {error}") from None
        if any(a.size != n for a in out.values()):
            raise ParameterError("tokens, event_ids and descriptor columns must have one entry per row")
        if n and tok.min() < -1:
            raise ParameterError(f"token must be >= 0 (or -1 for unknown), got {int(tok.min())}")
        if n and (
            out["velocity"].min() < 1
            or out["velocity"].max() > 127
            or chroma.min(initial=0) < -1
            or chroma.max(initial=0) > 11
            or not all(np.isfinite(out[k]).all() for k in cls._FLOAT_COLUMNS)
        ):
            raise ParameterError("velocity must be in 1..127, chroma pitch classes in -1..11, times finite")
        padded = np.full((n, MAX_CHROMA_PEAKS), -1, dtype=np.int8)
        k = min(MAX_CHROMA_PEAKS, chroma.shape[1])
        padded[:, :k] = chroma[:, :k]
        out["chroma"] = padded
        if "note_pitch" in columns:
            try:
                slices = {name: np.asarray(columns[name]) for name in SLICE_COLUMNS}
            except KeyError as error:
                raise ParameterError(f"slice columns are incomplete: {error}") from None
            shapes_ok = (
                slices["note_pitch"].ndim == 2
                and slices["note_pitch"].shape[0] == n
                and all(slices[name].shape == slices["note_pitch"].shape for name in _NOTE_FIELDS)
                and slices["pressure"].shape == (n, EXPRESSION_POINTS)
                and slices["f0_cents"].shape == (n, EXPRESSION_POINTS)
                and slices["timbre"].shape == (n,)
            )
            if not shapes_ok:
                raise ParameterError("slice columns must be (n, notes) per note field, (n, 8) curves and (n,) timbre")
            pitch = slices["note_pitch"]
            present = pitch >= 0
            if n and (
                (pitch > 127).any()
                or (present & ((slices["note_velocity"] < 1) | (slices["note_velocity"] > 127))).any()
                or (slices["pressure"] < 0).any()
                or (slices["pressure"] > 127).any()
                or (slices["timbre"] < 0).any()
                or (slices["timbre"] > 127).any()
                or not all(np.isfinite(slices[k]).all() for k in (*_NOTE_FLOAT_COLUMNS, "f0_cents"))
            ):
                raise ParameterError("slice notes need pitch/velocity/pressure/timbre in MIDI range and finite times")
            out.update({f"slice.{name}": a for name, a in slices.items()})
        return out

    def append_prepared(self, prepared: dict[str, np.ndarray], *, source: str = "") -> None:
        n = prepared["token"].size
        index = self._source_ids.get(source)
        if index is None:
            index = self._source_ids[source] = len(self.sources)
            self.sources.append(source)
        self.source_index.extend(array("q", [index]) * n)
        for name, values in prepared.items():
            if not name.startswith("slice."):
                getattr(self, name).frombytes(values.tobytes())
        self._append_slices({name[6:]: a for name, a in prepared.items() if name.startswith("slice.")}, n)

    _SLICE_ARRAYS = ("note_offsets", *_NOTE_INT_COLUMNS, *_NOTE_FLOAT_COLUMNS, "pressure", "f0_cents", "timbre")

    @property
    def nbytes(self) -> int:
        """Bytes held by the metadata columns, slice notes included (allocated capacity; source names not counted)."""
        columns = (*self._INT_COLUMNS, *self._FLOAT_COLUMNS, "chroma", *self._SLICE_ARRAYS)
        return sum(getattr(self, c).buffer_info()[1] * getattr(self, c).itemsize for c in columns)

    def notes(self, state: int) -> tuple[tuple[int, float, float, int, float, float], ...]:
        """The notes sounding in ``state``'s slice (see :class:`StateInfo`)."""
        lo, hi = self.note_offsets[state], self.note_offsets[state + 1]
        return tuple(
            (
                self.note_pitch[k],
                self.note_onset_s[k],
                self.note_duration_s[k],
                self.note_velocity[k],
                self.note_bend_cents[k],
                self.note_glide_cents[k],
            )
            for k in range(lo, hi)
        )

    def chroma_peaks(self, state: int) -> tuple[int, ...]:
        row = self.chroma[state * MAX_CHROMA_PEAKS : (state + 1) * MAX_CHROMA_PEAKS]
        return tuple(pc for pc in row if pc >= 0)

    def info(self, state: int, *, features: np.ndarray | None = None) -> StateInfo:
        if not 0 <= state < len(self.token):
            raise ParameterError(f"state {state} is outside 0..{len(self.token) - 1}")
        return StateInfo(
            state=state,
            token=self.token[state],
            onset_s=self.onset_s[state],
            duration_s=self.duration_s[state],
            velocity=self.velocity[state],
            f0_hz=self.f0_hz[state],
            chroma_peaks=self.chroma_peaks(state),
            event_id=self.event_id[state],
            source=self.sources[self.source_index[state]],
            features=features,
            notes=self.notes(state),
            pressure=tuple(self.pressure[state * EXPRESSION_POINTS : (state + 1) * EXPRESSION_POINTS]),
            f0_cents=tuple(self.f0_cents[state * EXPRESSION_POINTS : (state + 1) * EXPRESSION_POINTS]),
            timbre=self.timbre[state],
        )

    def meta(self) -> dict[str, Any]:
        return {"sources": list(self.sources)}

    def arrays(self, *, prefix: str) -> dict[str, np.ndarray]:
        out = {
            f"{prefix}{name}": np.frombuffer(getattr(self, name), dtype=np.int64).copy() for name in self._INT_COLUMNS
        }
        out.update(
            {
                f"{prefix}{name}": np.frombuffer(getattr(self, name), dtype=np.float64).copy()
                for name in self._FLOAT_COLUMNS
            }
        )
        out[f"{prefix}chroma"] = np.frombuffer(self.chroma, dtype=np.int8).reshape(-1, MAX_CHROMA_PEAKS).copy()
        out[f"{prefix}note_offsets"] = np.frombuffer(self.note_offsets, dtype=np.int64).copy()
        for name in _NOTE_INT_COLUMNS + ("timbre",):
            out[f"{prefix}{name}"] = np.frombuffer(getattr(self, name), dtype=np.int64).copy()
        for name in _NOTE_FLOAT_COLUMNS:
            out[f"{prefix}{name}"] = np.frombuffer(getattr(self, name), dtype=np.float64).copy()
        out[f"{prefix}pressure"] = np.frombuffer(self.pressure, dtype=np.int8).reshape(-1, EXPRESSION_POINTS).copy()
        out[f"{prefix}f0_cents"] = np.frombuffer(self.f0_cents, dtype=np.float64).reshape(-1, EXPRESSION_POINTS).copy()
        return out

    @classmethod
    def from_arrays(cls, meta: Any, arrays: dict[str, np.ndarray], *, prefix: str, n_states: int) -> StateStore:
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("sources"), list)
            or not all(isinstance(s, str) for s in meta["sources"])
        ):
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
        if (
            chroma.dtype.kind not in "iu"
            or chroma.shape != (n_states, MAX_CHROMA_PEAKS)
            or (chroma < -1).any()
            or (chroma > 11).any()
        ):
            raise ModelFormatError(
                f"oracle states: {prefix}chroma must be ({n_states}, {MAX_CHROMA_PEAKS}) pitch classes or -1"
            )
        store.chroma = array("b", np.ascontiguousarray(chroma, dtype=np.int8).tobytes())
        velocity = np.frombuffer(store.velocity, dtype=np.int64)
        sources = np.frombuffer(store.source_index, dtype=np.int64)
        if n_states and (
            (velocity < 1).any()
            or (velocity > 127).any()
            or (sources < 0).any()
            or (sources >= len(store.sources)).any()
        ):
            raise ModelFormatError("oracle states: velocity must be in 1..127 and source indices valid")
        if prefix + "note_offsets" not in arrays:  # written before schema 3: no slice notes, neutral expression
            store.note_offsets = array("q", [0] * (n_states + 1))
            store.pressure = array("b", [0] * (n_states * EXPRESSION_POINTS))
            store.f0_cents = array("d", [0.0] * (n_states * EXPRESSION_POINTS))
            store.timbre = array("q", [_DEFAULT_TIMBRE] * n_states)
            return store
        store._load_slices(arrays, prefix=prefix, n_states=n_states)
        return store

    def _load_slices(self, arrays: dict[str, np.ndarray], *, prefix: str, n_states: int) -> None:
        for name in self._SLICE_ARRAYS:
            if prefix + name not in arrays:
                raise ModelFormatError(f"oracle states: array {prefix + name} is missing")
        offsets = np.asarray(arrays[prefix + "note_offsets"])
        if (
            offsets.dtype.kind not in "iu"
            or offsets.shape != (n_states + 1,)
            or (n_states and offsets[0] != 0)
            or (np.diff(offsets) < 0).any()
        ):
            raise ModelFormatError(
                f"oracle states: {prefix}note_offsets must be {n_states + 1} non-decreasing integers from 0"
            )
        total = int(offsets[-1]) if offsets.size else 0
        for name in _NOTE_INT_COLUMNS + _NOTE_FLOAT_COLUMNS:
            a = np.asarray(arrays[prefix + name])
            if (
                a.shape != (total,)
                or (name in _NOTE_INT_COLUMNS and a.dtype.kind not in "iu")
                or (name in _NOTE_FLOAT_COLUMNS and (a.dtype.kind != "f" or not np.isfinite(a).all()))
            ):
                raise ModelFormatError(f"oracle states: {prefix + name} must hold {total} notes")
        pitch, velocity = np.asarray(arrays[prefix + "note_pitch"]), np.asarray(arrays[prefix + "note_velocity"])
        pressure, f0_cents = np.asarray(arrays[prefix + "pressure"]), np.asarray(arrays[prefix + "f0_cents"])
        timbre = np.asarray(arrays[prefix + "timbre"])
        if total and ((pitch < 0).any() or (pitch > 127).any() or (velocity < 1).any() or (velocity > 127).any()):
            raise ModelFormatError("oracle states: note pitch must be in 0..127 and velocity in 1..127")
        if (
            pressure.shape != (n_states, EXPRESSION_POINTS)
            or pressure.dtype.kind not in "iu"
            or (pressure < 0).any()
            or f0_cents.shape != (n_states, EXPRESSION_POINTS)
            or f0_cents.dtype.kind != "f"
            or not np.isfinite(f0_cents).all()
            or timbre.shape != (n_states,)
            or timbre.dtype.kind not in "iu"
            or (timbre < 0).any()
            or (timbre > 127).any()
        ):
            raise ModelFormatError(
                f"oracle states: pressure/f0_cents must be ({n_states}, {EXPRESSION_POINTS}), timbre "
                f"{n_states} values in 0..127"
            )
        self.note_offsets = array("q", np.ascontiguousarray(offsets, dtype=np.int64).tobytes())
        for name in _NOTE_INT_COLUMNS:
            setattr(self, name, array("q", np.ascontiguousarray(arrays[prefix + name], dtype=np.int64).tobytes()))
        for name in _NOTE_FLOAT_COLUMNS:
            setattr(self, name, array("d", np.ascontiguousarray(arrays[prefix + name], dtype=np.float64).tobytes()))
        self.pressure = array("b", np.ascontiguousarray(pressure, dtype=np.int8).tobytes())
        self.f0_cents = array("d", np.ascontiguousarray(f0_cents, dtype=np.float64).tobytes())
        self.timbre = array("q", np.ascontiguousarray(timbre, dtype=np.int64).tobytes())
