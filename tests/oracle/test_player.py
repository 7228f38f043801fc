"""The clocked influence player and the live decision object, on a fake clock (times are plain numbers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.oracle.memory.store import OracleMemory
from services.oracle.player.live import LiveOracle
from services.oracle.player.walk import MODE_WEIGHTS
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Percept
from shared.pitch import midi_to_hz as hz
from testkit.percepts import pitched_percept

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62]


def percept(
    i: int,
    pitch: int,
    onset_s: float,
    *,
    duration_s: float = 0.5,
    dim: int = 8,
    chroma_peaks: tuple[int, ...] | None = None,
) -> Percept:
    """A percept of ``pitch`` (its f0); its strongest chroma class is the pitch's own unless ``chroma_peaks`` says."""
    return pitched_percept(i, pitch, onset_s, duration_s=duration_s, dim=dim, chroma_peaks=chroma_peaks)


def feed(live: LiveOracle, item: Percept, now: float, **kwargs):
    """One percept as the actor gives it: decide (notes out), then learn."""
    notes = live.on_percept(item, now, **kwargs)
    live.learn_queued()
    return notes


def make_live(**generation) -> LiveOracle:
    overrides = {f"generation.{k}": v for k, v in generation.items()}
    # the melody player alone: these tests are about its walk and clock (the bass and comping voices that follow it
    # are tests/oracle/test_voices.py's)
    overrides.update({"voices.bass": False, "voices.comping": False})
    config = MusicHalConfig().with_overrides(overrides)
    return LiveOracle(config, OracleMemory(config, background=False))


def learn_melody(live: LiveOracle, pitches, *, ioi: float = 0.25, t0: float = 0.0) -> None:
    """Put ``pitches`` into the memory directly (no influence, no steps)."""
    for i, p in enumerate(pitches):
        live.stage.learn(percept(i, p, t0 + i * ioi))


def run_clock(live: LiveOracle, start: float, end: float, step: float = 0.01):
    notes = []
    t = start
    while t < end:
        notes += live.tick(t)
        t += step
    return notes


def test_lead_plays_alone_without_any_input():
    live = make_live(mode="lead")
    learn_melody(live, C_MAJOR * 3)
    notes = run_clock(live, 0.0, 10.0)
    assert len(notes) >= 10 * 2, "lead should step on its own clock (learned IOI 0.25 s)"
    onsets = np.array([n.t_on for n in notes])
    assert np.allclose(np.diff(onsets)[np.diff(onsets) > 0].min(), 0.25, atol=0.02)
    assert live.counters["percepts"] == 0


def test_every_mode_plays_on_through_rests_unless_asked_to_wait():
    for mode in ("imitate", "contrast"):
        live = make_live(mode=mode)
        t = 0.0
        for i, p in enumerate(C_MAJOR * 2):
            feed(live, percept(i, p, t), t)
            t += 0.25
        before = live.counters["notes"]
        run_clock(live, t, t + 10.0)
        assert live.counters["notes"] - before >= 20, mode
    waiting = make_live(mode="imitate", wait_for_input=True)
    t = 0.0
    for i, p in enumerate(C_MAJOR * 2):
        feed(waiting, percept(i, p, t), t)
        t += 0.25
    notes = run_clock(waiting, t, t + 10.0)
    assert notes and max(n.t_on for n in notes) <= t + 2.0 + 0.3  # stops after WAIT_S of rest


F_SHARP_MAJOR = [p + 6 for p in C_MAJOR]  # shares only F and B with C major
F_SHARP_ONLY = {p % 12 for p in F_SHARP_MAJOR} - {p % 12 for p in C_MAJOR}


@pytest.mark.parametrize("order", ["c-first", "f#-first"])
def test_contrast_plays_where_the_input_is_not_and_imitate_where_it_is(order):
    """A memory of C major and F# major (in either order), the input in C major: imitate plays C major, contrast
    plays the classes the input does not (F# major's own five), wherever they are in the memory."""
    memory = C_MAJOR * 3 + F_SHARP_MAJOR * 3 if order == "c-first" else F_SHARP_MAJOR * 3 + C_MAJOR * 3
    shares = {}
    for mode in ("imitate", "contrast"):
        live = make_live(mode=mode, max_transpose=0)
        learn_melody(live, memory)
        live.apply_control("learning", False)
        t, notes = 0.0, []
        for i, p in enumerate(C_MAJOR * 4):
            notes += feed(live, percept(1000 + i, p, t), t)
            notes += live.tick(t + 0.12)
            t += 0.25
        tail = notes[len(notes) // 4 :]
        assert len(tail) >= 30
        shares[mode] = sum(n.pitch % 12 in F_SHARP_ONLY for n in tail) / len(tail)
    assert shares["imitate"] <= 0.2 and shares["contrast"] >= 0.4, shares


#: every third step repeats a pitch (C C D, C C E, ...): two thirds of the states sound C
REPEATING_MEMORY = [p for k in range(40) for p in (60, 60, 62 + k % 5)]


def pitch_repeats(notes, memory) -> list:
    """The consecutive notes that repeat a pitch class; each must be a forward step through the memory's own repeat."""
    repeats = [(a, b) for a, b in zip(notes, notes[1:]) if a.pitch % 12 == b.pitch % 12]
    for a, b in repeats:
        assert b.source_state == a.source_state + 1 and memory[a.source_state - 1] == memory[b.source_state - 1], (a, b)
    return repeats


def test_the_walk_repeats_a_pitch_only_where_the_memory_repeats_it():
    # a walk over REPEATING_MEMORY that jumped freely would land on C again and again; it repeats C only going forward
    # through the memory's own repeat (the repeated-pitch penalty, w_repeat, holds back every other state that sounds
    # the last class)
    live = make_live(mode="lead", max_transpose=0)
    learn_melody(live, REPEATING_MEMORY)
    notes = run_clock(live, 0.0, 20.0)
    assert len(notes) >= 60
    repeats = pitch_repeats(notes, REPEATING_MEMORY)
    assert repeats, "the memory's own repeats are played"
    assert len(repeats) / (len(notes) - 1) <= 0.4  # at most the memory's own share (1/3), as forward steps allow


@pytest.mark.parametrize(("mode", "pitch", "peaks"), [("imitate", 60, None), ("contrast", 62, (2, 3, 4, 5, 6))])
def test_a_gated_mode_repeats_a_pitch_only_where_the_memory_repeats_it_even_on_the_side_it_prefers(mode, pitch, peaks):
    # REPEATING_MEMORY; the input sounds C all along for imitate (its gate favours C now), and D to F# for contrast
    # (its gate favours C, the one class not sounding): a repeated class takes nothing from the gate, so C follows C
    # only forward through the memory's own repeat, never by a jump to another C state
    live = make_live(mode=mode, max_transpose=0)
    learn_melody(live, REPEATING_MEMORY)
    live.apply_control("learning", False)
    t, notes = 0.0, []
    for i in range(48):
        notes += feed(live, percept(1000 + i, pitch, t, chroma_peaks=peaks), t)
        notes += live.tick(t + 0.12)
        t += 0.25
    assert len(notes) >= 40
    pitch_repeats(notes, REPEATING_MEMORY)


def test_a_states_pitch_is_its_strongest_chroma_class_in_the_register_of_its_f0():
    # each slice's f0 is one voice (the bass, say) and its strongest chroma class another, a major third up: the
    # notes play the chroma class, placed within a tritone of the f0 (not the f0's class)
    live = make_live(mode="lead", melody_range=(36, 96), max_transpose=0)
    for i, p in enumerate(C_MAJOR * 3):
        live.stage.learn(percept(i, p, i * 0.25, chroma_peaks=((p + 4) % 12, p % 12)))
    notes = run_clock(live, 0.0, 10.0)
    memory = [0] + C_MAJOR * 3
    assert len(notes) >= 20
    for note in notes:
        f0_pitch = memory[note.source_state]
        assert note.pitch % 12 == (f0_pitch + 4) % 12, (note.pitch, f0_pitch)
        assert note.pitch == f0_pitch + 4  # the nearest such pitch to the f0 (a third up), inside the range


def test_density_and_mode_changes_apply_at_the_next_step():
    live = make_live(mode="lead", continuity=1.0, max_continuity=100)
    learn_melody(live, C_MAJOR * 4, ioi=0.5)
    notes = run_clock(live, 0.0, 2.2)
    last = notes[-1]
    live.apply_control("density", 2.0, 2.2)
    live.apply_control("mode", "contrast", 2.2)
    after = run_clock(live, 2.2, 3.5)
    assert after[0].t_on == pytest.approx(last.t_on + 0.5)  # scheduled before the change
    assert after[0].t_off - after[0].t_on == pytest.approx(0.25)  # the next step already plays at density 2
    assert after[1].t_on - after[0].t_on == pytest.approx(0.25)
    assert live.player.weights is MODE_WEIGHTS["contrast"] and live.player.last_mode == "contrast"
    with pytest.raises(ParameterError):
        live.apply_control("no-such-control", 1)


def test_learned_ioi_replaces_the_window_length_when_the_next_onset_arrives():
    live = make_live()
    store = lambda: live.stage.store  # noqa: E731
    feed(live, percept(0, 60, 10.0, duration_s=0.5), 10.5)
    assert store().duration_s[1] == pytest.approx(0.5)  # the window length, until the next onset
    feed(live, percept(1, 64, 10.3, duration_s=0.5), 10.8)
    assert store().duration_s[1] == pytest.approx(0.3)
    assert live.player._ioi(1, live.stage.walk.n_states) == pytest.approx((0.3, 0.3))
    # a long rest stays a rest: IOI clamped, the note keeps its learned duration
    feed(live, percept(2, 67, 15.0, duration_s=0.5), 15.5)
    ioi, duration = live.player._ioi(2, live.stage.walk.n_states)
    assert duration == pytest.approx(0.5) and ioi == pytest.approx(2.0)


def test_influence_peaks_decay_with_the_half_life():
    live = make_live(mode="lead", half_life_s=1.5)
    learn_melody(live, C_MAJOR * 2)
    player = live.player
    player.listen(now=100.0, token=64 % 12, f0_hz=hz(64), chroma_peaks=(4,))
    a0 = player.activity(100.0)
    a1 = player.activity(101.5)
    a2 = player.activity(103.0)
    assert a0.max() > 0
    assert np.allclose(a1, a0 * 0.5) and np.allclose(a2, a0 * 0.25)
    # the peaks are on the states that match: E (pitch 64) states get more than the others
    pitches = np.array([0] + C_MAJOR * 2)
    assert a0[pitches == 64].min() > a0[(pitches != 64) & (pitches > 0)].max()


def test_output_follows_a_transposition_of_the_input_within_bounded_steps():
    live = make_live(mode="imitate")
    # a tritone away: F# major shares only F and B with C major, so only following the input can play it
    f_major = [p + 6 for p in C_MAJOR]
    t, i, notes = 0.0, 0, []
    for p in C_MAJOR * 3:
        notes += feed(live, percept(i, p, t), t)
        t, i = t + 0.25, i + 1
    switch = t
    for p in f_major * 3:
        notes += feed(live, percept(i, p, t), t)
        notes += live.tick(t + 0.12)
        t, i = t + 0.25, i + 1
    after = [n.pitch % 12 for n in notes if n.t_on >= switch]
    f_pcs = {p % 12 for p in f_major}
    # within 12 steps of the change, the output plays F# major, none of C major's own five classes at the end
    tail = after[12:]
    assert len(tail) >= 12
    assert sum(pc in f_pcs for pc in tail) / len(tail) >= 0.9, tail
    assert not {pc % 12 for pc in C_MAJOR} - f_pcs & set(tail[-12:]), tail


def test_output_transposes_a_fixed_memory_towards_the_live_key():
    live = make_live(mode="imitate")
    learn_melody(live, C_MAJOR * 3)
    live.apply_control("learning", False)
    t, notes = 0.0, []
    # a tritone away (F# major shares only F and B with C major): avoiding some classes cannot pass, transposing can
    for i, p in enumerate([p + 6 for p in C_MAJOR] * 3):
        notes += feed(live, percept(100 + i, p, t), t)
        notes += live.tick(t + 0.12)
        t += 0.25
    tail = [n.pitch % 12 for n in notes[len(notes) // 2 :]]
    f_pcs = {(p + 6) % 12 for p in C_MAJOR}
    assert sum(pc in f_pcs for pc in tail) / len(tail) >= 0.9, tail
    assert live.player.counters["transpositions"] >= 1
    assert live.player.transpose % 12 == 6  # the memory is played a tritone away (+6 or -6) at the end


def test_output_intervals_keep_the_memory_contour_inside_the_range():
    live = make_live(mode="lead", melody_range=(48, 84), max_transpose=0)
    learn_melody(live, C_MAJOR * 3)
    notes = run_clock(live, 0.0, 20.0)
    memory = np.array([0] + C_MAJOR * 3)
    checked = 0
    for a, b in zip(notes, notes[1:]):
        if b.source_state == a.source_state + 1:  # a forward step: the output moves as the memory did
            assert np.sign(b.pitch - a.pitch) == np.sign(memory[b.source_state] - memory[a.source_state])
            assert b.pitch - a.pitch == memory[b.source_state] - memory[a.source_state]
            checked += 1
    assert checked >= 20


def test_runs_out_of_range_move_by_octaves_keeping_their_contour(monkeypatch):
    # octave placement, not harmony: without the weight of what sounds now (with it, imitate echoes the classes a
    # monophonic input has just played instead of running on with the memory: tests/oracle/test_harmony.py) and
    # without the copy penalty (it breaks the long verbatim runs this test needs)
    weights = dict(MODE_WEIGHTS)
    weights["imitate"] = dataclasses.replace(weights["imitate"], w_now=0.0, now_filter=False, w_copy=0.0)
    monkeypatch.setattr("services.oracle.player.walk.MODE_WEIGHTS", weights)
    live = make_live(mode="imitate", melody_range=(48, 66), max_transpose=0)
    # two octaves too high, rising two octaves and back in a zigzag (up 2, down 1): any max_continuity + 1 learned
    # pitches span at most 6 semitones, so each run starts inside the 18-semitone range; the input plays the line,
    # so the walk follows it in long runs, and a run going on longer than its placed pitches leaves the range
    rise = [60 + k // 2 + 2 * (k % 2) for k in range(48)]
    line = [p + 24 for p in rise + rise[::-1]]
    learn_melody(live, line * 2)
    live.apply_control("learning", False)
    t, notes = 0.0, []
    for i, p in enumerate(line * 2):
        notes += feed(live, percept(1000 + i, p, t), t)
        notes += live.tick(t + 0.12)
        t += 0.25
    memory = np.array([0] + line * 2)
    assert len(notes) >= 100
    assert all(48 <= n.pitch <= 66 for n in notes), sorted({n.pitch for n in notes})  # the range itself, no tolerance
    kept = moved = 0
    for a, b in zip(notes, notes[1:]):
        if b.source_state == a.source_state + 1:  # a forward step: the memory's interval, or it moved by octaves
            step, learned = b.pitch - a.pitch, int(memory[b.source_state] - memory[a.source_state])
            assert (step - learned) % 12 == 0, (a.pitch, b.pitch, learned)
            kept += step == learned
            moved += step != learned
    assert moved >= 1 and kept >= 20 * moved, (kept, moved)  # a run did leave the range, and moved only then


def test_a_session_log_replays_to_the_same_midi_bytes(tmp_path):
    from services.midi_out.render import render_notes
    from services.oracle.player.replay import replay_session
    from services.oracle.player.session import SessionLog, make_stage

    config = MusicHalConfig().with_overrides({"generation.seed": 5, "oracle.rebuild_every_events": 8})
    clock = {"t": 0.0}
    log = SessionLog(tmp_path / "s.jsonl", config=config, clock=lambda: clock["t"])
    live = LiveOracle(config, make_stage(config), session=log)  # as the actor does for a logged session
    notes, t = [], 0.0
    for i, p in enumerate(C_MAJOR * 3):
        clock["t"] = t
        if i == 20:
            live.apply_control("density", 1.5, t)
        notes += feed(live, percept(i, p, t), t, early=(i % 5 == 0))
        notes += live.tick(t + 0.1)
        t += 0.3
    for k in range(50):
        clock["t"] = t + 0.1 * k
        notes += live.tick(t + 0.1 * k)
    log.write("stop")
    log.close()
    assert live.stage.counters["rebuilds"] + live.stage.counters["reestimates"] >= 2  # rebuilds were adopted
    result = replay_session(tmp_path / "s.jsonl")
    assert result.notes and result.identical
    live_bytes = [bytes(m) for _, m in render_notes(notes, config, t_start=0.0).events]
    replay_bytes = [bytes(m) for _, m in render_notes(result.notes, config, t_start=0.0).events]
    assert live_bytes == replay_bytes and len(live_bytes) > 40


def test_gated_percepts_are_neither_learned_nor_listened_to():
    live = make_live(mode="imitate")
    learn_melody(live, C_MAJOR)
    n = live.stage.walk.n_states
    influences = live.player.counters["influences"]
    feed(live, percept(50, 61, 1.0), 1.0, gated=True)
    assert live.stage.walk.n_states == n and live.player.counters["influences"] == influences
    feed(live, percept(51, 61, 1.2), 1.2, early=True)  # an early view influences but is never learned
    assert live.stage.walk.n_states == n and live.player.counters["influences"] == influences + 1


def test_beat_aligned_steps_fall_on_the_tracked_grid():
    live = make_live(mode="lead")
    learn_melody(live, C_MAJOR * 3, ioi=0.45)  # the memory's own time is off the input's grid
    t = 100.0
    for i, p in enumerate(C_MAJOR):  # the input: one onset every 0.5 s (120 BPM), phase 100.0
        live.on_percept(percept(200 + i, p, t), t, early=True)
        t += 0.5
    assert live.tempo.bpm == pytest.approx(120.0, rel=0.01)
    free = run_clock(live, t, t + 5.0)
    offsets = [((n.t_on - 100.0) / 0.25) % 1.0 for n in free[2:]]
    assert max(min(o, 1 - o) for o in offsets) > 0.05  # on its own time the player is off the grid
    assert live.apply_control("beat", True, t + 5.0)["beat"] is True
    aligned = run_clock(live, t + 5.0, t + 10.0)
    offsets = [((n.t_on - 100.0) / 0.25) % 1.0 for n in aligned[1:]]
    assert aligned and max(min(o, 1 - o) for o in offsets) < 0.02
    assert live.apply_control("tempo", 2.0)["tempo"] == 2.0 and live.apply_control("wait", True)["wait"] is True


def test_events_wait_for_their_own_deadline_and_a_local_answer_is_not_unannounced():
    from shared.messages import Event

    live = make_live(mode="imitate")
    default_s = live.config.cluster.encoder_deadline_ms / 1000.0

    def event(i: int) -> Event:
        return Event(event_id=i, onset_sample=0, window_start=0, window_end=480, sample_rate_hz=48000)

    live.on_event(event(1), 10.0)  # the configured deadline
    live.on_event(event(2), 10.0, deadline_s=0.05)  # a remote link's adaptive one (shorter here)
    live.on_event(event(3), 10.0, deadline_s=0.05)
    assert live.seconds_to_next(10.0) <= 0.05 + 1e-9
    assert [e.event_id for e in live.expired(10.06)] == [2, 3]  # only the short deadlines have passed
    assert live.waiting_for(1) and live.expired(10.0 + default_s - 1e-6) == []
    # an event answered another way (the encoder is down): taken off the waiting list, answered as announced
    taken = live.take(1)
    assert taken is not None and taken.event_id == 1 and not live.waiting_for(1) and live.take(1) is None
    feed(live, percept(1, 64, 10.1), 10.1, event=taken, announced=True)
    feed(live, percept(2, 65, 10.2), 10.2, event=event(2), announced=True)  # an expired one, answered locally
    assert live.counters["unannounced"] == 0 and live.counters["percepts"] == 2
    feed(live, percept(9, 67, 10.3), 10.3)  # a percept no event announced (replay, tests) is still counted
    assert live.counters["unannounced"] == 1


@pytest.mark.parametrize("gate_mode", ["content", "time"])
def test_the_input_gate_drops_echoes_of_own_notes_and_keeps_the_musician(gate_mode):
    from shared.messages import Event

    config = MusicHalConfig().with_overrides(
        {"generation.mode": "lead", "control.input_gate": True, "control.gate_mode": gate_mode}
    )
    live = LiveOracle(config, OracleMemory(config, background=False))
    learn_melody(live, C_MAJOR)
    notes = run_clock(live, 0.0, 3.0)
    assert notes, "lead plays alone"
    own = notes[-1]  # sounding (with the gate's margins) at its own note-on
    at = own.t_on + 0.01

    def onset(i: int, pitch: int, at: float = at) -> int:
        before = live.counters["gated"]
        event = Event(event_id=i, onset_sample=0, window_start=0, window_end=480, sample_rate_hz=48000, t_detected=at)
        feed(live, percept(i, pitch, at), at, event=event, onset_t=at)
        return live.counters["gated"] - before

    sounding = {n.pitch % 12 for n in notes if n.t_on - 0.02 <= at <= n.t_off + 0.25}
    other = next(
        p
        for p in range(own.pitch + 1, own.pitch + 12)  # not a sounding pitch class nor a low harmonic
        if p % 12 not in sounding and all((p - s) % 12 not in (0, 7, 4) for s in sounding)
    )
    assert onset(100, own.pitch) == 1  # our own note heard back: an echo in either mode
    # the musician during our note's sustain (away from its attack, where echoes are): kept by the echo-aware gate
    sustain = own.t_on + 0.15
    assert onset(101, other, sustain) == (1 if gate_mode == "time" else 0)
    assert live.gate.sounding(at) and live.gate.sounding(sustain)  # the decisions were made while own notes sounded
