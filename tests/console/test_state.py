"""The console's state, pure: the frame it shows, the health panel, the control table as widgets, and the player's
view read without changing a single later decision."""

from __future__ import annotations

import numpy as np

from services.console.state import ConsoleState, control_specs, health
from services.oracle.memory.store import OracleMemory
from services.oracle.player.live import LiveOracle
from services.oracle.player.view import activity_strip, player_view
from shared.config import MusicHalConfig
from shared.controls import CONTROLS
from shared.messages import EventDescriptors, Percept


def note(note_id, pitch, t_on, *, voice="melody", state=-1, dur=0.4, **stamps):
    return {
        "note_id": note_id,
        "pitch": pitch,
        "velocity": 80,
        "t_on": t_on,
        "t_off": t_on + dur,
        "voice": voice,
        "source_state": state,
        "stamps": stamps,
    }


def test_the_frame_holds_the_roll_window_scheduled_notes_moves_and_verdicts():
    state = ConsoleState(roll_seconds=5.0)
    state.add_event(1, 1.0)  # too old at now = 10 (10 - 5 = 5)
    state.add_event(7, 8.0)
    state.add_event(8, 9.0)
    d = EventDescriptors(onset_s=0, duration_s=0.5, rms=0.1, velocity=70, f0_hz=440.0, f0_confidence=0.9)
    state.add_percept(7, d)  # no slice notes: its f0 as one pitch
    chord = EventDescriptors(
        onset_s=0, duration_s=0.5, rms=0.1, velocity=70, f0_hz=0, f0_confidence=0, notes=((60, 0, 0.5, 80, 0, 0),)
    )
    state.add_percept(8, chord)
    state.set_player({"state": 12, "n_states": 40, "verdicts": [[7, False], [8, True]]}, at=9.9)
    for i, (s, t) in enumerate([(3, 8.0), (4, 8.5), (20, 9.0), (21, 10.04)]):
        state.add_note(note(i + 1, 60 + i, t, state=s, reaction=1.0) if i == 2 else note(i + 1, 60 + i, t, state=s))
    state.add_note(note(9, 40, 9.5, voice="bass", state=21))
    frame = state.frame(10.0)
    assert [(h["id"], h["pitches"], h["gated"]) for h in frame["heard"]] == [(7, [69], False), (8, [60], True)]
    assert [n["id"] for n in frame["played"]] == [1, 2, 3, 4, 9]
    assert frame["scheduled"] == 1  # note 4 starts after now: drawn ahead of the now-line
    assert [n["reaction"] for n in frame["played"]] == [False, False, True, False, False]
    assert [(m["from"], m["to"], m["jump"]) for m in frame["moves"]] == [
        (None, 3, False),
        (3, 4, False),
        (4, 20, True),  # a jump in the memory
        (20, 21, False),
    ]  # the bass's source state is no melody move
    assert frame["player"]["state"] == 12 and frame["player_age_s"] == 0.1
    assert state.frame(10.1)["seq"] == frame["seq"] + 1


def test_health_reads_the_stack_stats_and_says_lost():
    stats = {
        "capture": {"counters": {"events": 12, "samples_lost": 2}},
        "encoder": {"node_id": "abcdef0123", "local": True, "counters": {"dropped_backlog": 1, "exceptions": 0}},
        "oracle": {"counters": {"percepts": 11, "stage_learned": 10, "gated": 3}, "encoder_lost": False},
        "midi_out": {
            "counters": {"notes_received": 30, "scheduler_clocked_late_on_arrival": 1, "scheduler_clocked_notes": 20},
            "latency_ms": {"pipeline": {"p50": 2.0, "p99": 7.5}, "onset_to_note": {"p95": 40.0}},
        },
    }
    h = health(stats)
    assert (h["events"], h["percepts"], h["learned"], h["notes"], h["gated"]) == (12, 11, 10, 30, 3)
    assert h["encoder"] == "abcdef01 (local)" and h["drops"] == 3
    assert (h["latency_p50_ms"], h["latency_p99_ms"], h["reaction_p95_ms"]) == (2.0, 7.5, 40.0)
    assert (h["late_midi"], h["clocked_notes"]) == (1, 20)
    stats["oracle"]["encoder_lost"] = True
    assert health(stats)["encoder"] == "LOST"
    stats["encoder"] = {"unavailable": "no answer"}
    assert health(stats)["encoder"] == "LOST" and health(stats)["unavailable"] == ["encoder"]


def test_every_performer_control_of_the_table_is_a_widget_with_its_value():
    specs = {c["name"]: c for c in control_specs({"mode": "lead", "voices": {"bass": {"range": [30, 50]}}})}
    assert set(specs) == {name for name, row in CONTROLS.items() if row.performer}
    assert specs["mode"]["bounds"] == ["imitate", "contrast", "lead"] and specs["mode"]["value"] == "lead"
    assert specs["voice/bass/range"]["value"] == [30, 50]
    assert specs["panic"]["kind"] == "command" and specs["density"]["bounds"] == [0.0, 4.0]


def test_the_strip_keeps_each_bins_peak():
    assert activity_strip(np.zeros(0)) == []
    strip = activity_strip(np.r_[np.zeros(999), 5.0], bins=100)
    assert len(strip) == 100 and strip[-1] == 1.0 and max(strip[:-1]) == 0.0  # one active state is not averaged away
    assert activity_strip(np.array([-2.0, 1.0])) == [1.0, 0.5]  # contrast's negative activity by its magnitude


def _percept(i: int, rng) -> Percept:
    d = EventDescriptors(
        onset_s=i * 0.3,
        duration_s=0.3,
        rms=0.1,
        velocity=64,
        f0_hz=220.0 * 2 ** ((i * 5 % 12) / 12),
        f0_confidence=0.9,
        chroma_peaks=((i * 5) % 12,),
    )
    return Percept(event_id=i, token=i % 4, features=rng.standard_normal(22).astype(np.float32), descriptors=d)


def _run(*, look: bool) -> tuple[list[tuple], list[dict]]:
    config = MusicHalConfig().with_overrides({"generation.seed": 3})
    live = LiveOracle(config, OracleMemory(config, background=False))
    rng = np.random.default_rng(0)
    notes, views = [], []
    for i in range(40):
        t = 0.3 * i
        notes += live.on_percept(_percept(i, rng), t)
        live.learn_queued()
        if look:
            # between decisions, at a later time than the next decision's (a viewer's clock need not be the walk's)
            views.append(player_view(live, t + 5.0))
        notes += live.tick(t + 0.15)
    held = live.player.activity(12.5)  # the activity at the end, as the walk holds it
    return [(n.pitch, n.t_on, n.source_state, n.voice) for n in notes], views, held


def test_reading_the_player_changes_no_decision():
    plain, _, held = _run(look=False)
    looked, views, held_looked = _run(look=True)
    assert looked == plain and len(plain) > 20
    assert np.array_equal(held_looked, held)  # the activity the walk chooses from is untouched
    last = views[-1]
    assert last["n_states"] > 30 and 0 <= last["state"] < last["n_states"]
    assert len(last["strip"]) == min(256, last["n_states"]) and max(last["strip"]) == 1.0
    assert last["settings"]["mode"] == "imitate" and last["steps"]["steps"] > 0
