"""Small, validated messages that cross actor boundaries.

Times named ``t_*`` are ``time.monotonic()`` seconds on the machine that stamped them (latency accounting);
times named ``*_s`` are seconds on the audio sample clock (sample index / internal rate).
Every message round-trips through orjson bytes:

>>> note = NoteEvent(note_id=1, pitch=60, velocity=90, t_on=10.0, t_off=10.5, bend_semitones=0.3,
...                  bend_curve=((0.1, 0.5), (0.2, 0.8)), pressure_curve=((0.1, 70),))
>>> message_from_bytes(message_to_bytes(note)) == note
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from shared.errors import ParameterError
from shared.errors import check as _check

__all__ = [
    "Event",
    "EventDescriptors",
    "Percept",
    "NoteEvent",
    "message_to_bytes",
    "message_from_bytes",
]


@dataclass(frozen=True, slots=True)
class Event:
    """An onset found by the segmenter: its analysis window is samples ``[window_start, window_end)`` of the ring."""

    event_id: int
    onset_sample: int
    window_start: int
    window_end: int
    sample_rate_hz: int
    strength: float = 0.0
    t_detected: float = 0.0  # monotonic time the last sample of the analysis window was written to the ring
    t_sent: float = 0.0  # monotonic time capture put the event on the events ring (after segmentation)
    source: str = ""  # file name or device name the audio came from
    early: bool = False  # an early view: the first ``segmenter.early_ms`` after the onset (influence only, not learned)

    def __post_init__(self) -> None:
        _check(self.event_id >= 0, "event_id must be >= 0")
        _check(0 <= self.window_start < self.window_end, "event window must satisfy 0 <= start < end")
        _check(self.sample_rate_hz > 0, "sample_rate_hz must be > 0")

    @property
    def onset_s(self) -> float:
        return self.onset_sample / self.sample_rate_hz

    def age_s(self, now: float) -> float:
        """Seconds since the window's last sample was written, on the clock that stamped it (0 when unstamped)."""
        return max(0.0, now - self.t_detected) if self.t_detected else 0.0

    @property
    def window_samples(self) -> int:
        return self.window_end - self.window_start


@dataclass(frozen=True, slots=True)
class EventDescriptors:
    """What the oracle needs to turn an event back into notes."""

    onset_s: float
    duration_s: float  # to the next onset (the analysis window length until it is known)
    rms: float
    velocity: int
    f0_hz: float  # 0.0 when unvoiced
    f0_confidence: float
    chroma_peaks: tuple[int, ...] = ()  # pitch classes by decreasing strength
    # the notes sounding in the slice (services.encoder.transcription): (pitch, onset_s in the slice, duration_s,
    # velocity, bend_cents, glide_cents) each
    notes: tuple[tuple[int, float, float, int, float, float], ...] = ()
    # expression over the slice (services.encoder.expression): pressure envelope 0..127 (from loudness), f0
    # deviation curve in cents from the nearest semitone (0 where unvoiced), CC74 0..127 (from spectral centroid)
    pressure: tuple[int, ...] = ()
    f0_cents: tuple[float, ...] = ()
    timbre: int = 64

    def __post_init__(self) -> None:
        _check(1 <= self.velocity <= 127, f"velocity must be in 1..127, got {self.velocity}")
        _check(self.duration_s >= 0.0, "duration_s must be >= 0")
        _check(all(0 <= pc < 12 for pc in self.chroma_peaks), "chroma_peaks must be pitch classes 0..11")
        _check(
            all(
                len(n) == 6 and 0 <= n[0] <= 127 and n[1] >= 0.0 and n[2] >= 0.0 and 1 <= n[3] <= 127
                for n in self.notes
            ),
            "notes must be (pitch 0..127, onset_s >= 0, duration_s >= 0, velocity 1..127, bend_cents, glide_cents)",
        )
        _check(
            all(0 <= p <= 127 for p in self.pressure) and 0 <= self.timbre <= 127,
            "pressure and timbre must be in 0..127",
        )


@dataclass(frozen=True, slots=True)
class Percept:
    """The encoder's answer for one event: token(s), features and descriptors, stamped with the node that made it."""

    event_id: int
    token: int
    features: np.ndarray = field(compare=False)
    descriptors: EventDescriptors | None = None
    view: str = "traditional"  # which view produced ``token``/``features``
    traditional_token: int | None = None  # hybrid: the traditional view's token as well
    node_id: str = ""
    stamps: dict[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check(self.token >= 0, "token must be >= 0")
        _check(
            self.view in ("traditional", "wav2vec", "symbolic"),
            f"view must be traditional, wav2vec or symbolic, got {self.view!r}",
        )


def _check_curve(curve: Any, name: str, *, low: float, high: float) -> None:
    _check(
        all(
            len(point) == 2
            and math.isfinite(point[0])
            and point[0] >= 0.0
            and math.isfinite(point[1])
            and low <= point[1] <= high
            for point in curve
        ),
        f"{name} must be (offset_s >= 0, value in {low:g}..{high:g}) points",
    )
    _check(all(a[0] <= b[0] for a, b in zip(curve, curve[1:])), f"{name} offsets must not decrease")


@dataclass(frozen=True, slots=True)
class NoteEvent:
    """A note to play: absolute monotonic on/off times, MPE expression, and where it came from.

    The starting expression (``bend_semitones``, ``pressure``, ``timbre`` = CC74) is set before the note-on; the
    automation curves are ``(offset_s after t_on, value)`` points sent during the note (bend in semitones,
    pressure 0..127); points at or after ``t_off`` are never sent. Only the MPE profile sends any of them.
    """

    note_id: int
    pitch: int
    velocity: int
    t_on: float
    t_off: float
    bend_semitones: float = 0.0
    pressure: int = 0
    timbre: int = 64  # CC74
    voice: str = "melody"
    source_state: int = -1
    source_event_id: int = -1
    stamps: dict[str, float] = field(default_factory=dict, compare=False)
    bend_curve: tuple[tuple[float, float], ...] = ()
    pressure_curve: tuple[tuple[float, int], ...] = ()

    def __post_init__(self) -> None:
        _check(0 <= self.pitch <= 127, f"pitch must be in 0..127, got {self.pitch}")
        _check(1 <= self.velocity <= 127, f"velocity must be in 1..127, got {self.velocity}")
        _check(self.t_off >= self.t_on, "t_off must be >= t_on")
        _check(0 <= self.pressure <= 127 and 0 <= self.timbre <= 127, "pressure and timbre must be in 0..127")
        _check(math.isfinite(self.bend_semitones), "bend_semitones must be finite")
        _check_curve(self.bend_curve, "bend_curve", low=-127.0, high=127.0)
        _check_curve(self.pressure_curve, "pressure_curve", low=0, high=127)
        _check(all(isinstance(p[1], int) for p in self.pressure_curve), "pressure_curve values must be integers")


_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Event, EventDescriptors, Percept, NoteEvent)}


def _to_plain(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"__type__": type(message).__name__}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if dataclasses.is_dataclass(value):
            value = _to_plain(value)
        out[f.name] = value
    return out


def message_to_bytes(message: Any) -> bytes:
    """Serialise a message (numpy arrays included) with orjson."""
    if type(message).__name__ not in _TYPES:
        raise ParameterError(f"not a MusicHal message: {type(message).__name__}")
    return orjson.dumps(_to_plain(message), option=orjson.OPT_SERIALIZE_NUMPY)


def _from_plain(data: dict[str, Any]) -> Any:
    kind = data.pop("__type__", None)
    cls = _TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ParameterError(f"unknown message type {kind!r}")
    for key, value in list(data.items()):
        if isinstance(value, dict) and "__type__" in value:
            data[key] = _from_plain(value)
    if cls is Percept:
        data["features"] = np.asarray(data["features"], dtype=np.float32)
    if cls is EventDescriptors:
        data["chroma_peaks"] = tuple(data["chroma_peaks"])
        data["notes"] = tuple(
            (int(n[0]), float(n[1]), float(n[2]), int(n[3]), float(n[4]), float(n[5])) for n in data.get("notes", ())
        )
        data["pressure"] = tuple(int(p) for p in data.get("pressure", ()))
        data["f0_cents"] = tuple(float(c) for c in data.get("f0_cents", ()))
    if cls is NoteEvent:
        data["bend_curve"] = tuple((float(t), float(v)) for t, v in data.get("bend_curve", ()))
        data["pressure_curve"] = tuple((float(t), int(v)) for t, v in data.get("pressure_curve", ()))
    return cls(**data)


def message_from_bytes(payload: bytes) -> Any:
    """Inverse of :func:`message_to_bytes`."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise ParameterError(f"message is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ParameterError("message must be a JSON object")
    return _from_plain(data)
