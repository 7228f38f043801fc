"""Channel allocator: explicit cases plus hypothesis state sequences (and the same through MidiOutStage bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.midi_out.allocator import GM_DRUM_CHANNEL, ChannelAllocator, member_channel_indices
from services.midi_out.engine import ListSink, MidiOutStage
from shared.config import MidiConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from testkit.midi import ReceiverModel


def test_member_channels_per_profile():
    assert member_channel_indices("mpe", 15) == tuple(range(1, 16))
    assert member_channel_indices("mpe", 3) == (1, 2, 3)
    gm = member_channel_indices("gm-safe", 15)
    assert GM_DRUM_CHANNEL not in gm and len(gm) == len(set(gm)) == 15
    assert member_channel_indices("mono", 15) == (0,)


def test_least_recently_released_first():
    alloc = ChannelAllocator("mpe", 3)
    assert [alloc.note_on(i, 60 + i).channel for i in (1, 2, 3)] == [1, 2, 3]
    alloc.note_off(2)
    alloc.note_off(1)
    assert alloc.note_on(4, 70).channel == 2  # released first
    assert alloc.note_on(5, 71).channel == 1


def test_steal_oldest_when_full():
    alloc = ChannelAllocator("gm-safe", 2)
    alloc.note_on(1, 60)
    alloc.note_on(2, 62)
    plan = alloc.note_on(3, 64)
    assert plan.stolen and [v.note_id for v in plan.ended] == [1]
    assert plan.channel == plan.ended[0].channel
    assert alloc.note_off(1) is None and alloc.unknown_note_offs == 1
    assert alloc.steals == 1


def test_mono_retrigger_same_pitch():
    alloc = ChannelAllocator("mono", 15)
    alloc.note_on(1, 60)
    plan = alloc.note_on(2, 60)
    assert plan.retriggered and [v.note_id for v in plan.ended] == [1]
    assert alloc.note_off(1) is None  # the older note's own note-off must not cut note 2
    assert alloc.note_off(2).pitch == 60
    assert alloc.retriggers == 1 and len(alloc) == 0


def test_bad_input_raises():
    with pytest.raises(ParameterError):
        ChannelAllocator("drums", 4)
    with pytest.raises(ParameterError):
        ChannelAllocator("mpe", 0)
    alloc = ChannelAllocator("mpe", 4)
    alloc.note_on(1, 60)
    with pytest.raises(ParameterError):
        alloc.note_on(1, 61)  # ids are unique while sounding
    with pytest.raises(ParameterError):
        alloc.note_on(2, 128)


# (True, pitch) starts a new note; (False, k) ends the k-th started note (mod count), maybe twice
operations = st.lists(
    st.one_of(st.tuples(st.just(True), st.integers(58, 62)), st.tuples(st.just(False), st.integers(0, 1000))),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(profile=st.sampled_from(["mpe", "gm-safe", "mono"]), member_channels=st.integers(1, 15), ops=operations)
def test_allocator_invariants(profile, member_channels, ops):
    alloc = ChannelAllocator(profile, member_channels)
    allowed = set(member_channel_indices(profile, member_channels))
    started: list[int] = []
    ended_count: dict[int, int] = {}
    for is_on, value in ops:
        if is_on:
            note_id = len(started)
            plan = alloc.note_on(note_id, value)
            started.append(note_id)
            for voice in plan.ended:
                ended_count[voice.note_id] = ended_count.get(voice.note_id, 0) + 1
        elif started:
            voice = alloc.note_off(started[value % len(started)])
            if voice is not None:
                ended_count[voice.note_id] = ended_count.get(voice.note_id, 0) + 1
        sounding = list(alloc.sounding.values())
        channels = [v.channel for v in sounding]
        assert set(channels) <= allowed
        assert GM_DRUM_CHANNEL not in channels or profile == "mpe"
        if profile == "mono":
            keys = [(v.channel, v.pitch) for v in sounding]
            assert len(keys) == len(set(keys))  # one pitch sounds once per channel
        else:
            assert len(channels) == len(set(channels))  # no two sounding notes share a member channel
            assert len(sounding) <= member_channels
    for voice in alloc.end_all():
        ended_count[voice.note_id] = ended_count.get(voice.note_id, 0) + 1
    assert ended_count == {note_id: 1 for note_id in started}  # every note ends, exactly once


@settings(max_examples=60, deadline=None)
@given(profile=st.sampled_from(["mpe", "gm-safe", "mono"]), member_channels=st.integers(1, 15), ops=operations)
def test_stage_bytes_every_note_ends(profile, member_channels, ops):
    """Through MidiOutStage: a synth fed the bytes never sees an ambiguous double note-on, and is silent after all
    note-offs (no panic needed); gm-safe never touches channel 10."""
    sink = ListSink()
    stage = MidiOutStage(MidiConfig(profile=profile, member_channels=member_channels), sink)
    stage.start()
    started: list[int] = []
    for is_on, value in ops:
        if is_on:
            note_id = len(started)
            stage.note_on(
                NoteEvent(
                    note_id=note_id,
                    pitch=value,
                    velocity=80,
                    t_on=0.0,
                    t_off=1.0,
                    bend_semitones=0.5,
                    pressure=10,
                    timbre=70,
                )
            )
            started.append(note_id)
        elif started:
            stage.note_off(started[value % len(started)])
    for note_id in started:
        stage.note_off(note_id)
    model = ReceiverModel().feed_all(sink.messages)
    assert model.on == set()
    assert model.double_on == [] and model.stray_off == []
    assert model.note_ons == model.note_offs == len(started)
    if profile == "gm-safe":
        assert GM_DRUM_CHANNEL not in model.channels_used
    stage.close()


def test_gm_safe_voices_play_on_channels_of_their_own():
    from services.midi_out.allocator import voice_channel_map
    from shared.config import MidiConfig

    alloc = ChannelAllocator("gm-safe", 15, voice_channels=voice_channel_map(MidiConfig(profile="gm-safe")))
    assert 10 not in alloc.pool and 11 not in alloc.pool and 9 not in alloc.channels
    assert {10, 11} <= set(alloc.channels)  # the setup reaches them too
    melody = [alloc.note_on(i, 60 + i).channel for i in range(1, 14)]  # 13 melody notes at once: the pool's 13
    assert len(set(melody)) == 13 and not {9, 10, 11} & set(melody)
    bass = alloc.note_on(20, 40, "bass")
    assert bass.channel == 10 and not bass.channel_shared and not bass.ended
    chord = [alloc.note_on(30 + k, p, "comping") for k, p in enumerate((52, 55, 60))]
    assert [p.channel for p in chord] == [11, 11, 11]
    assert [p.channel_shared for p in chord] == [False, True, True]
    again = alloc.note_on(40, 55, "comping")  # the same pitch on the same channel: a retrigger, never a double on
    assert again.retriggered and [v.note_id for v in again.ended] == [31]
    assert alloc.note_off(31) is None
    steal = alloc.note_on(50, 80)  # the pool is full: the oldest *melody* note goes, never the bass or the chord
    assert steal.stolen and [v.note_id for v in steal.ended] == [1] and steal.channel == melody[0]
    assert alloc.voice(20) is not None and alloc.voice(30) is not None
    with pytest.raises(ParameterError):
        ChannelAllocator("gm-safe", 2, voice_channels={"bass": 3, "comping": 3})
