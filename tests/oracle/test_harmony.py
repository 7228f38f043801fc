"""The melody's pitch from the slice's melodic voice, and harmony in the moment (what sounds at the last onsets) for
every voice: imitate plays what sounds now, contrast what does not (services/oracle/player/walk.py, voices.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.compare.musical import harmonic_agreement, key_only_agreement, repeat_share
from services.oracle.memory.store import OracleMemory
from services.oracle.player import walk
from services.oracle.player.live import LiveOracle
from services.oracle.player.walk import held_pitches, melody_pitch, notes_profile
from shared.config import MusicHalConfig
from shared.messages import EventDescriptors, Percept
from shared.pitch import midi_to_hz as hz
from tests.oracle.test_voices import CHORDS, chord_percept


def make_live(**overrides) -> LiveOracle:
    config = MusicHalConfig().with_overrides(overrides)
    return LiveOracle(config, OracleMemory(config, background=False))


def test_melody_pitch_is_the_top_note_struck_at_the_onset():
    struck_low, later_high = (55, 0.0, 0.4, 80, 0.0, 0.0), (79, 0.3, 0.2, 80, 0.0, 0.0)
    assert melody_pitch([struck_low, (64, 0.02, 0.4, 70, 0.0, 0.0), later_high]) == 64
    assert melody_pitch([(60, 0.2, 0.2, 80, 0.0, 0.0), later_high]) == 79  # none struck at the onset: the top note
    assert melody_pitch([]) is None
    assert notes_profile([struck_low, later_high]).tolist() == [0.0] * 7 + [1.0] + [0.0] * 4  # G only: struck
    assert notes_profile([later_high])[7] == 1.0  # none struck: every note


def drone_percept(i: int, soprano: int, onset_s: float) -> Percept:
    """A slice whose strongest chroma class is always C (a held C in the bass and tenor) under a moving soprano."""
    chord = (48, 60, soprano)
    return Percept(
        event_id=i,
        token=soprano % 12,
        features=(np.random.default_rng(soprano).normal(size=8) + soprano / 10).astype(np.float32),
        descriptors=EventDescriptors(
            onset_s=onset_s,
            duration_s=0.4,
            rms=0.1,
            velocity=80,
            f0_hz=hz(48),
            f0_confidence=0.9,
            chroma_peaks=(0, soprano % 12),
            notes=tuple((p, 0.0, 0.35, 80, 0.0, 0.0) for p in chord),
        ),
    )


def test_melody_sings_the_slices_top_voice_not_its_strongest_chroma_class():
    soprano = [67, 69, 71, 72, 74, 72, 71, 69, 67, 65, 64, 65, 67, 64, 62, 64]
    live = make_live(**{"generation.mode": "lead", "generation.max_transpose": 0, "voices.bass": False})
    for i in range(4 * len(soprano)):
        live.stage.learn(drone_percept(i, soprano[i % len(soprano)], 0.4 * i))
    notes, t = [], 0.0
    while t < 20.0:
        notes += live.tick(t)
        t += 0.01
    melody = [n for n in notes if n.voice == "melody"]
    assert len(melody) >= 40
    for n in melody:  # each note is its slice's soprano, moved by octaves
        assert n.pitch % 12 == soprano[(n.source_state - 1) % len(soprano)] % 12, n
    assert sum(n.pitch % 12 == 0 for n in melody) / len(melody) < 0.2  # the chroma's C is not the line
    assert repeat_share(n.pitch for n in melody) <= repeat_share(soprano) + 0.1


#: the progression heard live, in another order than the memory's (so following the memory alone cannot agree)
LIVE_ORDER = [5, 0, 9, 2, 11, 7, 3, 10, 1, 8, 4, 6]


def early_percept(i: int, chord, onset_s: float) -> Percept:
    """An onset's early view: its pitch and chroma, no notes (as services.encoder.fallback.early_view gives)."""
    full = chord_percept(i, chord, onset_s)
    return dataclasses.replace(full, descriptors=dataclasses.replace(full.descriptors, notes=()))


def play_progression(mode: str, *, seconds: float = 24.0):
    """A memory of CHORDS (learning then off); the live input plays them in LIVE_ORDER, a chord every 0.5 s: its early
    view at the onset, its full view (with notes) 0.4 s later. Every note decided and the live chords as a score."""
    live = make_live(**{"generation.mode": mode})
    for i in range(3 * len(CHORDS)):
        live.stage.learn(chord_percept(i, CHORDS[i % len(CHORDS)], 0.5 * i))
    live.apply_control("learning", False)
    notes, score, k = [], [], 0
    t, next_onset, full_due = 0.0, 0.0, None
    while t < seconds:
        if t >= next_onset:
            chord = CHORDS[LIVE_ORDER[k % len(LIVE_ORDER)]]
            score += [(p, next_onset, 0.5) for p in chord]
            notes += live.on_percept(early_percept(1000 + k, chord, t), t, early=True, onset_t=next_onset)
            full_due, k, next_onset = (t + 0.4, 1000 + k, chord), k + 1, next_onset + 0.5
        if full_due is not None and t >= full_due[0]:
            notes += live.on_percept(chord_percept(full_due[1], full_due[2], t), t, onset_t=full_due[0] - 0.4)
            full_due = None
        notes += live.tick(t)
        t = round(t + 0.01, 6)
    played = [(n.pitch, n.t_on) for n in notes if n.t_on < seconds]
    return played, score


@pytest.fixture(scope="module")
def modes():
    return {mode: play_progression(mode) for mode in ("imitate", "contrast")}


def test_imitate_plays_what_sounds_now_and_contrast_what_does_not(modes):
    figures = {}
    for mode, (played, score) in modes.items():
        assert len(played) >= 60, mode
        key_only = key_only_agreement([t for _, t in played], score, tolerance_s=0.05)
        figures[mode] = (harmonic_agreement(played, score, tolerance_s=0.05), key_only)
    (imitate, key_only), (contrast, key_only_c) = figures["imitate"], figures["contrast"]
    assert imitate >= min(key_only + 0.3, 0.95), figures
    assert contrast <= key_only_c - 0.2, figures


def test_without_the_now_weight_imitate_follows_the_key_only(monkeypatch):
    """The agreement comes from weighing what sounds now: the same walk with ``w_now = 0`` (and no filter) agrees
    far less."""
    played, score = play_progression("imitate")
    with_now = harmonic_agreement(played, score, tolerance_s=0.05)
    weights = dict(walk.MODE_WEIGHTS)
    weights["imitate"] = dataclasses.replace(weights["imitate"], w_now=0.0, now_filter=False)
    monkeypatch.setattr(walk, "MODE_WEIGHTS", weights)
    played, score = play_progression("imitate")
    without = harmonic_agreement(played, score, tolerance_s=0.05)
    assert with_now >= without + 0.15, (with_now, without)


def walk_a_melody(monkeypatch, **weights) -> tuple[list[int], list[int]]:
    """Lead mode over a memory of one long non-repeating diatonic line: (the notes played, the line)."""
    table = dict(walk.MODE_WEIGHTS)
    table["lead"] = dataclasses.replace(table["lead"], **weights)
    monkeypatch.setattr(walk, "MODE_WEIGHTS", table)
    rng = np.random.default_rng(3)
    line = [60 + int(p) for p in rng.choice([0, 2, 4, 5, 7, 9, 11, 12], size=96)]
    live = make_live(**{"generation.mode": "lead", "generation.max_transpose": 0, "voices.bass": False})
    live.apply_control("voice/comping/on", 0)
    for i, pitch in enumerate(line):
        live.stage.learn(drone_percept(i, pitch, 0.3 * i))
    notes, t = [], 0.0
    while t < 30.0:
        notes += live.tick(t)
        t += 0.01
    return [n.pitch for n in notes], line


def test_the_melody_does_not_replay_four_notes_of_the_memory_verbatim(monkeypatch):
    """Listening, not copying: a 4-gram of the memory's own melody is held back (w_copy); without the penalty the
    walk's forward runs (continuity 0.8, up to max_continuity 8) replay the memory's line."""
    from services.compare.musical import copy_share

    played, line = walk_a_melody(monkeypatch)
    assert len(played) >= 60
    assert copy_share(played, line) <= 0.1, copy_share(played, line)
    played, line = walk_a_melody(monkeypatch, w_copy=0.0)
    assert copy_share(played, line) >= 0.3, copy_share(played, line)


def test_a_held_top_note_is_not_the_next_slices_melody():
    """A soprano held over the next onset shows up in that slice too (its window starts there); the melody takes what
    is newly struck there (the alto's step), so it does not repeat the held note."""
    assert held_pitches([(72, 0.0, 0.9, 80), (64, 0.0, 0.3, 80)], 0.45) == {72}
    sopranos = [72, 74, 76, 77, 79, 77, 76, 74]

    def slice_percept(i: int, onset_s: float) -> Percept:
        top = sopranos[(i // 2) % len(sopranos)]
        struck = i % 2 == 0  # even slices strike the soprano (held 0.9 s), odd ones only move the alto under it
        notes = (
            (48, 0.0, 0.3, 80, 0.0, 0.0),
            (60 + i % 2 * 5, 0.0, 0.3, 80, 0.0, 0.0),
            (top, 0.0, 0.9 if struck else 0.45, 80, 0.0, 0.0),
        )
        return dataclasses.replace(
            drone_percept(i, top, onset_s),
            descriptors=dataclasses.replace(drone_percept(i, top, onset_s).descriptors, notes=notes),
        )

    live = make_live(**{"generation.mode": "lead", "generation.max_transpose": 0, "voices.bass": False})
    for i in range(4 * len(sopranos)):
        live.stage.learn(slice_percept(i, 0.45 * i))
    notes, t = [], 0.0
    while t < 15.0:
        notes += live.tick(t)
        t += 0.01
    melody = [n for n in notes if n.voice == "melody"]
    assert len(melody) >= 20
    for n in melody:
        i = n.source_state - 1
        expected = sopranos[(i // 2) % len(sopranos)] if i % 2 == 0 else 65  # the alto's F where the soprano is held
        assert n.pitch % 12 == expected % 12, (i, n.pitch)
    assert any((n.source_state - 1) % 2 == 1 for n in melody)
