"""MidiOutStage's own port swap (replace_sink) and profile hand-over (hand_over), which the midi_out actor calls."""

from __future__ import annotations

import threading

from services.midi_out import protocol
from services.midi_out.engine import ListSink, MidiOutStage
from shared.config import MidiConfig
from shared.messages import NoteEvent
from testkit.midi import expected_panic


def _note(note_id: int, pitch: int) -> NoteEvent:
    return NoteEvent(note_id=note_id, pitch=pitch, velocity=90, t_on=0.0, t_off=1.0)


def test_replace_sink_closes_the_old_port_and_restarts_on_the_new_one():
    old, new = ListSink(), ListSink()
    stage = MidiOutStage(MidiConfig(profile="gm-safe"), old)
    stage.start()
    stage.note_on(_note(1, 60))
    channel = next(iter(stage.sounding.values())).channel
    stage.replace_sink(new)
    assert old.closed and not new.closed and stage.sink is new
    # the note sounding on the old port is ended (on the new one), then panic and the profile's setup
    assert new.messages == [protocol.note_off(channel, 60), *expected_panic(), *stage.setup_messages()]
    before = len(old.messages)
    stage.note_on(_note(2, 62))
    assert len(old.messages) == before and new.messages[-1][1] == 62


def test_hand_over_silences_starts_the_successor_and_attaches_under_the_lock():
    sink = ListSink()
    old = MidiOutStage(MidiConfig(profile="gm-safe"), sink)
    old.start()
    old.note_on(_note(1, 60))
    successor = MidiOutStage(MidiConfig(profile="mpe"), sink)
    seen: dict = {}

    def attach(stage: MidiOutStage) -> None:
        # another thread cannot take the old stage's lock now: no note goes through it between here and the switch
        probe = threading.Thread(target=lambda: seen.setdefault("free", old._lock.acquire(blocking=False)))
        probe.start()
        probe.join()
        seen["stage"] = stage
        seen["messages"] = list(sink.messages)

    old.hand_over(successor, attach)
    assert seen["free"] is False and seen["stage"] is successor
    assert not old.sounding and successor.counters["starts"] == 1
    # by the time the caller attaches: the old profile's panic, then the successor's own panic and MPE setup
    tail = [*expected_panic(), *expected_panic(), *successor.setup_messages()]
    assert seen["messages"][-len(tail) :] == tail
