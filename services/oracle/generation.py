"""The phrase improviser: a seeded walk over an oracle that turns states back into phrases of notes.

Used by :meth:`OracleStage.process` / :meth:`OracleStage.respond` (offline analysis and the pure stage tests).
The live stack plays through :class:`services.oracle.player.Player` (own clock, influence, learned time),
driven by :class:`services.oracle.live.LiveOracle`.

Each :meth:`Improviser.step` moves from the current state ``s``:

- **forward** to ``s + 1`` with probability ``continuity`` (unless ``max_continuity`` forward steps in a
  row were taken, ``s + 1`` does not exist or is taboo);
- otherwise a **jump**: pick a *pivot* ``c`` that shares at least ``min_context`` of context with ``s``
  (its suffix link ``sfx[s]`` shares ``lrs[s]``; a reverse-suffix child ``j`` shares ``lrs[j]``; a sibling
  ``t`` under ``sfx[s]`` shares ``min(lrs[s], lrs[t])``) and play ``c + 1``, the continuation of that shared
  context; the last ``min_context`` states played therefore match the context preceding the new state;
- a **restart** at a random non-taboo state when no forward step and no pivot is possible.

The last ``taboo_length`` played states are never played again. Modes: ``imitate`` re-anchors on new live
input at the continuation of the longest suffix of recent live tokens found in the oracle; ``contrast``
re-anchors at (and jumps to) the candidate whose features are farthest from the live input's, and leaves a
forward step that would land closer than the median distance; ``lead`` ignores the live input.
``continuity`` is the forward share in ``imitate`` (between anchors) and ``lead``.

Notes: a state's pitch is its f0 (``69 + 12 log2(f0 / 440)``) or, when unvoiced, its strongest chroma peak
(else its token mod 12), folded by octaves into ``melody_range`` next to the previous note; each phrase
starts with a bass note (the same pitch class folded into ``bass_range``). Velocity and duration come from
the state; ``density`` scales phrase length and speed (0 = silence).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Optional

import numpy as np

from shared.config import GenerationConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from services.oracle.factor_oracle import FactorOracle

__all__ = ["Improviser", "fold_pitch", "state_pitch", "hz_to_midi"]

_LIVE_CONTEXT = 8
_SCAN_LIMIT = 48
_ANCHOR_SAMPLE = 48
_UNKNOWN_TOKEN = 1 << 40
_MIN_NOTE_S = 0.05


def hz_to_midi(f0_hz: float) -> float:
    if f0_hz <= 0.0:
        raise ParameterError(f"f0_hz must be > 0, got {f0_hz}")
    return 69.0 + 12.0 * math.log2(f0_hz / 440.0)


def fold_pitch(pitch: int, *, low: int, high: int, prefer: Optional[float] = None) -> int:
    """Move ``pitch`` by octaves into ``[low, high]``, nearest ``prefer`` (default: the range centre).

    If no octave of the pitch class lies in a range narrower than an octave, the nearest bound is used.

    >>> fold_pitch(84, low=48, high=72), fold_pitch(30, low=48, high=72, prefer=70)
    (60, 66)
    """
    if not 0 <= low <= high <= 127:
        raise ParameterError(f"range must satisfy 0 <= low <= high <= 127, got {low}..{high}")
    target = (low + high) / 2.0 if prefer is None else float(prefer)
    pc = pitch % 12
    options = [p for p in range(low - (low % 12) + pc, high + 1, 12) if low <= p <= high]
    if not options:
        return low if abs(low - target) <= abs(high - target) else high
    return min(options, key=lambda p: (abs(p - target), p))


def state_pitch(info: Any) -> int:
    """Unfolded MIDI pitch of a state: f0, else strongest chroma peak (octave 4), else token mod 12."""
    if info.f0_hz > 0.0:
        return int(round(hz_to_midi(info.f0_hz)))
    if info.chroma_peaks:
        return 60 + int(info.chroma_peaks[0])
    return 60 + (max(int(info.token), 0) % 12)


class Improviser:
    """Seeded oracle walk and phrase shaper (deterministic for a given seed and input).

    Parameters
    ----------
    oracle : AudioOracle or FactorOracle
        The memory to walk (it may keep growing while the improviser runs).
    config : GenerationConfig
        Mode, continuity, context, taboo, density, ranges, seed.
    """

    def __init__(self, oracle: Any, config: GenerationConfig) -> None:
        if not isinstance(config, GenerationConfig):
            raise ParameterError("config must be a shared.config.GenerationConfig")
        for name in ("n_states", "sfx", "lrs", "rsfx", "state_info"):
            if not hasattr(oracle, name):
                raise ParameterError(f"oracle has no {name!r}; pass an AudioOracle or FactorOracle")
        self.oracle = oracle
        self.config = config
        self.mode = config.mode
        self.rng = np.random.default_rng(config.seed)
        self.state = 0
        self._run = 0
        self._taboo: deque[int] = deque(maxlen=config.taboo_length) if config.taboo_length else deque(maxlen=0)
        self._live_tokens: deque[int] = deque(maxlen=_LIVE_CONTEXT)
        self._live_features: Optional[np.ndarray] = None
        self._pending = False
        self._token_oracle: Optional[FactorOracle] = oracle if isinstance(oracle, FactorOracle) else None
        self._next_note_id = 1
        self._last_pitch: Optional[int] = None
        self.last_kind = "start"
        self.last_pivot = -1
        self.phrase_end_s = 0.0
        self.counters = {"forward": 0, "jump": 0, "restart": 0, "anchor": 0, "notes": 0, "phrases": 0}

    # ------------------------------------------------------------------ live input
    def set_mode(self, mode: str) -> None:
        if mode not in ("imitate", "contrast", "lead"):
            raise ParameterError(f"mode must be imitate, contrast or lead, got {mode!r}")
        self.mode = mode

    def observe(self, token: int, features: Any = None) -> None:
        """Record one live event (its token and optional feature row) for imitate/contrast."""
        if int(token) < 0:
            raise ParameterError(f"token must be >= 0, got {token}")
        self._live_tokens.append(int(token))
        if features is not None:
            f = np.asarray(features, dtype=np.float64).ravel()
            if not np.isfinite(f).all():
                raise ParameterError("live features must be finite")
            self._live_features = f
        self._pending = True

    # ------------------------------------------------------------------ walking
    def _features(self, state: int) -> Optional[np.ndarray]:
        getter = getattr(self.oracle, "features_of", None)
        return None if getter is None else getter(state)

    def _distance(self, state: int) -> float:
        f = self._features(state)
        if f is None or self._live_features is None or f.shape != self._live_features.shape:
            return 0.0
        return float(np.linalg.norm(f - self._live_features))

    def _distances(self, states: Any) -> np.ndarray:
        """Euclidean distances from the live feature row to the features of ``states`` (one numpy pass)."""
        index = np.asarray(states, dtype=np.int64)
        live = self._live_features
        getter = getattr(self.oracle, "features_rows", None)
        if getter is None or live is None:
            return np.zeros(index.size)
        rows = getter(index)
        if rows.shape[1] != live.size:
            return np.zeros(index.size)
        diff = rows - live
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    def _sync_tokens(self) -> FactorOracle:
        if self._token_oracle is None:
            self._token_oracle = FactorOracle()
        fo = self._token_oracle
        if fo is not self.oracle and fo.n_states < self.oracle.n_states:
            tokens = np.array(self.oracle.states.token[fo.n_states:self.oracle.n_states], dtype=np.int64)
            fo.extend(np.where(tokens >= 0, tokens, _UNKNOWN_TOKEN))
        return fo

    def pivots(self, state: int) -> list[int]:
        """States sharing >= ``min_context`` of context with ``state`` whose successor exists and is not taboo."""
        oracle = self.oracle
        n = oracle.n_states
        m = self.config.min_context
        sfx, lrs = oracle.sfx, oracle.lrs
        out: list[int] = []
        if state <= 0:
            return out
        parent = int(sfx[state])
        lrs_s = int(lrs[state])
        if lrs_s >= m and (parent > 0 or m == 0):
            out.append(parent)
        for child in oracle.rsfx(state)[:_SCAN_LIMIT]:
            if lrs[child] >= m:
                out.append(child)
        if parent >= 0:
            for sibling in oracle.rsfx(parent)[:_SCAN_LIMIT]:
                if sibling != state and min(lrs_s, int(lrs[sibling])) >= m:
                    out.append(sibling)
        taboo = self._taboo
        return [c for c in dict.fromkeys(out) if c + 1 < n and (c + 1) not in taboo and c != state]

    def _choose(self, candidates: list[int]) -> int:
        if self.mode == "contrast" and self._live_features is not None:
            return candidates[int(np.argmax(self._distances(candidates)))]
        return candidates[int(self.rng.integers(len(candidates)))]

    def _anchor(self) -> int:
        """New state after live input (imitate/contrast), or -1."""
        n = self.oracle.n_states
        if self.mode == "imitate" and self._live_tokens:
            fo = self._sync_tokens()
            live = list(self._live_tokens)
            for length in range(len(live), max(1, self.config.min_context) - 1, -1):
                end = fo.find_context(live[-length:])
                if end < 0:
                    continue
                options = [q + 1 for q in fo.occurrences(end, length, limit=_SCAN_LIMIT) if q + 1 < n and (q + 1) not in self._taboo]
                if options:
                    return options[int(self.rng.integers(len(options)))]
            return -1
        if self.mode == "contrast" and self._live_features is not None and n > 1:
            sample = self.rng.integers(1, n, size=min(_ANCHOR_SAMPLE, n - 1)).tolist()
            options = [s for s in sample if s not in self._taboo]
            if options:
                return self._choose(options)
        return -1

    def _contrast_radius(self) -> float:
        n = self.oracle.n_states
        sample = self.rng.integers(1, n, size=min(16, n - 1))
        return float(np.median(self._distances(sample)))

    def step(self) -> int:
        """Advance one state and return it (-1 while the oracle is empty)."""
        oracle = self.oracle
        n = oracle.n_states
        if n < 2:
            return -1
        cfg = self.config
        coin = self.rng.random()
        nxt = -1
        kind = ""
        if self._pending:
            self._pending = False
            if self.mode != "lead":
                nxt = self._anchor()
                if nxt > 0:
                    kind = "anchor"
                    self.last_pivot = -1
        s = self.state
        if nxt < 0:
            forward_ok = s + 1 < n and (s + 1) not in self._taboo and self._run < cfg.max_continuity
            if forward_ok and self.mode == "contrast" and self._live_features is not None and s > 0:
                forward_ok = self._distance(s + 1) >= self._contrast_radius()
            if forward_ok and coin < cfg.continuity:
                nxt, kind = s + 1, "forward"
            else:
                candidates = self.pivots(s)
                if candidates:
                    pivot = self._choose(candidates)
                    nxt, kind = pivot + 1, "jump"
                    self.last_pivot = pivot
                elif forward_ok:
                    nxt, kind = s + 1, "forward"
                else:
                    nxt, kind = self._restart(), "restart"
                    self.last_pivot = -1
        if kind == "forward":
            self._run += 1
            self.last_pivot = s
        else:
            self._run = 0
        self.counters[kind] += 1
        self.last_kind = kind
        self.state = nxt
        if self._taboo.maxlen:
            self._taboo.append(nxt)
        return nxt

    def _restart(self) -> int:
        n = self.oracle.n_states
        for _ in range(16):
            candidate = int(self.rng.integers(1, n))
            if candidate not in self._taboo:
                return candidate
        allowed = [s for s in range(1, n) if s not in self._taboo]
        return allowed[int(self.rng.integers(len(allowed)))] if allowed else 1

    # ------------------------------------------------------------------ notes
    def _note_id(self) -> int:
        note_id = self._next_note_id
        self._next_note_id += 1
        return note_id

    def next_notes(self, *, now_s: float, max_notes: Optional[int] = None) -> list[NoteEvent]:
        """Generate one phrase starting at ``now_s`` (seconds); sets :attr:`phrase_end_s` (phrase + rest).

        Raises
        ------
        ParameterError
            If ``now_s`` is not finite or ``max_notes < 1``.
        """
        if not math.isfinite(now_s):
            raise ParameterError("now_s must be finite")
        if max_notes is not None and max_notes < 1:
            raise ParameterError(f"max_notes must be >= 1, got {max_notes}")
        cfg = self.config
        density = cfg.density
        if self.oracle.n_states < 2 or density <= 0.0:
            self.phrase_end_s = now_s
            return []
        length = max(1, int(round(self.rng.integers(3, 13) * min(density, 2.0))))
        if max_notes is not None:
            length = min(length, max_notes)
        speed = max(density, 0.25)
        t = float(now_s)
        notes: list[NoteEvent] = []
        low, high = cfg.melody_range
        for index in range(length):
            state = self.step()
            info = self.oracle.state_info(state)
            raw = state_pitch(info)
            pitch = fold_pitch(raw, low=low, high=high, prefer=self._last_pitch)
            self._last_pitch = pitch
            ioi = max(float(info.duration_s), _MIN_NOTE_S) / speed
            velocity = int(min(127, max(1, info.velocity)))
            if index == 0:
                blow, bhigh = cfg.bass_range
                notes.append(NoteEvent(note_id=self._note_id(), pitch=fold_pitch(raw, low=blow, high=bhigh),
                                       velocity=velocity, t_on=t, t_off=t + ioi * 0.95, voice="bass",
                                       source_state=state, source_event_id=int(info.event_id)))
            notes.append(NoteEvent(note_id=self._note_id(), pitch=pitch, velocity=velocity, t_on=t, t_off=t + ioi * 0.9,
                                   voice="melody", source_state=state, source_event_id=int(info.event_id)))
            t += ioi
        rest_s = float(self.rng.uniform(0.25, 1.0)) / speed
        self.phrase_end_s = t + rest_s
        self.counters["notes"] += len(notes)
        self.counters["phrases"] += 1
        return notes
