"""The player: a clocked, influence-steered walk over the memory (our own take on IRCAM Somax2's idea).

Clock
-----
The player steps on its own clock, not on input events. A step at time ``t`` plays memory state ``c`` (a note
of the state's learned pitch, velocity and duration) and schedules the next step at ``t + ioi(c) / speed``:
``ioi(c)`` is the state's learned inter-onset interval (onset of ``c + 1`` minus onset of ``c`` in the same
source, clamped to ``[MIN_IOI_S, MAX_IOI_S]`` so that rests stay rests; the newest live state, whose next
onset has not arrived yet, uses its duration — the analysis window length); ``speed = density * tempo``.
Its duration is ``min(duration(c), ioi(c))`` scaled the same way (the memory's articulation and rests come
out as learned). :meth:`Player.tick` takes every step due up to ``now + lookahead_s`` (``generation.lookahead_ms``)
and returns its notes: a step on the own clock is decided ``lookahead_s`` before it sounds (one decided late
with less than half the look-ahead left sounds ``lookahead_s`` after its decision, never in the past), so its
notes reach midi_out ahead of time; a control change (mode, density, continuity, range) applies at the next step
decided. In ``imitate`` and ``contrast`` each live onset triggers a *reaction* step as soon
as its first view arrives; while the musician plays (an onset within twice the input's recent median gap,
0.3..1.5 s) and density <= 1, these modes step on the onsets only (event-triggered, as Somax's players can),
and in the musician's rests they keep going on their own clock; density > 1 runs the own clock as well, at
``density`` times the learned speed. ``lead`` keeps its own pulse throughout.
A reaction happens once per onset (its early view, or its full view when no early one came), never sooner
than ``REACT_GAP_S / speed`` after the previous step; below density 1 only that share of onsets is answered.
``wait_for_input`` (a generation setting) makes the reactive modes wait: no steps once the last live onset
is more than ``WAIT_S`` old. ``beat_aligned`` puts steps on the live input's tracked beat grid
(:class:`~services.oracle.player.tempo.TempoTracker`; beats, halves or quarters, whichever is nearest the learned
interval) once a tempo is known.

Influence
---------
Each live percept places activity *peaks* on memory states through layers, merged with weights into one
activity vector (all layers share the half-life ``generation.half_life_s``; peaks decay continuously and
move one state forward with every step the player takes):

==============  =============================================================================================
layer           peaks
==============  =============================================================================================
token context   for *every* suffix of the recent live tokens (lengths 1.. ``LIVE_CONTEXT``) found in the
                factor oracle, each occurrence ``q`` of it places ``w_context * L / LIVE_CONTEXT`` on ``q + 1``
                (its continuation): longer shared contexts weigh more, every match counts
chroma          every state whose pitch class (transposed by the current transposition) is in the live
                event's pitch-class profile (f0 class 1.0, chroma peaks 1.0, 0.7, 0.5, 0.35, ...) gets
                ``w_chroma * profile[pc]``
register        ``w_register * exp(-(pitch - live pitch)^2 / (2 * 5^2))`` on states with a pitch
==============  =============================================================================================

At each step the merged score of state ``s`` is ``coupling * activity[s]`` plus the *continuity* peak
(``w_continuity`` on the state after the one last played, granted with probability ``continuity`` and at most
``max_continuity`` times in a row), the *pivot* peak (``w_pivot`` on the continuations of states sharing
``min_context`` of context with the last one: the oracle's own jumps), the *repeat* penalty (``w_repeat`` on every
state sounding the last pitch class, except the successor of the state just played where the memory itself repeats
its pitch: a repeated pitch only where the memory has one; in the gated modes a repeated class also takes nothing
from the gate's side of now, which would otherwise outweigh the penalty and repeat a sounding class by jumps),
*harmony in the moment* (below) and a small seeded jitter (``w_jitter``, so ties break at random); the last
``taboo_length`` states are excluded. The ``CANDIDATES`` best are then scored for *transposition* ``t`` in
``-max_transpose..max_transpose``:
``w_transpose * corr(live pitch-class profile, the candidate's neighbourhood profile rolled by t) -
transpose_penalty * (t != current)``; a forward step keeps the current transposition (the contour of a run is never
broken by it). The transposition follows the key: each candidate takes its best-scoring ``t``, and what sounds now
then weighs it at that ``t``.

*Harmony in the moment.* Besides the slow profile (half-life 6 s: the key), the player keeps a *now* profile: the
pitch classes of the last onsets, halving every :data:`NOW_HALF_LIFE_S` (0.3 s). An onset's early view adds its
chroma and f0 classes at once; its full view adds the notes struck at its onset (its chroma without notes), weighed
down by the time since the onset, and only while no newer onset has been heard. Every state gets
``w_now * now[pc]`` for its (transposed) pitch class, and with ``now_filter`` a gate worth more than any difference
of the other scores for being on the mode's side of :data:`NOW_PRESENT` (imitate: a class that sounds now;
contrast: one that does not): the memory still chooses among those states, by its activity, continuity and pivots.
The bass and comping voices (:mod:`services.oracle.player.voices`) weigh the slice's classes the same way.

*Listening, not copying.* A pitch class that would complete, after the last three melody notes played, a 4-gram of
the memory's own melody (its melodic pitch classes, state after state: the input's top line when learning live)
costs ``w_copy`` times the score's scale. In imitate (2.5) and lead (1.5) that is more than the gate: a class that
would replay four notes of the memory's melody is held back even when it sounds now, and what sounds now comes first
among the rest (docs/architecture.md has the measurements). Forward runs go on while they do not replay four notes
of the memory verbatim (a transposed run is not a verbatim one).

Weights per mode (:data:`MODE_WEIGHTS`): ``contrast`` is the same machinery with a negative coupling (it goes where
the input is not), a negative ``w_now`` (it plays what does not sound now) and no transposition towards the input;
``lead`` couples weakly (0.2), weighs what sounds now lightly (no gate) and keeps its own pulse.

Pitch
-----
A state whose slice has transcribed notes (``features.slice_notes``) plays its *melodic voice*
(:func:`melody_pitch`: the highest note struck at the slice's onset, within :data:`MELODY_START_S`; else the
slice's highest note), never its strongest chroma class (``benchmarks/melody_line.py`` measures the rule against the
input's top line). Without notes: its strongest chroma class placed in the register of its learned f0 (the nearest
such pitch; f0 alone when it has no chroma, the chroma class next to the previous note when it has no f0); a state
with neither plays a rest. Pitches are never folded note by note: when a run starts (any step that is not
forward) the player picks the octave offset that puts the run's next ``max_continuity`` learned pitches inside
``melody_range`` (zero when they already are), and keeps it while the run goes forward, so intervals keep
their signs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from services.oracle.player.expression import NEUTRAL, expression_window_s, note_expression
from shared.config import GenerationConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from shared.pitch import hz_to_midi, hz_to_midi_array

__all__ = [
    "Player",
    "ModeWeights",
    "MODE_WEIGHTS",
    "MIN_IOI_S",
    "MAX_IOI_S",
    "LIVE_CONTEXT",
    "live_profile",
    "notes_profile",
    "melody_pitch",
    "held_pitches",
    "HOLD_TOLERANCE_S",
    "state_pitch_or_none",
    "NOW_HALF_LIFE_S",
    "MELODY_START_S",
    "NOW_PRESENT",
]

LIVE_CONTEXT = 8
CANDIDATES = 8
MIN_IOI_S = 0.08
REACT_GAP_S = 0.05
MAX_IOI_S = 2.0
WAIT_S = 2.0
#: a clocked step decided late keeps its time while it still leaves this share of the look-ahead (else it sounds
#: the whole look-ahead after its decision)
MIN_LEAD_SHARE = 0.5
_OCC_LIMIT = 32
_SCAN_LIMIT = 48
_NEIGHBOURHOOD = 8
_CHROMA_WEIGHTS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.2)
_REGISTER_SIGMA = 5.0
_PROFILE_HALF_LIFE_S = 6.0
#: the *now* profile (what sounds at the last onsets) halves this fast: by the next onset of a chorale beat the
#: previous chord weighs a half to a quarter
NOW_HALF_LIFE_S = 0.3
#: a slice's notes starting within this many seconds of its onset were struck at that onset (the transcription's
#: onsets land within a frame or two, 12 ms each, of the segmenter's); later ones belong to the next onsets
MELODY_START_S = 0.08
#: a pitch class at or above this share of the now profile's maximum sounds now (imitate; contrast: ModeWeights)
NOW_PRESENT = 0.5
#: a note of a slice ending no sooner than this before the next onset is held into the next slice, not struck there
HOLD_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class ModeWeights:
    """Weights of one mode (see the module docstring)."""

    coupling: float
    w_context: float = 1.0
    w_chroma: float = 1.0
    w_register: float = 0.3
    w_continuity: float = 0.8
    w_pivot: float = 0.3
    w_jitter: float = 0.25
    w_transpose: float = 0.6
    transpose_penalty: float = 0.25
    w_repeat: float = 0.75  # penalty (times the scale) on repeating the last pitch (not where the memory repeats it)
    w_now: float = 3.0  # weight of agreement with what sounds now (negative: what does not sound now)
    w_copy: float = 0.5  # penalty (times the scale) on completing a 4-gram of the memory's own melody
    now_filter: bool = True  # followers keep only the slice's classes on the side of now_present that w_now prefers
    now_present: float = NOW_PRESENT  # a class at or above this share of the now profile's maximum sounds now
    reactive: bool = True  # a live onset pulls the next step forward


MODE_WEIGHTS: dict[str, ModeWeights] = {
    "imitate": ModeWeights(coupling=1.0, w_copy=2.5),
    "contrast": ModeWeights(coupling=-1.0, w_transpose=0.0, w_now=-3.0, now_present=0.1),
    "lead": ModeWeights(coupling=0.2, w_transpose=0.2, w_now=0.5, now_filter=False, reactive=False, w_copy=1.5),
}


def state_pitch_or_none(f0_hz: float, chroma_peaks: tuple[int, ...], *, near: float | None = None) -> int | None:
    """A state's learned pitch: f0, else its strongest chroma class next to ``near`` (octave 4), else None."""
    if f0_hz > 0.0:
        return int(round(hz_to_midi(f0_hz)))
    if chroma_peaks:
        pc = int(chroma_peaks[0])
        centre = 60.0 if near is None else float(near)
        base = int(round((centre - pc) / 12.0)) * 12 + pc
        return int(min(127, max(0, base)))
    return None


def held_pitches(previous: Any, gap_s: float, *, tolerance_s: float = HOLD_TOLERANCE_S) -> frozenset[int]:
    """Pitches of the previous slice's notes that still sound at the next onset ``gap_s`` later (started before it,
    ending no sooner than ``tolerance_s`` before it): in the next slice they are held, not struck (its window starts
    at the onset, so the transcription sees them begin there too)."""
    return frozenset(
        int(n[0]) for n in previous if float(n[1]) < gap_s and float(n[1]) + float(n[2]) >= gap_s - tolerance_s
    )


def melody_pitch(notes: Any, *, held: Any = frozenset(), start_s: float = MELODY_START_S) -> int | None:
    """The melodic voice of a slice's transcribed notes: the highest note newly struck at the slice's onset (starting
    within ``start_s``, not ``held`` from the previous slice: :func:`held_pitches`), else the highest note starting
    at the onset, else the highest note of the slice; None without notes.

    >>> melody_pitch([(48, 0.0, 0.5, 80), (67, 0.01, 0.5, 80), (72, 0.3, 0.2, 80)])
    67
    >>> melody_pitch([(48, 0.0, 0.5, 80), (67, 0.01, 0.5, 80), (72, 0.0, 0.5, 80)], held={72})
    67
    """
    best: tuple[bool, bool, int] | None = None
    for note in notes:
        at_onset = float(note[1]) <= start_s
        key = (at_onset and int(note[0]) not in held, at_onset, int(note[0]))
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


def notes_profile(notes: Any, *, start_s: float = MELODY_START_S) -> np.ndarray:
    """The 12-bin pitch-class profile of the notes struck at a slice's onset (1.0 each; every note of the slice when
    none starts within ``start_s``)."""
    profile = np.zeros(12)
    struck = [n for n in notes if float(n[1]) <= start_s] or list(notes)
    for note in struck:
        profile[int(note[0]) % 12] = 1.0
    return profile


def live_profile(f0_hz: float, chroma_peaks: tuple[int, ...]) -> np.ndarray:
    """The 12-bin pitch-class profile of one live event (f0 class 1.0, chroma peaks by rank)."""
    profile = np.zeros(12)
    for rank, pc in enumerate(chroma_peaks[: len(_CHROMA_WEIGHTS)]):
        profile[int(pc)] = max(profile[int(pc)], _CHROMA_WEIGHTS[rank])
    if f0_hz > 0.0:
        profile[int(round(hz_to_midi(f0_hz))) % 12] = 1.0
    return profile


def _roll_index(shifts: np.ndarray, size: int = 12) -> np.ndarray:
    """``x[_roll_index(shifts)][j] == np.roll(x, shifts[j])``: row j holds ``(i - t_j) % size``."""
    return (np.arange(size)[None, :] - shifts[:, None]) % size


def _corr_centred_rolls(a: np.ndarray, aa: float, x: np.ndarray, roll_index: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` (already centred, ``aa = a @ a``: the live profile, once per choice) with
    ``np.roll(x, t)`` for each shift of ``roll_index`` (:func:`_roll_index`), all at once (one row per shift)."""
    rolls = x[roll_index]
    b = rolls - rolls.mean(axis=1, keepdims=True)
    den = np.sqrt(aa * np.einsum("ij,ij->i", b, b))
    num = b @ a
    return np.where(den <= 1e-12, 0.0, num / np.where(den <= 1e-12, 1.0, den))


def _melody_column(store: Any, begin: int, end: int) -> np.ndarray:
    """:func:`melody_pitch` of states ``begin..end-1`` from the store's note columns at once (-1: no notes), the notes
    held from each previous state of the same source (:func:`held_pitches`) not counted as struck."""
    out = np.full(end - begin, -1, dtype=np.int64)
    first = max(1, begin - 1)  # the state before: its notes may be held into the first new one
    offsets = np.frombuffer(store.note_offsets, dtype=np.int64)[first : end + 1]
    if offsets.size < 2 or offsets[-1] <= offsets[0]:
        return out
    lo, hi = int(offsets[0]), int(offsets[-1])
    pitch = np.frombuffer(store.note_pitch, dtype=np.int64)[lo:hi]
    onset = np.frombuffer(store.note_onset_s, dtype=np.float64)[lo:hi]
    end_s = onset + np.frombuffer(store.note_duration_s, dtype=np.float64)[lo:hi]
    state = np.repeat(np.arange(first, end), np.diff(offsets))  # each note's state
    starts = np.frombuffer(store.onset_s, dtype=np.float64)
    sources = np.frombuffer(store.source_index, dtype=np.int64)
    nxt = state + 1
    inside = nxt < end
    gap = np.full(state.size, -np.inf)
    gap[inside] = np.where(
        sources[nxt[inside]] == sources[state[inside]], starts[nxt[inside]] - starts[state[inside]], -np.inf
    )
    held_into = inside & (onset < gap) & (end_s >= gap - HOLD_TOLERANCE_S)
    held = np.isin(state * 128 + pitch, nxt[held_into] * 128 + pitch[held_into])
    at_onset = onset <= MELODY_START_S
    key = pitch + 1000 * at_onset + 2000 * (at_onset & ~held)  # newly struck, then at the onset, then the highest
    mine = offsets[begin - first :]  # the new states' note offsets
    local = mine - lo
    has = np.diff(mine) > 0
    if has.any():
        out[has] = np.maximum.reduceat(key, local[:-1][has]) % 1000
    return out


def gram_key(pcs: Any) -> Any:
    """Index of 4-grams of pitch classes (``(..., 4)`` ints in 0..11) in a ``12**4`` table."""
    pcs = np.asarray(pcs, dtype=np.int64)
    return ((pcs[..., 0] * 12 + pcs[..., 1]) * 12 + pcs[..., 2]) * 12 + pcs[..., 3]


class _Columns:
    """Per-state pitch / pitch class as numpy columns, extended as the memory grows."""

    def __init__(self) -> None:
        self.pitch = np.full(1, np.nan)  # learned MIDI pitch (NaN: none)
        self.pc = np.full(1, -1, dtype=np.int64)  # pitch class (-1: none)
        self.grams = np.zeros(12**4, dtype=bool)  # the memory's melodic 4-grams of pitch classes (gram_key)
        self.n = 1

    def sync(self, store: Any, n: int) -> None:
        if store is None or n <= self.n:
            return
        f0 = np.frombuffer(store.f0_hz, dtype=np.float64)[self.n : n]
        chroma = np.frombuffer(store.chroma, dtype=np.int8).reshape(-1, 12)[self.n : n, 0].astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pitch = np.where(f0 > 0, np.round(hz_to_midi_array(np.where(f0 > 0, f0, 1.0))), np.nan)
        # the slice's strongest pitch class, in the register of its f0 (on polyphonic input f0 follows one voice,
        # often the bass; the chroma peak is what sounds most: docs/architecture.md, "The echo gate")
        use = (f0 > 0) & (chroma >= 0)
        base = np.nan_to_num(pitch, nan=60.0)
        placed = base + ((chroma - base.astype(np.int64) + 6) % 12 - 6)
        pitch = np.where(use, placed, pitch)
        pc = np.where(chroma >= 0, chroma, np.where(f0 > 0, np.nan_to_num(pitch, nan=0).astype(np.int64) % 12, -1))
        # a slice with transcribed notes plays its melodic voice (melody_pitch), never its strongest chroma class
        top = _melody_column(store, self.n, n)
        known = top >= 0
        pitch = np.where(known, top.astype(np.float64), pitch)
        pc = np.where(known, top % 12, pc)
        self.pitch = np.concatenate([self.pitch, pitch])
        self.pc = np.concatenate([self.pc, pc])
        # every run of four consecutive states with pitch classes (the three before these included)
        tail = self.pc[max(1, self.n - 3) :]
        if tail.size >= 4:
            windows = np.lib.stride_tricks.sliding_window_view(tail, 4)
            windows = windows[(windows >= 0).all(axis=1)]
            self.grams[gram_key(windows)] = True
        self.n = n


class Player:
    """Clocked influence walk over a memory (see the module docstring).

    Parameters
    ----------
    memory : object
        Gives ``walk`` (the oracle to walk: ``n_states``, ``sfx``, ``lrs``, ``rsfx``), ``tokens`` (a
        FactorOracle for context matching, state ``i`` = event ``i``) and ``store`` (the StateStore with the
        events' descriptors, or None). :class:`~services.oracle.memory.store.OracleMemory` provides them.
    config : GenerationConfig
    """

    def __init__(self, memory: Any, config: GenerationConfig) -> None:
        if not isinstance(config, GenerationConfig):
            raise ParameterError("config must be a shared.config.GenerationConfig")
        self.memory = memory
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.state = 0
        self.transpose = 0
        self.octave = 0
        self._run = 0
        self._taboo: deque[int] = deque(maxlen=config.taboo_length)
        self._live_tokens: deque[int] = deque(maxlen=LIVE_CONTEXT)
        self._activity = np.zeros(1)
        self._activity_t = 0.0
        self._profile = np.zeros(12)  # decayed live pitch-class profile
        self._now = np.zeros(12)  # what sounds at the last onsets (half-life NOW_HALF_LIFE_S)
        self._columns = _Columns()
        self._last_pitch: int | None = None
        self._played: deque[int] = deque(maxlen=3)  # the last three melody pitch classes played
        self._next_note_id = 1
        self.next_step_s: float | None = None  # None: starts at the first tick
        self.last_step_s = -math.inf
        self.last_onset_s = -math.inf  # time of the last live influence
        self.influence_id = -1  # event id of the last live influence
        self.influence_onset = 0.0  # its onset (wall clock)
        self.influence_detected = 0.0  # when it was detected
        self.influence_used_by: int | None = None
        self._reacted_id = -2
        self.react_s: float | None = None  # a pending reaction step
        self.last_input_s = -math.inf  # when the last input onset was first heard
        self._input_gaps: deque[float] = deque(maxlen=16)
        self.beat: Any = None  # a TempoTracker (the live input's beat) for beat-aligned steps
        self.last_kind = "start"
        self.last_mode = config.mode
        self.counters = {
            "steps": 0,
            "forward": 0,
            "jump": 0,
            "rests": 0,
            "notes": 0,
            "influences": 0,
            "transpositions": 0,
            "reactions": 0,
            "reactions_skipped": 0,
        }

    # ------------------------------------------------------------------ settings
    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def weights(self) -> ModeWeights:
        return MODE_WEIGHTS[self.config.mode]

    @property
    def last_pitch(self) -> int | None:
        """The pitch of the last note played (None before the first)."""
        return self._last_pitch

    @property
    def profile(self) -> np.ndarray:
        """The decayed pitch-class profile of the live input (12 bins; read only)."""
        view = self._profile.view()
        view.flags.writeable = False
        return view

    @property
    def now_profile(self) -> np.ndarray:
        """What sounds now: the pitch-class profile of the last onsets (half-life :data:`NOW_HALF_LIFE_S`, decayed to
        the last step or percept), scaled to a maximum of 1 while that maximum is at least 1 (an onset's weight), so
        that it fades out in the musician's rests: nothing sounds now a second after the last onset. A copy."""
        peak = float(self._now.max())
        return self._now / max(peak, 1.0) if peak > 1e-3 else np.zeros(12)

    def new_note_id(self) -> int:
        """The next note id (one counter for every voice: ids are unique across them)."""
        note_id = self._next_note_id
        self._next_note_id += 1
        return note_id

    def set_config(self, config: GenerationConfig) -> None:
        """New settings (mode, density, continuity, ranges...): they apply at the next step."""
        if not isinstance(config, GenerationConfig):
            raise ParameterError("config must be a shared.config.GenerationConfig")
        if config.taboo_length != self._taboo.maxlen:
            self._taboo = deque(self._taboo, maxlen=config.taboo_length)
        self.config = config

    # ------------------------------------------------------------------ memory views
    def _n(self) -> int:
        walk = self.memory.walk
        return 0 if walk is None else int(walk.n_states)

    def _sync(self, n: int) -> None:
        self._columns.sync(self.memory.store, n)
        if self._activity.size < n:
            grown = np.zeros(max(n, 2 * self._activity.size))
            grown[: self._activity.size] = self._activity
            self._activity = grown

    def _decay(self, now: float) -> None:
        dt = now - self._activity_t
        if dt > 0:
            self._activity *= 0.5 ** (dt / self.config.half_life_s)
            self._profile *= 0.5 ** (dt / _PROFILE_HALF_LIFE_S)
            self._now *= 0.5 ** (dt / NOW_HALF_LIFE_S)
        self._activity_t = max(self._activity_t, now)

    def activity(self, now: float) -> np.ndarray:
        """The merged activity over states ``0..n-1`` at ``now`` (a copy)."""
        n = self._n()
        self._sync(n)
        self._decay(now)
        return self._activity[:n].copy()

    def activity_view(self) -> np.ndarray:
        """The merged activity over the states as the walk last updated it: a read-only view (no copy; not decayed
        to now, which would scale every state alike). Reading it (a console) changes nothing the walk will decide."""
        view = self._activity[: min(self._n(), self._activity.size)].view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ listening
    def listen(
        self,
        *,
        now: float,
        token: int | None,
        f0_hz: float,
        chroma_peaks: tuple[int, ...],
        event_id: int = -1,
        onset_t: float | None = None,
        detected: float | None = None,
        notes: Any = (),
    ) -> None:
        """One live percept's influence (``token=None``: an early view, pitch and chroma only; ``notes``: the slice's
        transcribed notes, when known).

        What sounds now (:attr:`now_profile`) takes the percept's pitch classes at once — an early view's chroma and
        f0, a full view's struck notes (else its chroma) — weighed down by the time since its onset; a full view
        whose onset is no longer the latest one heard adds nothing there (a newer onset sounds now)."""
        n = self._n()
        self._sync(n)
        self._decay(now)
        w = self.weights
        profile = live_profile(f0_hz, tuple(chroma_peaks))
        self._profile += profile
        if event_id < 0 or event_id >= self._reacted_id:
            age = 0.0 if onset_t is None else max(0.0, float(now) - float(onset_t))
            heard = notes_profile(notes) if len(notes) else profile
            self._now += heard * 0.5 ** (age / NOW_HALF_LIFE_S)
        act = self._activity
        if token is not None:
            self._live_tokens.append(int(token))
            fo = self.memory.tokens
            if fo is not None and fo.n_states > 1:
                live = list(self._live_tokens)
                for length in range(1, len(live) + 1):
                    end = fo.find_context(live[-length:])
                    if end < 0:
                        break
                    gain = w.w_context * length / LIVE_CONTEXT
                    for q in fo.occurrences(end, length, limit=_OCC_LIMIT):
                        if 0 < q + 1 < n:
                            act[q + 1] += gain
        cols = self._columns
        if n > 1 and profile.any():
            pcs = cols.pc[1:n]
            ok = pcs >= 0
            shifted = np.where(ok, (pcs + self.transpose) % 12, 0)
            act[1:n] += np.where(ok, w.w_chroma * profile[shifted], 0.0)
        if n > 1 and f0_hz > 0.0:
            live_pitch = hz_to_midi(f0_hz)
            pitch = cols.pitch[1:n] + self.transpose
            act[1:n] += np.where(
                np.isnan(pitch),
                0.0,
                w.w_register * np.exp(-np.square(np.nan_to_num(pitch) - live_pitch) / (2 * _REGISTER_SIGMA**2)),
            )
        self.counters["influences"] += 1
        self.last_onset_s = now
        speed = self.config.density * self.config.tempo
        first_view = event_id < 0 or event_id > self._reacted_id  # event ids grow with the onsets
        self._reacted_id = max(self._reacted_id, int(event_id))
        if first_view:  # latency accounting: the first note chosen with this onset's influence
            self.influence_id = int(event_id)
            self.influence_onset = float(onset_t if onset_t is not None else now)
            self.influence_detected = float(detected if detected is not None else now)
            self.influence_used_by = None
        if first_view:
            if self.last_input_s > -math.inf and now > self.last_input_s:
                self._input_gaps.append(now - self.last_input_s)
            self.last_input_s = now
        if w.reactive and first_view and speed > 0:
            if speed < 1.0 and self.rng.random() >= speed:
                self.counters["reactions_skipped"] += 1  # density thins the reactions
            else:
                self.react_s = max(now, self.last_step_s + REACT_GAP_S / speed)
                self.counters["reactions"] += 1

    def active_window_s(self) -> float:
        """How long after an input onset the input counts as playing: twice its recent median gap (0.3..1.5 s)."""
        if not self._input_gaps:
            return 1.0
        return float(min(1.5, max(0.3, 2.0 * float(np.median(self._input_gaps)))))

    def holding(self, now: float) -> bool:
        """Reactive modes at density <= 1 step on the input's onsets while it plays (own clock in its rests)."""
        return (
            self.weights.reactive
            and self.config.density * self.config.tempo <= 1.0
            and now - self.last_input_s < self.active_window_s()
        )

    # ------------------------------------------------------------------ walking
    def _pivots(self, state: int, n: int) -> list[int]:
        walk = self.memory.walk
        m = self.config.min_context
        if state <= 0:
            return []
        sfx, lrs = walk.sfx, walk.lrs
        parent = int(sfx[state])
        out: list[int] = []
        if int(lrs[state]) >= m and (parent > 0 or m == 0):
            out.append(parent)
        for child in walk.rsfx(state)[:_SCAN_LIMIT]:
            if lrs[child] >= m:
                out.append(int(child))
        if parent >= 0:
            for sibling in walk.rsfx(parent)[:_SCAN_LIMIT]:
                if sibling != state and min(int(lrs[state]), int(lrs[sibling])) >= m:
                    out.append(int(sibling))
        return [c for c in dict.fromkeys(out) if 0 < c + 1 < n and c != state]

    def _neighbourhood(self, state: int, n: int) -> np.ndarray:
        pcs = self._columns.pc[max(1, state - _NEIGHBOURHOOD) : min(n, state + _NEIGHBOURHOOD + 1)]
        pcs = pcs[pcs >= 0]
        return np.bincount(pcs, minlength=12).astype(np.float64)

    def choose(self, now: float) -> tuple[int, int, str]:
        """Pick the next state and transposition (does not move): ``(state, transpose, kind)``."""
        n = self._n()
        cfg, w = self.config, self.weights
        s = self.state
        score = w.coupling * self._activity[:n].copy()
        score[0] = -np.inf
        forward = 0 < s + 1 < n and self._run < cfg.max_continuity
        if forward and self.rng.random() < cfg.continuity:
            score[s + 1] += w.w_continuity
        for c in self._pivots(s, n):
            score[c + 1] += w.w_pivot
        cols = self._columns
        pcs = cols.pc[:n]
        # the terms below are per sounding pitch class (a table), on the scale of the memory's own scores so far:
        # harmony in the moment: agreement of each state's pitch class (as transposed) with what sounds now, weighed
        # by w_now; with now_filter the side of now_present the mode prefers (imitate: sounding, contrast: not) is
        # also worth more than any difference of activity (a gate that still lets the memory choose within it);
        # a repeated pitch only where the memory repeats it: the last pitch class costs w_repeat times the scale
        # (not the successor of the state just played where the memory itself repeats); listening, not copying: a
        # class that would complete a 4-gram of the memory's own melody (the input's top line when learning live)
        # after the last three notes played costs w_copy times the scale
        now_profile = self.now_profile
        use_now = w.w_now != 0.0 and bool(now_profile.any())
        scale = 1.0 + float(np.abs(score[1:n][np.isfinite(score[1:n])]).max(initial=0.0))
        table = np.zeros(12)
        if use_now:
            prefer = (now_profile >= w.now_present) if w.w_now > 0 else (now_profile < w.now_present)
            table += w.w_now * now_profile + (scale if w.now_filter else 0.0) * prefer
        if self._last_pitch is not None and w.w_repeat > 0.0:
            last = self._last_pitch % 12
            before = table[last]
            if use_now and w.now_filter:  # a repeated class takes nothing from the gate's side of now
                table[last] = min(table[last], 0.0)
            table[last] -= w.w_repeat * scale
            if 0 < s < n - 1 and cols.pitch[s + 1] == cols.pitch[s] and pcs[s + 1] >= 0:
                score[s + 1] += before - table[last]  # the memory's own repeat keeps what its class is worth
        if w.w_copy > 0.0 and len(self._played) == 3:
            base = int(gram_key(list(self._played) + [0]))
            table -= w.w_copy * scale * cols.grams[base : base + 12]
        use_table = bool(table.any())

        def harmony(state: int, t: int) -> float:
            pc = int(pcs[state])
            return float(table[(pc + t) % 12]) if use_table and pc >= 0 else 0.0

        if use_table and n > 1:
            score[1:n] += np.where(pcs[1:n] >= 0, table[(pcs[1:n] + self.transpose) % 12], 0.0)
        score[1:n] += w.w_jitter * self.rng.random(n - 1)
        for t in self._taboo:
            if 0 < t < n:
                score[t] = -np.inf
        if s > 0 and s < n and n > 2:
            score[s] = -np.inf  # never the same state twice in a row
        if not np.isfinite(score).any():
            score = np.zeros(n)
            score[0] = -np.inf
        k = min(CANDIDATES, n - 1)
        top = np.argpartition(-score, k - 1)[:k] if k < n else np.arange(n)
        top = [int(c) for c in top if np.isfinite(score[c])]
        best = (-math.inf, top[0] if top else 1, self.transpose)
        profile = self._profile
        use_t = w.w_transpose != 0.0 and profile.sum() > 1e-6 and cfg.max_transpose > 0
        centred = profile - profile.mean()
        centred_sq = float(centred @ centred)
        shifts = np.arange(-cfg.max_transpose, cfg.max_transpose + 1)
        penalty = np.where(shifts != self.transpose, w.transpose_penalty, 0.0)
        roll_index = _roll_index(shifts)  # once per choice, for every candidate
        for c in top:
            t, bonus = self.transpose, 0.0
            if use_t and c != s + 1:
                local = self._neighbourhood(c, n)
                if local.sum() > 0:
                    bonuses = w.w_transpose * _corr_centred_rolls(centred, centred_sq, local, roll_index) - penalty
                    best_t = int(np.argmax(bonuses))  # the first of equals, as the lowest shift
                    t, bonus = int(shifts[best_t]), float(bonuses[best_t])
            # the transposition follows the key (the slow profile); what sounds now then weighs the candidate at it
            # (the score holds its harmony at the current transposition)
            total = (
                float(score[c]) + bonus + (harmony(c, t) - harmony(c, self.transpose) if t != self.transpose else 0.0)
            )
            if total > best[0]:
                best = (total, c, t)
        _, c, t = best
        kind = "forward" if c == s + 1 else "jump"
        return c, t, kind

    def _ioi(self, state: int, n: int) -> tuple[float, float]:
        """(ioi, duration) of ``state`` in seconds, as learned (see the module docstring)."""
        store = self.memory.store
        if store is None:
            return 0.25, 0.225
        dur = float(store.duration_s[state])
        if state + 1 < n and store.source_index[state + 1] == store.source_index[state]:
            gap = float(store.onset_s[state + 1]) - float(store.onset_s[state])
            ioi = gap if gap > 0 else dur
        else:
            ioi = dur
        ioi = min(max(ioi, MIN_IOI_S), MAX_IOI_S)
        return ioi, max(min(dur, ioi), MIN_IOI_S / 2)

    def _octave_for_run(self, state: int, transpose: int, n: int) -> int:
        low, high = self.config.melody_range
        pitches = self._columns.pitch[state : min(n, state + self.config.max_continuity + 1)] + transpose
        pitches = pitches[~np.isnan(pitches)]
        if pitches.size == 0:
            return 0
        lo, hi = float(pitches.min()), float(pitches.max())
        ref = float(self._last_pitch) if self._last_pitch is not None else (low + high) / 2.0
        first = float(pitches[0])
        best = None
        for k in range(-10, 11):
            off = 12 * k
            outside = max(0.0, low - (lo + off)) + max(0.0, (hi + off) - high)
            key = (outside, abs(k) if outside == 0 and lo >= low and hi <= high else abs(first + off - ref), abs(k))
            if best is None or key < best[0]:
                best = (key, off)
        return best[1]

    def _pitch(self, state: int, transpose: int, n: int, kind: str) -> int | None:
        cols = self._columns
        raw = cols.pitch[state]
        if np.isnan(raw):
            store = self.memory.store
            chroma = () if store is None else store.chroma_peaks(state)
            p = state_pitch_or_none(0.0, chroma, near=self._last_pitch)
            if p is None:
                return None
            low, high = self.config.melody_range
            while p < low:
                p += 12
            while p > high and p - 12 >= 0:
                p -= 12
            return int(min(127, max(0, p + transpose)))
        if kind != "forward" or self._last_pitch is None:
            self.octave = self._octave_for_run(state, transpose, n)
        p = int(raw) + transpose + self.octave
        low, high = self.config.melody_range
        if p < low or p > high:  # the run leaves the range: move it by octaves from here on
            self.octave = self._octave_for_run(state, transpose, n)
            p = int(raw) + transpose + self.octave
        if high - low >= 12:  # a run wider than the range (a melody spanning octaves): its outliers fold in
            while p > high:
                p -= 12
            while p < low:
                p += 12
        return int(min(127, max(0, p)))

    def step(self, at: float) -> NoteEvent | None:
        """Take one step at time ``at`` (no clock check): move, schedule the next step, return the note (or None)."""
        n = self._n()
        self._sync(n)
        self._decay(at)
        cfg = self.config
        speed = cfg.density * cfg.tempo
        self.last_step_s = at
        if n < 2 or speed <= 0.0:
            self.next_step_s = at + 0.25
            return None
        c, t, kind = self.choose(at)
        if t != self.transpose:
            self.counters["transpositions"] += 1
        self.transpose = t
        self._run = self._run + 1 if kind == "forward" else 0
        self.counters[kind] += 1
        self.counters["steps"] += 1
        self.last_kind = kind
        self.last_mode = cfg.mode
        self.state = c
        if self._taboo.maxlen:
            self._taboo.append(c)
        # the activity moves forward with playback. With a negative coupling (contrast) the first state keeps its own:
        # nothing precedes it, and a zero moved in from the root would make it the least active state at every step,
        # where contrast would always go
        act = self._activity
        first = 2 if self.weights.coupling < 0 else 1
        act[first:n] = act[first - 1 : n - 1].copy()
        act[0] = 0.0
        ioi, dur = self._ioi(c, n)
        self.next_step_s = at + ioi / speed
        if cfg.beat_aligned and self.beat is not None:
            # on the tracked grid: the grid point (beats, halves or quarters, whichever is closest to the learned
            # interval) nearest to the learned next onset, never sooner than half the interval
            period = self.beat.period_s
            if period:
                sub = min((1, 2, 4), key=lambda d: abs(math.log((period / d) / (ioi / speed))))
                grid = self.beat.next_beat(at + 0.5 * ioi / speed, subdivision=sub)
                if grid is not None:
                    self.next_step_s = grid
        pitch = self._pitch(c, t, n, kind)
        if pitch is None:
            self.counters["rests"] += 1
            return None
        self._last_pitch = pitch
        self._played.append(pitch % 12)
        store = self.memory.store
        velocity = 80 if store is None else int(min(127, max(1, store.velocity[c])))
        note_id = self.new_note_id()
        self.counters["notes"] += 1
        stamps = {}
        if self.influence_id >= 0 and self.influence_used_by is None:
            self.influence_used_by = note_id
            # the first note whose choice used this onset's influence (latency accounting in midi_out)
            stamps = {
                "input_event_id": float(self.influence_id),
                "onset_t": self.influence_onset,
                "t_detected": self.influence_detected,
                "first_of_response": True,
            }
        # the state's expression (services.oracle.player.expression): bend from its f0 curve, pressure, CC74
        expression = (
            NEUTRAL
            if store is None
            else note_expression(
                store.info(c),
                learned_pitch=self._columns.pitch[c],
                duration_s=dur / speed,
                speed=speed,
                window_s=expression_window_s(self.memory),
            )
        )
        return NoteEvent(
            note_id=note_id,
            pitch=pitch,
            velocity=velocity,
            t_on=at,
            t_off=at + dur / speed,
            voice="melody",
            source_state=c,
            source_event_id=int(c - 1) if store is None else int(store.event_id[c]),
            stamps=stamps,
            **expression.fields(),
        )

    @property
    def lookahead_s(self) -> float:
        """How long before it sounds a step on the own clock is decided (``generation.lookahead_ms``)."""
        return self.config.lookahead_ms / 1000.0

    def _reaction_due(self, now: float, lookahead_s: float) -> bool:
        return self.react_s is not None and self.react_s <= now + lookahead_s

    def due(self, now: float, lookahead_s: float | None = None) -> bool:
        lookahead_s = self.lookahead_s if lookahead_s is None else lookahead_s
        if self.next_step_s is None or self._reaction_due(now, lookahead_s):
            return True
        if self.config.wait_for_input and self.weights.reactive and now - self.last_onset_s > WAIT_S:
            return False
        if self.holding(now):
            return False
        return self.next_step_s <= now + lookahead_s

    def tick(
        self,
        now: float,
        *,
        lookahead_s: float | None = None,
        on_step: Callable[[float, NoteEvent | None], list[NoteEvent]] | None = None,
    ) -> tuple[list[NoteEvent], int]:
        """Every step due up to ``now + lookahead_s`` (default ``generation.lookahead_ms``): ``(notes, steps
        taken)``. ``on_step(at, note)``, when given, returns the notes a step plays (its own note or none, and what
        other voices play with it).

        A step on the own clock is decided ``lookahead_s`` before it sounds when the caller ticks on time
        (:meth:`seconds_to_next`); one decided late keeps its time while that leaves at least ``MIN_LEAD_SHARE``
        of the look-ahead, else (a stall, the end of a hold) it sounds ``lookahead_s`` after its decision: a clocked
        step never leaves less than half the look-ahead ahead of its time. A reaction step is
        due at once (``max(react_s, now)``); its notes are stamped ``reaction`` (midi_out counts them apart)."""
        lookahead_s = self.lookahead_s if lookahead_s is None else lookahead_s
        notes: list[NoteEvent] = []
        steps = 0
        if self.next_step_s is None:
            self.next_step_s = now + lookahead_s
        while self.due(now, lookahead_s) and steps < 64:
            reaction = self._reaction_due(now, lookahead_s)
            if reaction:
                at = max(self.react_s, now)
                self.react_s = None
            else:
                at = self.next_step_s  # on time: exactly lookahead_s ahead
                if at < now + MIN_LEAD_SHARE * lookahead_s:  # decided late (a stall, a hold's end): pushed back
                    at = now + lookahead_s
            note = self.step(at)
            steps += 1
            played = on_step(at, note) if on_step is not None else ([] if note is None else [note])
            if reaction:
                played = [replace(n, stamps={**n.stamps, "reaction": 1.0}) for n in played]
            notes.extend(played)
        return notes, steps

    def seconds_to_next(self, now: float, lookahead_s: float | None = None) -> float:
        lookahead_s = self.lookahead_s if lookahead_s is None else lookahead_s
        if self.next_step_s is None:
            return 0.0
        wait = math.inf
        if self.react_s is not None:
            wait = self.react_s - lookahead_s - now
        if self.config.wait_for_input and self.weights.reactive and now - self.last_onset_s > WAIT_S:
            return max(0.0, wait)
        if self.holding(now):
            wait = min(wait, self.last_input_s + self.active_window_s() - now)
        else:
            wait = min(wait, self.next_step_s - lookahead_s - now)
        return max(0.0, wait)
