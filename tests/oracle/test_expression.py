"""A note's expression from its memory state, its bytes per MIDI profile, and dynamics that follow the musician.

Pure and deterministic: fake clocks (plain numbers) for the scheduler and the live oracle, a ListSink for bytes.
"""

from __future__ import annotations

import dataclasses
import heapq

import numpy as np
import pytest

from services.midi_out.engine import ListSink, MidiOutStage
from services.midi_out.scheduler import NoteScheduler, note_actions
from services.oracle.memory.states import StateInfo
from services.oracle.memory.store import OracleMemory
from services.oracle.player.expression import NEUTRAL, note_expression, with_dynamics
from services.oracle.player.live import LiveOracle
from shared.config import MidiConfig, MusicHalConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent, Percept, message_from_bytes, message_to_bytes
from shared.pitch import midi_to_hz as hz
from testkit.clock import FakeClock
from testkit.percepts import pitched_percept


def state(*, f0_hz: float, f0_cents, pressure=(90,) * 8, timbre: int = 64, notes=()) -> StateInfo:
    return StateInfo(
        state=1,
        token=0,
        onset_s=0.0,
        duration_s=0.5,
        velocity=80,
        f0_hz=f0_hz,
        chroma_peaks=(),
        event_id=0,
        source="",
        notes=notes,
        pressure=tuple(pressure),
        f0_cents=tuple(f0_cents),
        timbre=timbre,
    )


# ------------------------------------------------------------------------------------------ the expression function
def test_a_30_cent_deviation_gives_a_starting_bend_of_0_30_semitones():
    e = note_expression(state(f0_hz=hz(69.3), f0_cents=(30.0,) * 8), learned_pitch=69, duration_s=0.4)
    assert e.bend_semitones == pytest.approx(0.30)
    assert e.bend_curve == ()  # a steady tone: nothing to automate
    flat = note_expression(state(f0_hz=hz(69.0), f0_cents=(-12.0,) * 8), learned_pitch=69, duration_s=0.4)
    assert flat.bend_semitones == pytest.approx(-0.12)


def test_a_glide_state_gives_a_rising_bend_automation():
    glide = tuple(-100.0 + 200.0 * i / 7 for i in range(8))  # G#4 .. A#4 around the slice's f0 A4
    e = note_expression(state(f0_hz=hz(69), f0_cents=glide), learned_pitch=69, duration_s=0.45)
    values = [e.bend_semitones] + [v for _, v in e.bend_curve]
    times = [t for t, _ in e.bend_curve]
    assert e.bend_semitones == pytest.approx(-1.0, abs=0.01)
    assert len(values) >= 10 and all(b > a for a, b in zip(values, values[1:]))  # rising throughout
    assert values[-1] > 0.8
    assert all(0.0 < t < 0.45 for t in times) and times == sorted(times)  # inside the note's life
    # played twice as fast (density x tempo = 2), the glide takes half the time
    fast = note_expression(state(f0_hz=hz(69), f0_cents=glide), learned_pitch=69, duration_s=0.225, speed=2.0)
    assert fast.bend_curve[-1][1] == pytest.approx(e.bend_curve[-1][1], abs=0.02)
    assert fast.bend_curve[-1][0] < 0.225


def test_a_note_off_the_f0_path_takes_its_transcribed_bend_or_none():
    s = state(f0_hz=hz(48), f0_cents=(0.0,) * 8, notes=((64, 0.0, 0.4, 80, 20.0, 40.0),))  # f0: the bass
    assert note_expression(s, learned_pitch=67, duration_s=0.4).bend_semitones == 0.0  # no bend of the bass's
    e = note_expression(s, learned_pitch=64, duration_s=0.4)
    assert e.bend_semitones == pytest.approx(0.0, abs=0.01)  # median +20 cents, glide 40: from 0 to +40
    assert e.bend_curve[-1][1] == pytest.approx(0.4, abs=0.03)


def test_pressure_follows_the_envelope_and_timbre_is_cc74():
    crescendo = (20, 30, 40, 50, 60, 70, 80, 90)
    e = note_expression(
        state(f0_hz=0.0, f0_cents=(0.0,) * 8, pressure=crescendo, timbre=101), learned_pitch=None, duration_s=0.5
    )
    assert e.pressure == 20 and e.timbre == 101 and e.bend_semitones == 0.0 and e.bend_curve == ()
    values = [v for _, v in e.pressure_curve]
    assert values == sorted(values) and values[-1] == 90
    old = state(f0_hz=hz(60), f0_cents=(), pressure=())  # a model without expression: neutral
    assert note_expression(old, learned_pitch=60, duration_s=0.3) == NEUTRAL
    with pytest.raises(ParameterError):
        note_expression(old, learned_pitch=60, duration_s=0.3, speed=0.0)


# ------------------------------------------------------------------------------------------ messages
def test_note_event_round_trips_with_curves_and_rejects_bad_ones():
    note = NoteEvent(
        note_id=3,
        pitch=64,
        velocity=90,
        t_on=1.0,
        t_off=1.5,
        bend_semitones=-0.3,
        pressure=40,
        timbre=99,
        bend_curve=((0.02, -0.25), (0.04, 0.125)),
        pressure_curve=((0.02, 50), (0.3, 70)),
    )
    back = message_from_bytes(message_to_bytes(note))
    assert back == note and back.bend_curve == note.bend_curve and back.pressure_curve == note.pressure_curve
    assert isinstance(back.pressure_curve[0][1], int)
    assert (
        message_from_bytes(message_to_bytes(NoteEvent(note_id=1, pitch=60, velocity=1, t_on=0, t_off=1))).bend_curve
        == ()
    )
    for bad in (
        {"bend_curve": ((0.2, 1.0), (0.1, 2.0))},
        {"pressure_curve": ((0.1, 200),)},
        {"bend_curve": ((-0.1, 0.0),)},
        {"bend_semitones": float("nan")},
    ):
        with pytest.raises(ParameterError):
            NoteEvent(note_id=1, pitch=60, velocity=90, t_on=0.0, t_off=1.0, **bad)


# ------------------------------------------------------------------------------------------ bytes per profile
GLIDE_NOTE = NoteEvent(
    note_id=1,
    pitch=69,
    velocity=100,
    t_on=10.0,
    t_off=10.3,
    bend_semitones=0.3,
    pressure=64,
    timbre=90,
    bend_curve=((0.1, 1.0), (0.2, 2.0), (0.3, 3.0)),
    pressure_curve=((0.15, 100),),
)


def play(profile: str, note: NoteEvent = GLIDE_NOTE) -> list[list[int]]:
    """Every action of ``note`` in due order, as the scheduler fires them (the clock set to each due time)."""
    sink = ListSink()
    stage = MidiOutStage(MidiConfig(profile=profile, member_channels=4), sink)
    stage.start()
    sink.clear()
    for _due, action, value in sorted(note_actions(note), key=lambda a: a[0]):
        if action == "on":
            stage.note_on(note)
        elif action == "off":
            stage.note_off(note.note_id)
        else:
            stage.automate(note.note_id, action, value)
    return sink.messages


def test_mpe_bytes_bend_on_the_notes_channel_before_its_note_on_then_automation():
    messages = play("mpe")
    # 0.3 semitones at the 48-semitone MPE range: 8192 + round(0.3 / 48 * 8192) = 8243 -> LSB 51, MSB 64
    assert messages[:4] == [[0xE1, 51, 64], [0xD1, 64], [0xB1, 74, 90], [0x91, 69, 100]]
    bend = lambda s: 8192 + round(s / 48 * 8192)  # noqa: E731
    assert messages[4:] == [
        [0xE1, bend(1.0) & 0x7F, bend(1.0) >> 7],
        [0xD1, 100],
        [0xE1, bend(2.0) & 0x7F, bend(2.0) >> 7],
        [0x81, 69, 0],
    ]  # 0.3 s point: at t_off, never sent


@pytest.mark.parametrize("profile, channel", [("gm-safe", 1), ("mono", 0)])
def test_gm_safe_and_mono_bytes_have_no_per_note_bend_or_pressure(profile, channel):
    messages = play(profile)
    assert messages == [[0x90 | channel, 69, 100], [0x80 | channel, 69, 0]]
    assert not any(m[0] & 0xF0 in (0xE0, 0xD0) for m in messages)


def fire_due(scheduler: NoteScheduler, clock: FakeClock, until: float) -> list[tuple[float, str]]:
    """The scheduler thread's body, driven by hand on a fake clock: fire every queued action due by ``until``."""
    fired = []
    while scheduler._heap and scheduler._heap[0][0] <= until:
        due, _, action, note, value = heapq.heappop(scheduler._heap)
        clock.t = due
        scheduler._fire(due, action, note, value)
        fired.append((round(due, 6), action))
    return fired


def test_scheduler_sends_automation_in_time_and_never_after_the_note_off_or_a_panic():
    clock = FakeClock(0.0)
    sink = ListSink()
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=4), sink, clock=clock)
    stage.start()
    scheduler = NoteScheduler(stage, clock=clock)
    note = dataclasses.replace(GLIDE_NOTE, t_on=0.0, t_off=0.3)
    assert [a for _, a, _ in note_actions(note)] == [
        "on",
        "bend",
        "bend",
        "pressure",
        "off",
    ]  # the 0.3 s point: dropped
    scheduler._running = True  # accept notes without the thread: fire_due plays its part
    scheduler.schedule(note)
    assert fire_due(scheduler, clock, 10.0) == [
        (0.0, "on"),
        (0.1, "bend"),
        (0.15, "pressure"),
        (0.2, "bend"),
        (0.3, "off"),
    ]
    assert scheduler.counters["automation_sent"] == 3 and scheduler.counters["sent"] == 2
    # a panic in the middle of a note: its later automation finds no note and sends nothing
    scheduler.schedule(dataclasses.replace(note, note_id=2, t_on=1.0, t_off=1.3))
    assert fire_due(scheduler, clock, 1.1) == [(1.0, "on"), (1.1, "bend")]
    stage.panic()
    before = len(sink.messages)
    assert fire_due(scheduler, clock, 10.0) == [(1.15, "pressure"), (1.2, "bend"), (1.3, "off")]
    assert sink.messages[before:] == []  # no bend, pressure or note-off after the panic
    assert scheduler.counters["automation_dropped"] == 2
    scheduler._running = False


# ------------------------------------------------------------------------------------------ dynamics
def live_percept(i: int, pitch: int, onset_s: float, velocity: int) -> Percept:
    return pitched_percept(i, pitch, onset_s, velocity=velocity, expression_frames=8)


def run(live: LiveOracle, start: float, end: float, step: float = 0.01) -> list[NoteEvent]:
    notes, t = [], start
    while t < end:
        notes += live.tick(t)
        t += step
    return notes


def dynamics_run(follow: bool) -> tuple[list[int], list[int], list[int], list[int]]:
    # the melody alone: the bass and comping voices play at their own velocity share of the melody's
    config = MusicHalConfig().with_overrides(
        {
            "generation.mode": "lead",
            "generation.follow_dynamics": follow,
            "generation.dynamics_half_life_s": 1.0,
            "voices.bass": False,
            "voices.comping": False,
        }
    )
    live = LiveOracle(config, OracleMemory(config, background=False))
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    for i, p in enumerate(pitches * 3):  # a memory learned at velocity 80
        live.stage.learn(live_percept(i, p, 0.25 * i, 80))
    t, k = 100.0, 100
    for p in pitches:  # the musician plays loud ...
        live.on_percept(live_percept(k, p, t, 110), t)
        t, k = t + 0.5, k + 1
    loud = run(live, t, t + 3.0)
    t += 3.0
    for p in pitches * 2:  # ... then soft
        live.on_percept(live_percept(k, p, t, 30), t)
        t, k = t + 0.5, k + 1
    soft = run(live, t, t + 3.0)
    return (
        [n.velocity for n in loud],
        [n.velocity for n in soft],
        [n.pressure for n in loud],
        [n.pressure for n in soft],
    )


def test_velocity_follows_the_input_loudness_softer_input_softer_notes():
    loud, soft, loud_pressure, soft_pressure = dynamics_run(follow=True)
    assert len(loud) >= 5 and len(soft) >= 5
    assert min(loud) > 80 and max(soft) < 50  # memory at 80: the musician's 110 and 30 move it both ways
    assert np.mean(soft_pressure) < np.mean(loud_pressure)
    off_loud, off_soft, *_ = dynamics_run(follow=False)
    assert set(off_loud) == set(off_soft) == {80}  # the knob off: velocities as learned


def test_with_dynamics_scales_velocity_and_pressure_within_midi_range():
    note = dataclasses.replace(GLIDE_NOTE, velocity=100, pressure=100, pressure_curve=((0.1, 120),))
    louder = with_dynamics(note, 1.5)
    assert (louder.velocity, louder.pressure, louder.pressure_curve) == (127, 127, ((0.1, 127),))
    softer = with_dynamics(note, 0.25)
    assert (softer.velocity, softer.pressure, softer.pressure_curve) == (25, 25, ((0.1, 30),))
    assert with_dynamics(note, 1.0) is note and with_dynamics(dataclasses.replace(note, velocity=1), 0.0).velocity == 1
    with pytest.raises(ParameterError):
        with_dynamics(note, float("nan"))
