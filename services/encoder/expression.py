"""Expression of one slice (pure numpy): what the MPE profile needs to play a slice back with its nuance.

* :func:`pressure_envelope` — the slice's loudness envelope (RMS in ``points`` equal segments, −60..0 dBFS → 0..127):
  channel pressure over the note's life.
* :func:`f0_cents_curve` — the f0 (YIN, :func:`~services.encoder.features.estimate_f0`) of each segment as cents
  from a reference semitone: the nearest semitone of the slice's own f0 (``reference_hz``, the descriptors'
  ``f0_hz``: the pitch the player plays for the state), else of the first voiced segment. It holds the deviation
  (microtonal intonation) and, unwrapped, the glide (a slide of 150 cents reads 150, not −50). Unvoiced segments
  repeat the last voiced value (0 before any).
* :func:`timbre_cc74` — spectral centroid mapped like feature dimension 20 (``log2(centroid / 50 Hz) / 7``) onto
  0..127: CC74 ("brightness").

Every event gets them (cheap: no transcription needed) through the one analysis path of the trainer and the live
encoder (:func:`services.encoder.analysis.analyze_windows`). How they reach MIDI:
:mod:`services.oracle.player.expression`
turns a state's expression into a note's (``shared.messages.NoteEvent``: starting bend, bend and pressure
automation, CC74), which ``services.midi_out`` sends per note in the MPE profile.

>>> import numpy as np
>>> sr = 48000
>>> t = np.arange(sr // 2) / sr
>>> tone = (0.5 * np.sin(2 * np.pi * 440.0 * 2 ** (30 / 1200) * t)).astype(np.float32)   # A4 + 30 cents
>>> [round(c) for c in f0_cents_curve(tone, sample_rate_hz=sr, points=4)]
[30, 30, 30, 30]
>>> pressure_envelope(np.zeros(4800, np.float32), sample_rate_hz=sr, points=4)
(0, 0, 0, 0)
"""

from __future__ import annotations

import numpy as np

from services.encoder.features import estimate_f0, magnitude_spectrum, validate_window
from shared.errors import ParameterError
from shared.pitch import hz_to_midi_array

__all__ = [
    "EXPRESSION_POINTS",
    "pressure_envelope",
    "f0_cents_curve",
    "timbre_cc74",
    "timbre_from_centroid_feature",
    "slice_expression",
    "DynamicsFollower",
]

EXPRESSION_POINTS = 8
_FLOOR_DB = -60.0


def _segments(x: np.ndarray, points: int) -> list[np.ndarray]:
    if int(points) < 1:
        raise ParameterError(f"points must be >= 1, got {points}")
    edges = np.linspace(0, x.size, int(points) + 1).astype(int)
    return [x[edges[i] : max(edges[i + 1], edges[i] + 1)] for i in range(int(points))]


def pressure_envelope(window: np.ndarray, *, sample_rate_hz: int, points: int = EXPRESSION_POINTS) -> tuple[int, ...]:
    """RMS of ``points`` equal segments, −60 dBFS → 0 … 0 dBFS → 127 (linear in dB)."""
    x = validate_window(window, sample_rate_hz)
    out = []
    for segment in _segments(x, points):
        rms = float(np.sqrt(np.mean(segment * segment))) if segment.size else 0.0
        db = 20.0 * np.log10(max(rms, 1e-10))
        out.append(int(np.clip(np.rint(127.0 * (db - _FLOOR_DB) / -_FLOOR_DB), 0, 127)))
    return tuple(out)


def f0_cents_curve(
    window: np.ndarray,
    *,
    sample_rate_hz: int,
    points: int = EXPRESSION_POINTS,
    min_confidence: float = 0.6,
    reference_hz: float = 0.0,
) -> tuple[float, ...]:
    """Cents of each segment's f0 from the nearest semitone of ``reference_hz`` (when > 0) or of the first voiced
    segment (see module docstring)."""
    x = validate_window(window, sample_rate_hz)
    reference = float(np.rint(hz_to_midi_array(reference_hz))) if reference_hz > 0.0 else None
    last = 0.0
    out = []
    for segment in _segments(x, points):
        f0, confidence = (
            estimate_f0(segment, sample_rate_hz=sample_rate_hz, fmin_hz=60.0) if segment.size > 64 else (0.0, 0.0)
        )
        if f0 > 0.0 and confidence >= min_confidence:
            midi = hz_to_midi_array(f0)
            if reference is None:
                reference = float(np.rint(midi))
            last = round(100.0 * (midi - reference), 1)
        out.append(float(last))
    return tuple(out)


def timbre_cc74(window: np.ndarray, *, sample_rate_hz: int) -> int:
    """Spectral centroid → CC74 0..127 (64 on silence)."""
    x = validate_window(window, sample_rate_hz)
    if x.size < 2:
        return 64
    mag, n_fft = magnitude_spectrum(x - x.mean(), int(sample_rate_hz))
    power = mag * mag
    total = float(power.sum())
    if total <= 1e-20:
        return 64
    centroid = float(np.dot(np.fft.rfftfreq(n_fft, 1.0 / int(sample_rate_hz)), power) / total)
    return int(np.clip(np.rint(127.0 * np.log2(max(centroid, 50.0) / 50.0) / 7.0), 0, 127))


def timbre_from_centroid_feature(value: float) -> int:
    """CC74 from the traditional view's spectral-centroid dimension (``log2(centroid / 50 Hz) / 7``, 0..1): the same
    mapping as :func:`timbre_cc74` without a second spectrum."""
    return int(np.clip(np.rint(127.0 * float(value)), 0, 127))


def slice_expression(
    window: np.ndarray,
    *,
    sample_rate_hz: int,
    points: int = EXPRESSION_POINTS,
    reference_hz: float = 0.0,
    centroid_feature: float | None = None,
) -> dict:
    """``{"pressure": ..., "f0_cents": ..., "timbre": ...}`` of one slice (the fields of ``EventDescriptors``).

    ``reference_hz``: the slice's f0 (the curve's reference semitone, see :func:`f0_cents_curve`);
    ``centroid_feature``: the window's traditional feature dimension 20 when already computed (saves a spectrum;
    ``None`` on a silent window's zero vector too, which gives the neutral 64).
    """
    timbre = (
        timbre_from_centroid_feature(centroid_feature)
        if centroid_feature is not None
        else timbre_cc74(window, sample_rate_hz=sample_rate_hz)
    )
    return {
        "pressure": pressure_envelope(window, sample_rate_hz=sample_rate_hz, points=points),
        "f0_cents": f0_cents_curve(window, sample_rate_hz=sample_rate_hz, points=points, reference_hz=reference_hz),
        "timbre": timbre,
    }


class DynamicsFollower:
    """Dynamics follow the musician: a velocity scale that tracks the live input's loudness.

    Each input event's velocity (``EventDescriptors.velocity``, from its RMS) updates an exponential average with a
    ``half_life_s`` in the input's own time (onset seconds: deterministic, no wall clock). :meth:`apply` scales a stored
    velocity by ``average / reference`` (clipped to ``min_scale .. max_scale`` and 1..127), so a memory learned loud
    plays soft when the musician plays soft. Before any input the scale is 1.

    >>> follow = DynamicsFollower(reference=80, half_life_s=2.0)
    >>> follow.apply(80)
    80
    >>> follow.update(0.0, 100)       # the musician starts loud
    >>> follow.apply(80)
    100
    >>> for t in range(1, 9):         # then plays soft for 8 s (4 half-lives)
    ...     follow.update(float(t), 40)
    >>> follow.apply(80), round(follow.scale, 2)
    (44, 0.55)
    """

    def __init__(
        self, *, reference: float = 80.0, half_life_s: float = 4.0, min_scale: float = 0.25, max_scale: float = 1.6
    ) -> None:
        if not 1.0 <= float(reference) <= 127.0:
            raise ParameterError(f"reference must be a velocity in 1..127, got {reference}")
        if not float(half_life_s) > 0.0 or not 0.0 < float(min_scale) <= 1.0 <= float(max_scale):
            raise ParameterError("need half_life_s > 0 and 0 < min_scale <= 1 <= max_scale")
        self.reference = float(reference)
        self.half_life_s = float(half_life_s)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.average: float | None = None
        self._last_s: float | None = None

    def update(self, onset_s: float, velocity: int) -> None:
        """One input event at ``onset_s`` (seconds, non-decreasing) with MIDI ``velocity`` 1..127."""
        if not 1 <= int(velocity) <= 127:
            raise ParameterError(f"velocity must be in 1..127, got {velocity}")
        if self.average is None or self._last_s is None:
            self.average = float(velocity)
        else:
            dt = max(0.0, float(onset_s) - self._last_s)
            keep = 0.5 ** (dt / self.half_life_s)
            self.average = keep * self.average + (1.0 - keep) * float(velocity)
        self._last_s = float(onset_s) if self._last_s is None else max(self._last_s, float(onset_s))

    @property
    def scale(self) -> float:
        if self.average is None:
            return 1.0
        return float(np.clip(self.average / self.reference, self.min_scale, self.max_scale))

    def apply(self, velocity: int) -> int:
        """``velocity`` scaled to the musician's current dynamics (1..127)."""
        return int(np.clip(np.rint(int(velocity) * self.scale), 1, 127))
