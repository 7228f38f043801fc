"""A note's expression from the memory state it is played from (pure): what the MPE profile sends per note.

Each state holds its slice's expression (:mod:`services.encoder.expression`, stored by
:class:`~services.oracle.memory.states.StateStore`): a loudness envelope (``pressure``, 8 points 0..127), an f0 curve in
cents from the nearest semitone of the slice's own f0 (``f0_cents``, 8 points, glides unwrapped), a CC74 value
(``timbre``) and, when slices are transcribed, per note bend and glide in cents. :func:`note_expression` turns them
into a note's :class:`NoteExpression`:

* **bend** — the f0 path of the slice is ``round(midi(f0_hz)) + f0_cents / 100`` semitones (octave slips of the
  per-segment estimate folded away); relative to the note's learned pitch it is the bend: the starting bend is its
  first point (a +30 cent slice gives 0.30, not rounded away) and the rest is a bend automation over the note's life
  (a glide comes out as a rising or falling bend). It is used when the note the player plays lies on that path (within
  half a semitone somewhere): otherwise the f0 belongs to another voice of the slice and the note takes its
  transcribed note's ``bend_cents`` (and ``glide_cents`` as a linear ramp) when the slice has a note of that pitch,
  else no bend;
* **pressure** — the envelope: its first point before the note-on, then an automation (channel pressure);
* **timbre** — the state's CC74.

Curve point ``i`` stands for the centre of segment ``i`` of the slice's analysis window (``window_s``, the
segmenter's ``window_ms``); slice time runs ``speed`` times faster in the note (density × tempo). The automation is
sampled every ``step_s`` and keeps only the points that change the value (1 cent of bend, 1 step of pressure),
strictly before the note's end.

:func:`with_dynamics` scales a note's velocity and pressure by the musician's dynamics
(:class:`~services.encoder.expression.DynamicsFollower`).

>>> from services.oracle.memory.states import StateInfo
>>> state = StateInfo(state=1, token=0, onset_s=0.0, duration_s=0.5, velocity=80, f0_hz=440.0 * 2 ** (30 / 1200),
...                   chroma_peaks=(9,), event_id=0, source="", pressure=(100,) * 8, f0_cents=(30.0,) * 8, timbre=90)
>>> e = note_expression(state, learned_pitch=69, duration_s=0.4)
>>> e.bend_semitones, e.bend_curve, e.pressure, e.pressure_curve, e.timbre
(0.3, (), 100, (), 90)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import ParameterError
from shared.messages import NoteEvent
from shared.pitch import hz_to_midi_array

__all__ = [
    "NoteExpression",
    "NEUTRAL",
    "note_expression",
    "with_dynamics",
    "expression_window_s",
    "AUTOMATION_STEP_S",
    "ON_PATH_SEMITONES",
]

AUTOMATION_STEP_S = 0.02
ON_PATH_SEMITONES = 0.5  # the played note must lie this close to the slice's f0 path to take its bend
_BEND_STEP = 0.01  # semitones (1 cent): smaller changes are not sent
_DEFAULT_WINDOW_S = 0.5


@dataclass(frozen=True, slots=True)
class NoteExpression:
    """A note's MPE expression (the NoteEvent fields of the same names)."""

    bend_semitones: float = 0.0
    bend_curve: tuple[tuple[float, float], ...] = ()
    pressure: int = 0
    pressure_curve: tuple[tuple[float, int], ...] = ()
    timbre: int = 64

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~shared.messages.NoteEvent`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


NEUTRAL = NoteExpression()


def expression_window_s(memory: Any) -> float:
    """The analysis window (seconds) the memory's curves span: ``segmenter.window_ms`` of its config (0.5 s without)."""
    config = getattr(memory, "config", None)
    segmenter = getattr(config, "segmenter", None)
    return _DEFAULT_WINDOW_S if segmenter is None else float(segmenter.window_ms) / 1000.0


def _automation(
    times_s: np.ndarray, values: np.ndarray, *, duration_s: float, step_s: float, min_change: float, as_int: bool
) -> tuple[float | int, tuple]:
    """Start value and the changing points of the piecewise-linear curve through (times_s, values), before
    duration_s."""

    def value_at(t: float):
        v = float(np.interp(t, times_s, values))
        return int(np.clip(np.rint(v), 0, 127)) if as_int else round(v, 4)

    start = value_at(0.0)
    points = []
    last = start
    k = 1
    while k * step_s < duration_s - 1e-9 and len(points) < 256:
        t = k * step_s
        v = value_at(t)
        if abs(v - last) >= min_change:
            points.append((round(t, 6), v))
            last = v
        k += 1
    return start, tuple(points)


def note_expression(
    state: Any,
    *,
    learned_pitch: float | None,
    duration_s: float,
    speed: float = 1.0,
    window_s: float = _DEFAULT_WINDOW_S,
    step_s: float = AUTOMATION_STEP_S,
) -> NoteExpression:
    """The expression of a note played from ``state`` (a :class:`~services.oracle.memory.states.StateInfo`).

    ``learned_pitch``: the state's own pitch the note plays (before transposition and octave moves; None when it
    has none); ``duration_s``: how long the note sounds; ``speed``: slice seconds per note second.
    """
    if not duration_s >= 0.0 or not speed > 0.0 or not window_s > 0.0 or not step_s > 0.0:
        raise ParameterError("need duration_s >= 0, speed > 0, window_s > 0 and step_s > 0")
    n = max(len(state.pressure), len(state.f0_cents))
    if n == 0:
        return NoteExpression(timbre=int(state.timbre))
    pressure, pressure_curve = 0, ()
    if len(state.pressure) and any(state.pressure):
        env = np.asarray(state.pressure, dtype=np.float64)
        centres = (np.arange(env.size) + 0.5) * window_s / env.size / speed
        pressure, pressure_curve = _automation(
            centres, env, duration_s=duration_s, step_s=step_s, min_change=1, as_int=True
        )
    bend, bend_curve = 0.0, ()
    have_pitch = learned_pitch is not None and math.isfinite(float(learned_pitch))
    path = None
    if have_pitch and state.f0_hz > 0.0 and len(state.f0_cents):
        cents = np.asarray(state.f0_cents, dtype=np.float64)
        cents = cents - 1200.0 * np.rint(cents / 1200.0)  # octave slips of the per-segment f0
        reference = float(np.rint(hz_to_midi_array(state.f0_hz)))
        path = reference + cents / 100.0 - float(learned_pitch)
        if np.abs(path).min() > ON_PATH_SEMITONES:
            path = None  # the f0 is another voice's
    if path is not None:
        centres = (np.arange(path.size) + 0.5) * window_s / path.size / speed
        bend, bend_curve = _automation(
            centres, path, duration_s=duration_s, step_s=step_s, min_change=_BEND_STEP, as_int=False
        )
    elif have_pitch:
        for pitch, _onset_s, note_duration_s, _velocity, bend_cents, glide_cents in state.notes:
            if pitch == int(round(float(learned_pitch))):
                half = glide_cents / 200.0
                span = max(float(note_duration_s), 1e-3) / speed
                bend, bend_curve = _automation(
                    np.array([0.0, span]),
                    np.array([bend_cents / 100.0 - half, bend_cents / 100.0 + half]),
                    duration_s=duration_s,
                    step_s=step_s,
                    min_change=_BEND_STEP,
                    as_int=False,
                )
                break
    if abs(bend) < _BEND_STEP / 2 and not bend_curve:
        bend = 0.0
    return NoteExpression(
        bend_semitones=float(bend),
        bend_curve=bend_curve,
        pressure=int(pressure),
        pressure_curve=pressure_curve,
        timbre=int(state.timbre),
    )


def with_dynamics(note: NoteEvent, scale: float) -> NoteEvent:
    """``note`` with its velocity (1..127) and pressure (start and automation, 0..127) scaled by ``scale``."""
    if not scale >= 0.0 or not math.isfinite(scale):
        raise ParameterError(f"scale must be a finite number >= 0, got {scale}")
    if scale == 1.0:
        return note

    def level(v: int, low: int) -> int:
        return int(min(127, max(low, round(v * scale))))

    return dataclasses.replace(
        note,
        velocity=level(note.velocity, 1),
        pressure=level(note.pressure, 0),
        pressure_curve=tuple((t, level(v, 0)) for t, v in note.pressure_curve),
    )
