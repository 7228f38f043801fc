"""Voices: several players over one memory — melody, bass and comping (pure logic, no Ray).

The melody is today's :class:`~services.oracle.player.walk.Player`, unchanged: its clock is the band's clock. The
bass and comping voices *follow* it: they decide at the melody's steps, over the state the melody has just
chosen (its harmony), transposed as the melody is, each with its own range, density and clock phase.

=========  =============================================================================================
voice      what it plays
=========  =============================================================================================
melody     the player's note (``generation.melody_range``, ``generation.density``), voice ``"melody"``
bass       the lowest transcribed note of the melody state's slice (``store.notes``), else its f0's pitch
           class, else its strongest chroma class; placed in ``voices.bass_range`` next to the previous bass
           note (pulled half-way to the range's centre, so the line does not drift to an end of the range), and
           below the melody's note when the range allows (otherwise the bass rests that turn).
           Onsets: every melody run start (a jump), and whenever its credit (``bass_density`` per melody
           step) reaches 1
comping    a chord of at most ``voices.max_polyphony`` notes whose pitch classes are the slice's transcribed
           pitch classes (the state's chroma peaks when it has none), strongest first (note count and
           velocity, plus the live input's recent pitch-class profile: it hears the musician); the bass's
           pitch class is left out when more classes than voices are available (it hears the bass). The
           octaves are the placement inside ``voices.comping_range`` that moves least from the previous chord
           (:func:`voice_chord`, smooth voice leading), with a cost on notes at or above the melody's. Onsets: credit
           ``comping_density`` per melody step
=========  =============================================================================================

A follower's note starts ``phase * (melody step interval)`` after the melody's step (its own clock phase) and
lasts until its next expected onset (``ceil(1 / density)`` melody steps of the current interval — or of the
median of the melody's last 8 step-to-step times when that is shorter: reactions step sooner than the learned
time —, 95 %, clamped to 0.1..4 s). A voice switched off plays nothing (the melody still steps when it is off: it is the
clock the others follow). With only the melody on, :meth:`Ensemble.tick` returns exactly the player's notes.
Note ids come from one counter (the player's), so they are unique across voices.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.oracle.player.expression import NEUTRAL, expression_window_s, note_expression
from services.oracle.player.walk import MELODY_START_S, Player
from shared.config import VOICE_NAMES, GenerationConfig, VoicesConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from shared.pitch import hz_to_midi

__all__ = ["Ensemble", "voice_chord", "naive_chord", "chord_movement", "place_near", "VOICE_NAMES", "MAX_DUR_S"]

ABOVE_COST = 1.0  # semitones of movement a comping note at or above the melody's costs
_BASS_RANK_COST = 0.3  # what each step up from the slice's lowest class costs the bass against agreement with now
_BASS_REPEAT_COST = 1.0  # what the bass's previous class costs (a line, not a pedal, where the slice allows)
_MIN_DUR_S = 0.1
MAX_DUR_S = 4.0  # the longest note a bass or comping voice plays (seconds)


def chord_movement(previous: Sequence[int], chord: Sequence[int]) -> float:
    """Voice-leading distance: every new note's distance to its nearest previous note, and every previous note's
    distance to its nearest new note (semitones; 0 with no previous chord)."""
    if not previous or not chord:
        return 0.0
    return float(
        sum(min(abs(n - p) for p in previous) for n in chord) + sum(min(abs(p - n) for n in chord) for p in previous)
    )


def _options(pc: int, low: int, high: int) -> list[int]:
    return [p for p in range(low, high + 1) if p % 12 == pc]


def naive_chord(pcs: Sequence[int], low: int, high: int) -> list[int]:
    """Each pitch class at its lowest place in the range (the baseline without voice leading)."""
    return sorted(opts[0] for opts in (_options(int(pc), low, high) for pc in pcs) if opts)


def voice_chord(
    pcs: Sequence[int], previous: Sequence[int], low: int, high: int, *, below: int | None = None
) -> list[int]:
    """Place ``pcs`` inside ``low..high``: the placement with the least :func:`chord_movement` from ``previous``
    (the first chord: the most compact one around the range's centre); each note at or above ``below`` (the
    melody) costs :data:`ABOVE_COST` semitones of movement, so the chord sits under the melody when that does
    not cost more movement. Sorted pitches."""
    choices = [opts for opts in (_options(int(pc), low, high) for pc in pcs) if opts]
    if not choices:
        return []
    centre = (low + high) / 2.0
    best: tuple[float, list[int]] | None = None
    for combo in itertools.product(*choices):
        span = max(combo) - min(combo)
        if previous:
            cost = chord_movement(previous, combo) + 0.01 * span
        else:
            cost = abs(sum(combo) / len(combo) - centre) + 0.3 * span
        if below is not None:
            cost += ABOVE_COST * sum(p >= below for p in combo)
        if best is None or cost < best[0]:
            best = (cost, list(combo))
    return sorted(best[1])


def place_near(pc: int, low: int, high: int, ref: float) -> int | None:
    """Pitch class ``pc`` at the place in ``low..high`` nearest ``ref`` (None: the range has no such pitch)."""
    opts = _options(int(pc) % 12, low, high)
    return min(opts, key=lambda p: (abs(p - ref), p)) if opts else None


class _Follower:
    """Credit and timing of one following voice."""

    def __init__(self) -> None:
        self.credit = 1.0  # the first melody step plays
        self.previous: list[int] = []  # last pitches played
        self.last_on = -math.inf


class Ensemble:
    """The melody player plus the voices following it (see the module docstring).

    Parameters
    ----------
    memory : object
        As for :class:`~services.oracle.player.walk.Player` (``walk``, ``tokens``, ``store``).
    config : GenerationConfig
        The melody's settings (the player's).
    voices : VoicesConfig
        Which voices play, their ranges, densities and phases.
    """

    def __init__(self, memory: Any, config: GenerationConfig, voices: VoicesConfig | None = None) -> None:
        voices = VoicesConfig() if voices is None else voices
        if not isinstance(voices, VoicesConfig):
            raise ParameterError("voices must be a shared.config.VoicesConfig")
        self.player = Player(memory, config)
        self.voices = voices
        self._bass = _Follower()
        self._comping = _Follower()
        self._gaps: deque[float] = deque(maxlen=8)  # the melody's recent step-to-step times
        self._last_step: float | None = None
        self.chords: list[dict[str, Any]] = []  # the last comping chords (state, transpose, pitches), for checks
        self.counters = {"bass": 0, "comping": 0, "chords": 0, "bass_rests": 0, "melody_muted": 0}

    # ------------------------------------------------------------------ settings
    @property
    def memory(self) -> Any:
        return self.player.memory

    # ------------------------------------------------------------------ the clock
    def tick(self, now: float, *, lookahead_s: float | None = None) -> tuple[list[NoteEvent], int]:
        """Every melody step due up to ``now + lookahead_s`` (default ``generation.lookahead_ms``) and what the
        voices play with it: ``(notes, steps)``.

        It is :meth:`Player.tick` with the voices as its ``on_step``: with only the melody on, the notes are the
        same."""
        return self.player.tick(now, lookahead_s=lookahead_s, on_step=self._on_step)

    def _on_step(self, at: float, note: NoteEvent | None) -> list[NoteEvent]:
        """One melody step at ``at``: the melody's note (unless muted) and what the followers play with it."""
        if self._last_step is not None and at > self._last_step:
            self._gaps.append(at - self._last_step)
        self._last_step = at
        notes: list[NoteEvent] = []
        if note is not None:
            if self.voices.melody:
                notes.append(note)
            else:
                self.counters["melody_muted"] += 1
        notes.extend(self._follow(at, note))
        return notes

    # ------------------------------------------------------------------ the followers
    def _new_id(self) -> int:
        return self.player.new_note_id()

    def _slice(self, state: int) -> tuple[list[tuple[int, int]], float, tuple[int, ...]]:
        """(transcribed notes as (pitch, velocity), f0, chroma peaks) of ``state``: the notes struck at the slice's
        onset (within :data:`~services.oracle.player.walk.MELODY_START_S`), every note of it when none is (the later
        ones in its window belong to the next onsets)."""
        store = self.memory.store
        if store is None or state <= 0 or state >= len(store):
            return [], 0.0, ()
        every = store.notes(state)
        struck = [n for n in every if n[1] <= MELODY_START_S] or every
        notes = [(int(n[0]), int(n[3])) for n in struck]
        return notes, float(store.f0_hz[state]), tuple(store.chroma_peaks(state))

    def _timing(self, at: float, follower: _Follower, density: float, phase: float) -> tuple[float, float] | None:
        """(t_on, t_off) when the follower plays at this melody step (credit reached 1), else None."""
        player = self.player
        interval = max(0.0, (player.next_step_s or at) - at)
        if interval <= 0.0:
            interval = 0.25
        if self._gaps:  # reactions and holds step sooner than the learned time: the note ends before the next one
            interval = min(interval, float(np.median(self._gaps)))
        t_on = at + phase * interval
        steps = max(1, math.ceil(1.0 / density - 1e-9))
        t_off = t_on + min(MAX_DUR_S, max(_MIN_DUR_S, 0.95 * steps * interval))
        return t_on, t_off

    def _follow(self, at: float, melody: NoteEvent | None) -> list[NoteEvent]:
        v = self.voices
        player = self.player
        if not (v.bass or v.comping) or player.last_kind not in ("forward", "jump"):
            return []
        state, transpose = player.state, player.transpose
        slice_notes, f0, chroma = self._slice(state)
        if not slice_notes and f0 <= 0.0 and not chroma:
            return []  # a silent slice: the followers rest with the melody
        velocity = int(
            np.clip(
                np.mean([vel for _, vel in slice_notes])
                if slice_notes
                else (80 if self.memory.store is None else self.memory.store.velocity[state]),
                1,
                127,
            )
        )
        melody_pitch = melody.pitch if melody is not None else player.last_pitch
        out: list[NoteEvent] = []
        bass_pc: int | None = None
        run_start = player.last_kind == "jump"
        if v.bass and v.bass_density > 0.0:
            f = self._bass
            f.credit += v.bass_density
            if f.credit >= 1.0 or run_start:
                f.credit = 0.0
                pc = self._bass_pc(slice_notes, f0, chroma, transpose)
                low, high = v.bass_range
                if melody_pitch is not None:
                    high = min(high, melody_pitch - 1)
                centre = (v.bass_range[0] + v.bass_range[1]) / 2.0
                # next to the previous note, pulled half-way to the range's centre: a line that does not drift
                # to the bottom (or top) of the range
                ref = (f.previous[0] + centre) / 2.0 if f.previous else centre
                pitch = place_near(pc, low, high, ref)
                if pitch is None:
                    self.counters["bass_rests"] += 1
                else:
                    t_on, t_off = self._timing(at, f, v.bass_density, v.bass_phase)
                    bass_pc = pc
                    f.previous = [pitch]
                    out.append(self._note(pitch, int(min(127, velocity * 0.9 + 8)), t_on, t_off, "bass", state))
                    self.counters["bass"] += 1
        if v.comping and v.comping_density > 0.0:
            f = self._comping
            f.credit += v.comping_density
            if f.credit >= 1.0:
                f.credit -= 1.0
                pcs = self._chord_pcs(slice_notes, chroma, transpose, bass_pc)
                low, high = v.comping_range
                chord = voice_chord(pcs, f.previous, low, high, below=melody_pitch)
                if len(chord) == 1 and chord == f.previous:
                    chord = []  # one note again: comping rests rather than drone
                if chord:
                    t_on, t_off = self._timing(at, f, v.comping_density, v.comping_phase)
                    f.previous = chord
                    cv = int(max(1, min(127, velocity * 0.75)))
                    for pitch in chord:
                        out.append(self._note(pitch, cv, t_on, t_off, "comping", state))
                    self.counters["comping"] += len(chord)
                    self.counters["chords"] += 1
                    self.chords.append({"state": state, "transpose": transpose, "pitches": chord, "t_on": t_on})
                    del self.chords[:-64]
        return out

    def _bass_pc(self, slice_notes: list[tuple[int, int]], f0: float, chroma: tuple[int, ...], transpose: int) -> int:
        """The bass's pitch class (transposed as the melody is): the slice's lowest note, weighed against what sounds
        now (the mode's ``w_now``: imitate takes the lowest class that sounds now, contrast the lowest that does
        not); the slice's f0, else its strongest chroma class, without notes."""
        if slice_notes:
            raw = [p % 12 for p, _ in sorted(slice_notes)]  # lowest first
        else:
            raw = ([int(round(hz_to_midi(f0))) % 12] if f0 > 0.0 else []) + [int(pc) for pc in chroma]
        ranked = list(dict.fromkeys((pc + transpose) % 12 for pc in raw))
        now = self.player.now_profile
        w_now = self.player.weights.w_now
        if not now.any() or w_now == 0.0:
            return ranked[0]
        previous = self._bass.previous[0] % 12 if self._bass.previous else None
        return max(
            ranked,
            key=lambda pc: (
                w_now * float(now[pc])
                - _BASS_RANK_COST * ranked.index(pc)
                - (_BASS_REPEAT_COST if pc == previous and len(ranked) > 1 else 0.0)
            ),
        )

    def _chord_pcs(
        self, slice_notes: list[tuple[int, int]], chroma: tuple[int, ...], transpose: int, bass_pc: int | None
    ) -> list[int]:
        """The chord's pitch classes (transposed as the melody is): the slice's, strongest first, weighed against
        what sounds now (the mode's ``w_now``); with ``now_filter`` only the classes on the side of
         the mode's ``now_present`` it prefers (none: the comping rests this turn)."""
        weight: dict[int, float] = {}
        if slice_notes:
            for pitch, vel in slice_notes:
                pc = (pitch + transpose) % 12
                weight[pc] = weight.get(pc, 0.0) + 1.0 + vel / 127.0
        else:
            for rank, pc in enumerate(chroma):
                weight[(pc + transpose) % 12] = 2.0 - 0.3 * rank
        profile = self.player.profile
        total = float(profile.sum())
        if total > 1e-9:  # the live input's recent harmony decides between the slice's classes
            for pc in weight:
                weight[pc] += profile[pc] / total
        now, w = self.player.now_profile, self.player.weights
        if now.any() and w.w_now != 0.0:
            for pc in weight:
                weight[pc] += w.w_now * float(now[pc])
            if w.now_filter:
                keep = (lambda x: x >= w.now_present) if w.w_now > 0 else (lambda x: x < w.now_present)
                weight = {pc: v for pc, v in weight.items() if keep(float(now[pc]))}
        order = sorted(weight, key=lambda pc: (-weight[pc], pc))
        limit = self.voices.max_polyphony
        if bass_pc is not None and len(order) > limit and bass_pc in order:
            order.remove(bass_pc)  # the bass has it
        return order[:limit]

    def _note(self, pitch: int, velocity: int, t_on: float, t_off: float, voice: str, state: int) -> NoteEvent:
        store = self.memory.store
        expression = NEUTRAL
        if store is not None:
            # the slice's expression (pressure, CC74 and, when the note plays the slice's f0 or one of its transcribed
            # notes in another octave, that note's bend): the pitch it came from is ``pitch`` untransposed, in the
            # octave of the slice's f0
            info = store.info(state)
            learned = float(pitch - self.player.transpose)
            if info.f0_hz > 0.0:
                f0_pitch = hz_to_midi(info.f0_hz)
                learned += 12.0 * round((f0_pitch - learned) / 12.0)
            expression = note_expression(
                info,
                learned_pitch=learned,
                duration_s=max(0.0, t_off - t_on),
                window_s=expression_window_s(self.memory),
            )
        return NoteEvent(
            note_id=self._new_id(),
            pitch=int(pitch),
            velocity=int(max(1, min(127, velocity))),
            t_on=t_on,
            t_off=t_off,
            voice=voice,
            source_state=state,
            source_event_id=int(state - 1) if store is None else int(store.event_id[state]),
            **expression.fields(),
        )
