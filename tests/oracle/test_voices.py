"""Voices over one memory (services.oracle.player.voices): melody, bass and comping on a fake clock (plain numbers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.oracle.memory.store import OracleMemory
from services.oracle.player import walk
from services.oracle.player.live import LiveOracle
from services.oracle.player.voices import Ensemble, chord_movement, naive_chord, voice_chord
from services.oracle.player.walk import Player
from shared.config import MusicHalConfig, VoicesConfig
from shared.errors import ParameterError
from shared.messages import EventDescriptors, Percept
from shared.pitch import midi_to_hz as hz

# a chorale-like progression: four voices (bass, tenor, alto, soprano) per slice, some with a fifth note
CHORDS = [
    (48, 55, 64, 72),
    (53, 57, 65, 72),
    (55, 59, 62, 67, 74),
    (48, 55, 64, 67),
    (45, 57, 64, 72),
    (50, 57, 65, 69),
    (55, 59, 65, 71, 74),
    (48, 52, 60, 67),
    (41, 57, 60, 69),
    (43, 55, 62, 71),
    (52, 55, 60, 72),
    (47, 55, 62, 67),
]


def chord_percept(i: int, chord, onset_s: float, *, with_notes: bool = True) -> Percept:
    rng = np.random.default_rng(i % len(CHORDS))
    top = max(chord)
    pcs = tuple(dict.fromkeys(p % 12 for p in sorted(chord, reverse=True)))[:4]
    notes = tuple((p, 0.0, 0.45, 70 + k, 0.0, 0.0) for k, p in enumerate(chord)) if with_notes else ()
    return Percept(
        event_id=i,
        token=i % len(CHORDS),
        features=(rng.normal(size=8) + top / 10).astype(np.float32),
        descriptors=EventDescriptors(
            onset_s=onset_s,
            duration_s=0.5,
            rms=0.1,
            velocity=80,
            f0_hz=hz(top),
            f0_confidence=0.9,
            chroma_peaks=pcs,
            notes=notes,
        ),
    )


def make_live(voices: dict | None = None, **generation) -> LiveOracle:
    overrides = {f"generation.{k}": v for k, v in generation.items()}
    overrides.update({f"voices.{k}": v for k, v in (voices or {}).items()})
    config = MusicHalConfig().with_overrides(overrides)
    return LiveOracle(config, OracleMemory(config, background=False))


def learn(stage: OracleMemory, repeats: int = 3, *, with_notes: bool = True) -> list:
    """The progression into the memory (no influence, no steps); returns the chord of each state (1-based)."""
    chords = [None]
    for i in range(repeats * len(CHORDS)):
        chord = CHORDS[i % len(CHORDS)]
        stage.learn(chord_percept(i, chord, i * 0.5, with_notes=with_notes))
        chords.append(chord)
    return chords


def play(live: LiveOracle, *, feed_from: int = 1000, seconds: float = 30.0, step: float = 0.01) -> list:
    """Listen to the progression live (every 0.5 s) while the clock runs; every note decided."""
    notes = []
    t, next_input, i = 0.0, 0.0, 0
    while t < seconds:
        if t >= next_input:
            chord = CHORDS[i % len(CHORDS)]
            notes += live.on_percept(chord_percept(feed_from + i, chord, t), t)
            i += 1
            next_input += 0.5
        notes += live.tick(t)
        t += step
    return notes


def by_voice(notes, voice):
    return [n for n in notes if n.voice == voice]


def test_every_voice_keeps_its_range_and_the_bass_stays_below_the_melody():
    live = make_live(mode="imitate")
    learn(live.stage)
    notes = play(live)
    melody, bass, comping = (by_voice(notes, v) for v in ("melody", "bass", "comping"))
    assert len(melody) >= 40 and len(bass) >= 15 and len(comping) >= 30, (len(melody), len(bass), len(comping))
    v, g = live.ensemble.voices, live.config.generation
    for group, (low, high) in ((melody, g.melody_range), (bass, v.bass_range), (comping, v.comping_range)):
        assert all(low <= n.pitch <= high for n in group), (group[0].voice, low, high, sorted({n.pitch for n in group}))
    for b in bass:  # the melody note sounding when the bass starts (same step) is above it
        with_it = [m for m in melody if m.t_on <= b.t_on < m.t_off]
        assert with_it and all(m.pitch > b.pitch for m in with_it), (b, with_it)
    ids = [n.note_id for n in notes]
    assert len(ids) == len(set(ids)), "note ids are unique across voices"


@pytest.mark.parametrize("with_notes", [True, False], ids=["slice-notes", "chroma-fallback"])
def test_every_comping_chord_comes_from_its_slice_and_respects_max_polyphony(with_notes):
    # max_polyphony 2 under slices of three or four pitch classes: the limit binds on every chord. No transposition,
    # so the notes sent say alone which slice classes they play (each comping note names its slice: source_state)
    live = make_live({"max_polyphony": 2}, mode="imitate", max_transpose=0)
    chords = learn(live.stage, with_notes=with_notes)
    notes = play(live)
    store = live.stage.store
    comping = by_voice(notes, "comping")
    assert len(comping) >= 20
    onsets: dict[float, list] = {}
    for n in comping:
        if with_notes:
            slice_pcs = {p % 12 for p in chords[n.source_state]}
            assert {m[0] % 12 for m in store.notes(n.source_state)} == slice_pcs
        else:
            assert store.notes(n.source_state) == ()
            slice_pcs = set(store.chroma_peaks(n.source_state))
        assert len(slice_pcs) >= 3  # more classes than the limit: it binds
        assert n.pitch % 12 in slice_pcs, (n, slice_pcs)  # the note sent is one of its slice's classes
        onsets.setdefault(n.t_on, []).append(n)
    # the notes sent starting together (a chord) never exceed the maximum, from one slice, no class twice
    assert max(len(chord) for chord in onsets.values()) <= 2
    for chord in onsets.values():
        assert len({n.source_state for n in chord}) == 1 and len({n.pitch % 12 for n in chord}) == len(chord)
    assert sum(len(chord) == 2 for chord in onsets.values()) >= 10, "chords, not single notes"


def test_voice_leading_moves_less_than_a_naive_voicing(monkeypatch):
    # voicing, not harmony: without the weight of what sounds now, which keeps only the slice's classes that sound
    # now (chords of one to three notes; tests/oracle/test_harmony.py)
    weights = dict(walk.MODE_WEIGHTS)
    weights["imitate"] = dataclasses.replace(weights["imitate"], w_now=0.0, now_filter=False)
    monkeypatch.setattr(walk, "MODE_WEIGHTS", weights)
    live = make_live(mode="imitate")
    learn(live.stage)
    play(live)
    log = live.ensemble.chords
    assert len(log) >= 20
    low, high = live.ensemble.voices.comping_range
    led = naive = 0.0
    for a, b in zip(log, log[1:]):
        led += chord_movement(a["pitches"], b["pitches"])
        naive += chord_movement(
            naive_chord([p % 12 for p in a["pitches"]], low, high),
            naive_chord([p % 12 for p in b["pitches"]], low, high),
        )
    assert led < 0.9 * naive, (led, naive)  # measured 195 vs 232 semitones over 31 chords
    # a known case: C major to F major (F A C) from C4-E4-G4: the common tone stays, the others move by step
    assert voice_chord([5, 9, 0], [60, 64, 67], 48, 72) == [60, 65, 69]
    assert chord_movement([60, 64, 67], [60, 65, 69]) < chord_movement([60, 64, 67], naive_chord([5, 9, 0], 48, 72))


def test_melody_only_is_the_old_player_note_for_note():
    config = MusicHalConfig().with_overrides(
        {"generation.mode": "imitate", "voices.bass": False, "voices.comping": False}
    )
    stages = [OracleMemory(config, background=False) for _ in range(2)]
    for stage in stages:
        learn(stage)
    ensemble, player = Ensemble(stages[0], config.generation, config.voices), Player(stages[1], config.generation)
    out = {"ensemble": [], "player": []}
    t, i = 0.0, 0
    while t < 20.0:
        if abs(t - round(t * 2) / 2) < 1e-9:
            d = chord_percept(500 + i, CHORDS[i % len(CHORDS)], t).descriptors
            for p in (ensemble.player, player):
                p.listen(now=t, token=i % len(CHORDS), f0_hz=d.f0_hz, chroma_peaks=d.chroma_peaks, event_id=500 + i)
            i += 1
        out["ensemble"] += ensemble.tick(t)[0]
        out["player"] += player.tick(t)[0]
        t = round(t + 0.01, 6)
    assert len(out["player"]) >= 40
    assert out["ensemble"] == out["player"]
    assert [(n.t_on, n.t_off, n.note_id) for n in out["ensemble"]] == [
        (n.t_on, n.t_off, n.note_id) for n in out["player"]
    ]


def test_voice_controls_switch_voices_ranges_and_densities():
    live = make_live(mode="lead")
    learn(live.stage)
    live.apply_control("voice/comping/on", 0)
    live.apply_control("voice/bass/range", (36, 50))
    live.apply_control("voice/bass/density", 2.0)
    t, notes = 0.0, []
    while t < 10.0:
        notes += live.tick(t)
        t += 0.01
    assert not by_voice(notes, "comping")
    bass, melody = by_voice(notes, "bass"), by_voice(notes, "melody")
    assert all(36 <= n.pitch <= 50 for n in bass)
    assert len(bass) >= len(melody) - 1, "density 2: the bass plays at every melody step"
    assert live.control_state()["voices"]["bass"] == {"on": True, "range": [36, 50], "density": 2.0}
    live.apply_control("voice/melody/on", 0)
    live.apply_control("voice/comping/on", 1)
    later = []
    while t < 20.0:
        later += live.tick(t)
        t += 0.01
    assert not by_voice(later, "melody") and by_voice(later, "comping") and by_voice(later, "bass")
    with pytest.raises(ParameterError):
        live.apply_control("voice/bass/range", (60, 50))
    with pytest.raises(ParameterError):
        live.apply_control("voice/bass/density", 3.0)
    with pytest.raises(ParameterError):
        live.apply_control("voice/melody/density", 1.0)
    assert live.control_state()["voices"]["bass"]["range"] == [36, 50], "a bad value changes nothing"


def test_a_phase_delays_a_voice_by_that_share_of_the_melody_step():
    live = make_live({"comping_phase": 0.5, "bass": False, "comping_density": 1.0}, mode="lead")
    learn(live.stage)
    t, notes = 0.0, []
    while t < 6.0:
        notes += live.tick(t)
        t += 0.01
    melody, comping = by_voice(notes, "melody"), by_voice(notes, "comping")
    onsets = sorted({n.t_on for n in melody})
    gaps = [b - a for a, b in zip(onsets, onsets[1:])]
    chord_onsets = sorted({n.t_on for n in comping})
    assert chord_onsets and gaps
    for c in chord_onsets[:-1]:
        before = max(o for o in onsets if o <= c)
        nxt = min(o for o in onsets if o > c)
        assert c - before == pytest.approx(0.5 * (nxt - before), abs=1e-6)


def test_bad_voice_settings_are_one_line_errors():
    for bad in ({"bass_range": (40, 45)}, {"max_polyphony": 0}, {"comping_density": -1.0}, {"bass_phase": 1.0}):
        with pytest.raises(ParameterError):
            VoicesConfig(**bad)
    with pytest.raises(ParameterError):
        MusicHalConfig().with_overrides({"midi.bass_channel": 10})
    with pytest.raises(ParameterError):
        MusicHalConfig().with_overrides({"voices.drums": True})


def test_the_voices_flag_picks_the_voices():
    from launch import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["--voices", "melody,bass"]))
    assert (config.voices.melody, config.voices.bass, config.voices.comping) == (True, True, False)
    assert config_from_args(build_parser().parse_args([])).voices.comping is True  # all three by default
    for bad in ("drums", ","):
        with pytest.raises(ParameterError):
            config_from_args(build_parser().parse_args(["--voices", bad]))


def test_a_session_with_voices_and_voice_controls_replays_to_the_same_midi_bytes(tmp_path):
    from services.midi_out.render import render_notes
    from services.oracle.player.replay import replay_session
    from services.oracle.player.session import SessionLog, make_stage

    config = MusicHalConfig().with_overrides({"generation.seed": 2, "midi.profile": "gm-safe"})
    clock = {"t": 0.0}
    log = SessionLog(tmp_path / "s.jsonl", config=config, clock=lambda: clock["t"])
    live = LiveOracle(config, make_stage(config), session=log)
    notes, t = [], 0.0
    for i in range(36):
        clock["t"] = t
        if i == 12:
            live.apply_control("voice/bass/range", (36, 50), t)
            live.apply_control("voice/comping/on", 0, t)
        if i == 24:
            live.apply_control("voice/comping/on", 1, t)
            live.apply_control("voice/comping/density", 1.0, t)
        notes += live.on_percept(chord_percept(i, CHORDS[i % len(CHORDS)], t), t)
        live.learn_queued()
        notes += live.tick(t + 0.2)
        t += 0.4
    log.write("stop")
    log.close()
    assert {n.voice for n in notes} == {"melody", "bass", "comping"}
    result = replay_session(tmp_path / "s.jsonl")
    assert result.notes and result.identical
    live_events = render_notes(notes, config, t_start=0.0).events
    assert [bytes(m) for _, m in live_events] == [
        bytes(m) for _, m in render_notes(result.notes, config, t_start=0.0).events
    ]
    channels = {m[0] & 0x0F for _, m in live_events if (m[0] & 0xF0) == 0x90}
    assert {10, 11} <= channels and 9 not in channels  # bass on MIDI 11, comping on 12, never 10


def expressive_percept(i: int, onset_s: float):
    """A chord slice without transcribed notes whose f0 (the chord's lowest note) glides up 80 cents, a swell."""
    chord = CHORDS[i % len(CHORDS)]
    base = chord_percept(i, chord, onset_s, with_notes=False)
    descriptors = dataclasses.replace(
        base.descriptors,
        f0_hz=hz(min(chord)),
        pressure=(40, 60, 80, 100, 100, 90, 80, 70),
        f0_cents=tuple(float(c) for c in np.linspace(0.0, 80.0, 8)),
        timbre=99,
    )
    return dataclasses.replace(base, descriptors=descriptors)


def test_bass_and_comping_notes_carry_their_slice_expression(monkeypatch):
    """Followers play the slice's pressure and CC74; the bass, playing the slice's f0 pitch class an octave or two
    down, carries that f0's glide as its bend (the MPE profile sends them; gm-safe and mono drop them). No
    transposition and no weight of what sounds now (expression, not harmony: with it the bass takes the class that
    sounds now, tests/oracle/test_harmony.py), so the bass plays its slice's f0 class."""
    weights = dict(walk.MODE_WEIGHTS)
    weights["imitate"] = dataclasses.replace(weights["imitate"], w_now=0.0, now_filter=False)
    monkeypatch.setattr(walk, "MODE_WEIGHTS", weights)
    live = make_live(voices={"bass_density": 1.0, "comping_density": 1.0}, max_transpose=0)
    for i in range(3 * len(CHORDS)):
        live.stage.learn(expressive_percept(i, i * 0.5))
    notes, t, next_input, i = [], 0.0, 0.0, 0
    while t < 20.0:
        if t >= next_input:
            notes += live.on_percept(expressive_percept(1000 + i, t), t)
            i, next_input = i + 1, next_input + 0.5
        notes += live.tick(t)
        t += 0.01
    bass, comping = by_voice(notes, "bass"), by_voice(notes, "comping")
    assert len(bass) >= 5 and len(comping) >= 5
    for note in bass + comping:
        assert note.timbre == 99 and note.pressure > 0 and note.pressure_curve, note
    # the bass takes the f0's pitch class (no transcribed notes): its notes glide upwards as the slice did
    assert all(n.pitch % 12 == min(CHORDS[(n.source_state - 1) % len(CHORDS)]) % 12 for n in bass)
    gliding = [n for n in bass if n.bend_curve and n.bend_curve[-1][1] > n.bend_semitones + 0.2]
    assert len(gliding) >= 0.8 * len(bass), [(n.bend_semitones, n.bend_curve) for n in bass[:5]]


def test_the_echo_loops_ranges_keep_every_voice_above_the_musicians_line():
    """testkit/echo_loop.py's LOOP_RANGES set the ranges the live voices read (one bass range: ``voices.bass_range``),
    so in the echo test and benchmark MusicHal's bass plays above the musician's C2..B2 line, not inside it."""
    from testkit.echo_loop import LOOP_RANGES, MUSICIAN_PITCHES

    config = MusicHalConfig().with_overrides(LOOP_RANGES)
    live = LiveOracle(config, OracleMemory(config, background=False))
    learn(live.stage)
    notes = play(live)
    bass = by_voice(notes, "bass")
    assert len(bass) >= 15 and len(by_voice(notes, "melody")) >= 40
    assert min(n.pitch for n in notes) > max(MUSICIAN_PITCHES), sorted({n.pitch for n in bass})[:5]
    assert all(config.voices.bass_range[0] <= n.pitch <= config.voices.bass_range[1] for n in bass)
