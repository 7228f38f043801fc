"""MidiOutStage over a real JACK MIDI connection: exact bytes per profile, note pairing, same pitch twice, panic."""

from __future__ import annotations

import pytest

from services.midi_out.engine import ListSink, MidiOutStage
from shared.config import MidiConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from testkit.midi import ReceiverModel, expected_panic, expected_rpn

pytestmark = pytest.mark.jack


def note(note_id, pitch, *, bend=0.0, pressure=0, timbre=64, velocity=100):
    return NoteEvent(
        note_id=note_id,
        pitch=pitch,
        velocity=velocity,
        t_on=0.0,
        t_off=1.0,
        bend_semitones=bend,
        pressure=pressure,
        timbre=timbre,
    )


def make_stage(jack_link, **config):
    return MidiOutStage(MidiConfig(**config), jack_link.output, owns_sink=False)


def started(stage, jack_link):
    stage.start()
    count = stage.counters["messages_sent"]
    return jack_link.reader.wait_for(count)


def test_mpe_start_panic_then_mcm_then_rpn0(jack_link):
    stage = make_stage(jack_link, profile="mpe", member_channels=3, bend_range_semitones=48)
    received = started(stage, jack_link)
    expected = expected_panic() + expected_rpn(0, 6, 3)
    for channel in (1, 2, 3):
        expected += expected_rpn(channel, 0, 48)
    assert received == expected


def test_gm_safe_start_rpn0_two_semitones_no_channel_10(jack_link):
    stage = make_stage(jack_link, profile="gm-safe", member_channels=10)
    received = started(stage, jack_link)
    expected = expected_panic()
    for channel in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11):  # index 9 = MIDI channel 10 skipped
        expected += expected_rpn(channel, 0, 2)
    assert received == expected


def test_mono_start(jack_link):
    stage = make_stage(jack_link, profile="mono")
    assert started(stage, jack_link) == expected_panic() + expected_rpn(0, 0, 2)


def test_mpe_note_on_sets_expression_then_note_off(jack_link):
    stage = make_stage(jack_link, profile="mpe", member_channels=4)
    setup = started(stage, jack_link)
    stage.note_on(note(7, 61, bend=1.5, pressure=30, timbre=90))
    stage.note_off(7)
    received = jack_link.reader.wait_for(len(setup) + 5)[len(setup) :]
    # 8192 + 1.5/48*8192 = 8448 on the note's own member channel (index 1), before its note-on
    assert received == [[0xE1, 0x00, 0x42], [0xD1, 30], [0xB1, 74, 90], [0x91, 61, 100], [0x81, 61, 0]]


@pytest.mark.parametrize("profile, channel", [("gm-safe", 1), ("mono", 0)])
def test_gm_safe_and_mono_play_velocity_only(jack_link, profile, channel):
    stage = make_stage(jack_link, profile=profile, member_channels=4)
    setup = started(stage, jack_link)
    stage.note_on(note(7, 61, bend=1.0, pressure=30, timbre=90))
    assert stage.automate(7, "bend", 0.5) is False and stage.automate(7, "pressure", 60) is False
    stage.note_off(7)
    received = jack_link.reader.wait_for(len(setup) + 2)[len(setup) :]
    assert received == [[0x90 | channel, 61, 100], [0x80 | channel, 61, 0]]
    assert stage.counters["expression_skipped"] == 1 and stage.counters["automation_dropped"] == 2


def test_reused_channel_gets_new_starting_values(jack_link):
    stage = make_stage(jack_link, profile="mpe", member_channels=1)
    setup = started(stage, jack_link)
    stage.note_on(note(1, 60, bend=12.0, pressure=100, timbre=10))
    stage.note_off(1)
    stage.note_on(note(2, 62))  # same member channel: bend, pressure, CC74 reset to the new note's values
    received = jack_link.reader.wait_for(len(setup) + 9)[len(setup) :]
    assert received[5:] == [[0xE1, 0x00, 0x40], [0xD1, 0], [0xB1, 74, 64], [0x91, 62, 100]]


@pytest.mark.parametrize("profile", ["mpe", "gm-safe", "mono"])
def test_panic_ends_sounding_notes_and_all_channels(jack_link, profile):
    stage = make_stage(jack_link, profile=profile, member_channels=4)
    stage.start()
    stage.note_on(note(1, 60))
    channel_b = stage.note_on(note(2, 64))
    before = stage.counters["messages_sent"]
    stage.panic()
    received = jack_link.reader.wait_for(before + 2 + 32)[before:]
    channel_a = received[0][0] & 0x0F
    assert received[:2] == [[0x80 | channel_a, 60, 0], [0x80 | channel_b, 64, 0]]
    assert received[2:] == expected_panic()
    assert stage.sounding == {}


@pytest.mark.parametrize("profile", ["mpe", "gm-safe", "mono"])
def test_same_pitch_twice_at_once_ends_correctly(jack_link, profile):
    stage = make_stage(jack_link, profile=profile, member_channels=4)
    stage.start()
    jack_link.reader.wait_for(stage.counters["messages_sent"])
    jack_link.reader.clear()
    start = stage.counters["messages_sent"]
    stage.note_on(note(1, 60))
    stage.note_on(note(2, 60))  # same pitch while note 1 sounds
    mid = stage.counters["messages_sent"] - start
    stage.note_off(1)  # must not silence note 2 (MPE: other channel; mono: already retriggered)
    after_first_off = stage.counters["messages_sent"] - start
    stage.note_off(2)
    received = jack_link.reader.wait_for(stage.counters["messages_sent"] - start)
    model = ReceiverModel().feed_all(received[:after_first_off])
    assert model.double_on == [] and model.stray_off == []
    assert len(model.on) == 1  # exactly note 2 still sounding after note 1's note-off
    model.feed_all(received[after_first_off:])
    assert model.on == set() and model.stray_off == []
    assert model.note_ons == 2 and model.note_offs == 2
    if profile == "mono":
        assert stage.counters["retriggers"] == 1
        assert received[1] == [0x80, 60, 0]  # (velocity only in mono) the retrigger's note-off comes first ...
        assert received[mid - 1] == [0x90, 60, 100]  # ... and the new note-on last
    else:
        assert len({m[0] & 0x0F for m in received if m[0] & 0xF0 == 0x90}) == 2  # two member channels


def test_steal_sends_note_off_before_reuse(jack_link):
    stage = make_stage(jack_link, profile="mpe", member_channels=2)
    stage.start()
    jack_link.reader.wait_for(stage.counters["messages_sent"])
    jack_link.reader.clear()
    start = stage.counters["messages_sent"]
    for note_id, pitch in ((1, 60), (2, 62), (3, 64)):
        stage.note_on(note(note_id, pitch))
    received = jack_link.reader.wait_for(stage.counters["messages_sent"] - start)
    assert received[8] == [0x81, 60, 0]  # the oldest note (id 1, channel 2) ends first ...
    assert received[12] == [0x91, 64, 100]  # ... then note 3 takes its channel
    assert stage.note_off(1) is False and stage.counters["steals"] == 1


def test_close_is_idempotent_and_panics(jack_link):
    sink = ListSink()
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=2), sink)
    stage.start()
    stage.note_on(note(1, 60))
    sink.clear()
    stage.close()
    stage.close()
    assert sink.messages == [[0x81, 60, 0]] + expected_panic()
    assert sink.closed
    with pytest.raises(ParameterError):
        stage.note_on(note(2, 62))
    assert stage.note_off(1) is False


def test_restart_panics_first(jack_link):
    stage = make_stage(jack_link, profile="gm-safe", member_channels=2)
    stage.start()
    stage.note_on(note(1, 60))
    before = stage.counters["messages_sent"]
    stage.start()  # e.g. actor restarted: silence first, then setup again
    received = jack_link.reader.wait_for(stage.counters["messages_sent"])[before:]
    assert received[: 1 + 32] == [[0x81, 60, 0]] + expected_panic()
    # the two member channels, then the bass's and the comping's own channels (MIDI 11 and 12, indices 10 and 11)
    assert received[33:] == expected_rpn(1, 0, 2) + expected_rpn(2, 0, 2) + expected_rpn(10, 0, 2) + expected_rpn(
        11, 0, 2
    )


def test_bad_arguments_raise():
    with pytest.raises(ParameterError):
        MidiOutStage(object(), ListSink())
    with pytest.raises(ParameterError):
        MidiOutStage(MidiConfig(), object())
    stage = MidiOutStage(MidiConfig(), ListSink())
    with pytest.raises(ParameterError):
        stage.note_on("C4")
    with pytest.raises(ParameterError):
        stage.process(3.5)
