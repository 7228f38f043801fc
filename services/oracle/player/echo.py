"""Listening while playing: echo-aware rejection of input onsets (pure logic, no Ray).

The microphone hears MusicHal's own synth. A blanket gate (``mode="time"``) drops every onset
from ``pre_ms`` before each own note to ``release_ms`` after it; with legato output that is nearly every onset, so the
musician is neither learned nor imitated while MusicHal plays. :class:`EchoGate` drops an onset that falls during
MusicHal's own notes **only when it is explained by them**. An echo has a cause: one of our note-ons, and it is
detected shortly after the note leaves (later when notes leave midi_out late on a loaded machine), while a
musician's onset that MusicHal reacts to comes *before* the reaction's note-on; ``attack_ms`` covers the echo's
delay (the measured delays behind the defaults are in docs/architecture.md, "The echo gate"). So ``content`` mode
asks two things:

* **Is the onset at one of our attacks** (``attack_pre_ms`` before to ``attack_ms`` after an own note-on)?
  Then it is an echo unless its content shows something new that our sounding notes do not explain: with the slice's
  transcribed notes (``EventDescriptors.notes``), a note *starting* in the onset's early window (``onset_s <=
  early_ms``) whose pitch is neither one MusicHal is sounding (within ``pre_ms``/``release_ms`` of the note's life),
  nor one of its upper partials (+12, +19, +24 semitones: the ghost notes a transcriber reports above a loud tone;
  ``octave_tolerant``), nor an input note already sounding before the onset (remembered from the previous slices by
  :meth:`EchoGate.heard`, with its partials). Without notes (only a pitch-class profile) it is an echo when at least
  ``chroma_explained`` (0.5) of the profile's energy lies on the sounding notes' harmonics. A profile is
  octave-blind and an imitating MusicHal plays the musician's pitch classes, so some of the musician's onsets are lost
  there; but calling *every* onset at an attack an echo makes the player deaf once it steps on the musician's beat
  (its notes then start where the musician's next onsets are).
* **During our notes' sustain, away from any attack**, the onset is the musician's unless its transcribed notes are
  all explained (each new note one we are sounding or a partial of one: the segmenter firing again on our own tone).
  A pitch-class profile alone keeps the onset: it cannot tell a musician playing two octaves under an imitating
  MusicHal (whose pitch classes ours "explain") from an echo, nor see echoes of high notes over a held bass (the bass
  dominates the profile). The measurements behind these rules are in docs/architecture.md ("The echo gate").

``time`` mode is the blanket gate (kept as an option). An onset while nothing of ours sounds is
always the musician's. Times are seconds on one clock.

>>> gate = EchoGate()
>>> gate.note_sent(10.0, 11.0, pitch=60)
>>> gate.blocks(10.0, notes=((60, 0.0, 0.4, 80, 0.0, 0.0),))                                   # our C4 heard back
True
>>> gate.blocks(10.02, notes=((60, 0.0, 0.4, 80, 0.0, 0.0), (43, 0.01, 0.4, 70, 0.0, 0.0)))  # a G2 with it
False
>>> gate.blocks(10.5, chroma=harmonic_chroma([48]))                  # a C3 during our C4's sustain: the musician
False
>>> timed = EchoGate(mode="time")
>>> timed.note_sent(10.0, 11.0, pitch=60)
>>> timed.blocks(10.5, notes=((43, 0.01, 0.4, 70, 0.0, 0.0),))                                 # the old blanket gate
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import ParameterError

__all__ = ["EchoGate", "EchoDecision", "harmonic_chroma", "MODES"]

MODES = ("content", "time")
_HARMONICS = np.arange(1, 7)
#: semitones of the 2nd, 3rd and 4th partials: a transcriber hears them as ghost notes above a loud tone
_PARTIALS = (12, 19, 24)
_HARMONIC_WEIGHTS = 1.0 / _HARMONICS


def harmonic_chroma(pitches: Iterable[int]) -> np.ndarray:
    """12-bin chroma a set of harmonic tones is expected to give (first six partials, weights 1/h), max 1."""
    out = np.zeros(12)
    for pitch in pitches:
        classes = np.mod(np.rint(int(pitch) + 12.0 * np.log2(_HARMONICS)).astype(int), 12)
        np.add.at(out, classes, _HARMONIC_WEIGHTS)
    top = out.max()
    return out / top if top > 0 else out


@dataclass(frozen=True, slots=True)
class EchoDecision:
    """Why an onset was kept or dropped. ``echo`` True means: drop it (neither learn nor imitate)."""

    echo: bool
    # "silent" (none of ours sounding), "time", "explained" / "unexplained" (transcribed notes), "attack" (at one of
    # our note-ons, nothing new), "sustain" (during our notes, away from their attacks, nothing of ours new),
    # "no-content" (at an attack, neither notes nor chroma)
    reason: str
    sounding: tuple[int, ...] = ()
    unexplained: tuple[int, ...] = ()
    explained_share: float | None = None  # share of the chroma's energy on the sounding notes' harmonics (info)


class EchoGate:
    """Remembers MusicHal's recent notes (pitch and sounding interval) and classifies input onsets.

    Parameters
    ----------
    mode:
        ``"content"`` (echo-aware, default) or ``"time"`` (blanket gate).
    pre_ms, release_ms:
        A note counts as sounding from ``pre_ms`` before its note-on to ``release_ms`` after its note-off.
    early_ms:
        Transcribed notes starting within this much of the onset are the onset's content.
    attack_pre_ms, attack_ms:
        An onset from ``attack_pre_ms`` before to ``attack_ms`` after an own note-on is at that note's attack (where
        echoes are); elsewhere during our notes it is in their sustain.
    octave_tolerant:
        A new note at an upper partial (+12, +19, +24 semitones) of a sounding or held note counts as explained.
    chroma_explained:
        At an attack, with only a pitch-class profile: the share of its energy on the sounding notes' harmonics that
        makes it their echo (below it, the profile holds something of the musician's: kept).
    no_content_is_echo:
        What to do with an onset at one of our attacks that carries neither notes nor chroma (True: drop, as the time
        gate); in the sustain such an onset is kept.
    enabled:
        Off: nothing is dropped (notes are still registered).
    """

    def __init__(
        self,
        *,
        mode: str = "content",
        pre_ms: float = 20.0,
        release_ms: float = 250.0,
        early_ms: float = 60.0,
        attack_pre_ms: float = 15.0,
        attack_ms: float = 120.0,
        octave_tolerant: bool = True,
        no_content_is_echo: bool = True,
        enabled: bool = True,
        max_notes: int = 4096,
        chroma_explained: float = 0.5,
    ) -> None:
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if min(pre_ms, release_ms, early_ms, attack_pre_ms, attack_ms) < 0:
            raise ParameterError(
                f"pre_ms, release_ms, early_ms, attack_pre_ms and attack_ms must be >= 0, got {pre_ms}, "
                f"{release_ms}, {early_ms}, {attack_pre_ms}, {attack_ms}"
            )
        if max_notes < 1:
            raise ParameterError(f"max_notes must be >= 1, got {max_notes}")
        self.mode = mode
        self.pre_s, self.release_s, self.early_s = pre_ms / 1000.0, release_ms / 1000.0, early_ms / 1000.0
        self.attack_pre_s, self.attack_s = attack_pre_ms / 1000.0, attack_ms / 1000.0
        self.octave_tolerant = bool(octave_tolerant)
        if not 0.0 <= chroma_explained <= 1.0:
            raise ParameterError(f"chroma_explained must be in 0..1, got {chroma_explained}")
        self.chroma_explained = float(chroma_explained)
        self.no_content_is_echo = bool(no_content_is_echo)
        self.enabled = bool(enabled)
        self._notes: deque[tuple[float, float, int, float]] = deque(maxlen=int(max_notes))
        # input slice notes heard so far: (start, end, pitch, open-ended) — a note still sounding when the next onset
        # comes shows up again at that onset's window start; it is not new content
        self._heard: deque[tuple[float, float, int, bool, int]] = deque(maxlen=int(max_notes))
        self._slices = 0
        self.counters = {"registered": 0, "checked": 0, "blocked": 0, "kept_during_own_notes": 0}

    def note_sent(self, t_on_s: float, t_off_s: float, pitch: int | None = None) -> None:
        """Register one own note sounding from ``t_on_s`` to ``t_off_s`` (``pitch`` None: unknown, content mode then
        treats it like the time gate does)."""
        if not t_off_s >= t_on_s:
            raise ParameterError(f"t_off_s must be >= t_on_s, got {t_on_s}..{t_off_s}")
        if pitch is not None and not 0 <= int(pitch) <= 127:
            raise ParameterError(f"pitch must be in 0..127, got {pitch}")
        self._notes.append(
            (
                float(t_on_s) - self.pre_s,
                float(t_off_s) + self.release_s,
                -1 if pitch is None else int(pitch),
                float(t_on_s),
            )
        )
        self.counters["registered"] += 1

    def heard(self, onset_s: float, notes: Sequence[Sequence[Any]], *, window_s: float) -> None:
        """Remember an input slice's notes (``(pitch, onset_s_in_slice, duration_s, ...)``; the slice is ``window_s``
        long): a note reaching the window's end is taken to sound on until the next slice."""
        self._slices += 1
        for n in notes:
            start = float(onset_s) + float(n[1])
            duration = float(n[2]) if len(n) > 2 else 0.0
            self._heard.append(
                (start, start + duration, int(n[0]), float(n[1]) + duration >= float(window_s) - 0.03, self._slices)
            )

    def held(self, onset_s: float) -> tuple[int, ...]:
        """Input pitches already sounding just before ``onset_s`` (from the slices :meth:`heard` before it)."""
        return tuple(
            sorted(
                {
                    p
                    for start, end, p, open_ended, index in self._heard
                    if start < onset_s - 0.03 and (end >= onset_s - 0.05 or (open_ended and index == self._slices))
                }
            )
        )

    def sounding(self, onset_s: float) -> tuple[int, ...]:
        """Pitches of own notes sounding (with margins) at ``onset_s`` (-1 for a note registered without pitch)."""
        return tuple(sorted({p for start, end, p, _ in self._notes if start <= onset_s <= end}))

    def attacking(self, onset_s: float) -> tuple[int, ...]:
        """Pitches of own notes at whose attack ``onset_s`` falls: ``t_on - attack_pre <= onset_s <= t_on + attack``."""
        return tuple(
            sorted({p for _, _, p, t_on in self._notes if t_on - self.attack_pre_s <= onset_s <= t_on + self.attack_s})
        )

    def classify(
        self,
        onset_s: float,
        *,
        notes: Sequence[Sequence[Any]] | None = None,
        chroma: Sequence[float] | None = None,
    ) -> EchoDecision:
        """Echo or musician for an onset at ``onset_s`` (see the module docstring). ``notes``: the onset's slice notes
        as ``(pitch, onset_s_in_slice, ...)``; ``chroma``: its early-window chroma (12 values)."""
        sounding = self.sounding(float(onset_s))
        if not sounding:
            return EchoDecision(False, "silent")
        if self.mode == "time" or -1 in sounding:
            return EchoDecision(True, "time", sounding)
        attack = bool(self.attacking(float(onset_s)))
        share = None
        if chroma is not None:
            c = np.asarray(chroma, dtype=np.float64).ravel()
            if c.shape != (12,) or not np.isfinite(c).all() or (c < 0).any():
                raise ParameterError("chroma must be 12 finite non-negative values")
            energy = float(np.sum(c * c))
            if energy > 0.0:
                share = float(np.sum((c * c)[harmonic_chroma(sounding) >= 0.15]) / energy)
        if notes is not None:
            held = set(self.held(float(onset_s)))
            if self.octave_tolerant:
                held |= {p + k for p in held for k in _PARTIALS}
            new = sorted({int(n[0]) for n in notes if float(n[1]) <= self.early_s} - held)
            allowed = set(sounding)
            if self.octave_tolerant:
                allowed |= {p + k for p in sounding for k in _PARTIALS}
            unexplained = tuple(p for p in new if p not in allowed)
            if unexplained:
                return EchoDecision(False, "unexplained", sounding, unexplained, share)
            if new:  # every new note is ours (or a partial of ours): at an attack or not, an echo
                return EchoDecision(True, "explained", sounding, (), share)
            # nothing new: a re-detection of what already sounds; at one of our attacks, that attack's echo
            return EchoDecision(attack, "attack" if attack else "sustain", sounding, (), share)
        if not attack:
            return EchoDecision(False, "sustain", sounding, explained_share=share)
        if share is not None:  # at an attack, a profile the sounding notes' harmonics explain is their echo
            echo = share >= self.chroma_explained
            return EchoDecision(echo, "attack" if echo else "unexplained", sounding, explained_share=share)
        return EchoDecision(self.no_content_is_echo, "no-content", sounding)

    def blocks(
        self,
        onset_s: float,
        *,
        notes: Sequence[Sequence[Any]] | None = None,
        chroma: Sequence[float] | None = None,
        window_s: float = 0.5,
    ) -> bool:
        """True when the onset should be dropped (an echo of our own notes).
        The slice's ``notes`` are remembered (:meth:`heard`) whatever the decision."""
        self.counters["checked"] += 1
        decision = self.classify(onset_s, notes=notes, chroma=chroma)
        if notes is not None:
            self.heard(onset_s, notes, window_s=window_s)
        if not self.enabled:
            return False
        if decision.echo:
            self.counters["blocked"] += 1
        elif decision.sounding:
            self.counters["kept_during_own_notes"] += 1
        return decision.echo

    def clear(self) -> None:
        self._notes.clear()
        self._heard.clear()
