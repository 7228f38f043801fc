"""Voices through the whole live stack: a rendered chorale in, melody, bass and comping out on their gm-safe channels
over a real JACK MIDI port, each in its range, every note paired per channel in the stream played before the stop."""

from __future__ import annotations

import pytest

from services.oracle.player.session import read_session
from shared.config import MusicHalConfig
from testkit.audio import chorale_notes, render_midi_notes
from testkit.midi import (
    TimedJackReader,
    hung_note_problems,
    note_on_messages,
    panic_starts,
    scheduled_notes,
    stop_stats_problems,
)
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]

BASS, COMPING = 10, 11  # channel indices of MIDI channels 11 and 12 (midi.bass_channel, midi.comping_channel)


def test_melody_bass_and_comping_on_their_gm_safe_channels_in_range_and_paired(jack_server, ray_local, tmp_path):
    from services.stack import LiveStack

    wav = render_midi_notes(chorale_notes("bach/bwv269", seconds=14.0), tmp_path / "chorale.wav")
    reader = TimedJackReader()
    port = reader.open_virtual("in")
    session = tmp_path / "session.jsonl"
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "gm-safe",
            "generation.seed": 4,
            "generation.mode": "lead",  # its own clock: it plays through the whole file, not only on answered onsets
            "voices.melody": True,
            "voices.bass": True,
            "voices.comping": True,  # pinned: the test is about all three
            # a four-voice chorale, chords of at most two notes: the polyphony limit binds on most slices
            "voices.bass_density": 0.5,
            "voices.comping_density": 0.5,
            "voices.max_polyphony": 2,
            "control.input_gate": False,
        }
    )  # the input is a file: nothing to protect
    stack = LiveStack(config, input_file=str(wav), session_log=str(session))
    try:
        stack.start()

        def played(channel: int, count: int) -> bool:
            return sum((m[0] & 0x0F) == channel for m in note_on_messages(reader.wait_for(0, timeout_s=0))) >= count

        assert wait_until(lambda: played(BASS, 4) and played(COMPING, 12), timeout_s=60), "bass or comping never played"
        assert wait_until(stack.finished, timeout_s=60), "the input file was not played to its end"
        final = stack.stop(graceful=True, drain_s=5.0)
    finally:
        stack.stop(graceful=False)
        received = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()

    # the stream played: from the start-up panic's end to the stop's panic
    starts = panic_starts(received)
    assert len(starts) >= 2, "no start-up and stop panic"
    # a double note-on, a stray note-off, a note only the panic ended or one longer than scheduled (+ 2 s): none
    assert hung_note_problems(timed, scheduled=scheduled_notes(session)) == []
    assert stop_stats_problems(final) == []  # the drained stop ended no note, none was stolen
    played = received[starts[0] + 32 : starts[-1]]
    by_channel: dict[int, list[int]] = {}
    for m in note_on_messages(played):
        by_channel.setdefault(m[0] & 0x0F, []).append(m[1])
    # per channel in the played stream: as many note-offs as note-ons (each note ended by its own note-off)
    for channel in by_channel:
        offs = sum(
            1
            for m in played
            if m[0] & 0x0F == channel and ((m[0] & 0xF0) == 0x80 or ((m[0] & 0xF0) == 0x90 and m[2] == 0))
        )
        assert offs == len(by_channel[channel]), (channel, offs, len(by_channel[channel]))
    assert 9 not in by_channel, "gm-safe never plays channel 10"
    bass, comping = by_channel.get(BASS, []), by_channel.get(COMPING, [])
    melody = [p for c, ps in by_channel.items() if c not in (BASS, COMPING) for p in ps]
    assert len(melody) >= 15 and len(bass) >= 4 and len(comping) >= 12, (len(melody), len(bass), len(comping))
    v, g = config.voices, config.generation
    assert all(v.bass_range[0] <= p <= v.bass_range[1] for p in bass), sorted(set(bass))
    assert all(v.comping_range[0] <= p <= v.comping_range[1] for p in comping), sorted(set(comping))
    assert all(g.melody_range[0] <= p <= g.melody_range[1] for p in melody), sorted(set(melody))
    # comping plays chords: several of its notes sound together on its channel
    sounding, widest = set(), 0
    for m in played:
        if m[0] & 0x0F != COMPING:
            continue
        if (m[0] & 0xF0) == 0x90 and m[2] > 0:
            sounding.add(m[1])
        elif (m[0] & 0xF0) in (0x80, 0x90):
            sounding.discard(m[1])
        widest = max(widest, len(sounding))
    assert 2 <= widest <= 2 * v.max_polyphony, widest  # a chord, and at most two chords overlapping at a change
    # the chords sent (comping notes decided for one onset) keep the limit, and it binds: most have two notes
    chords: dict[float, int] = {}
    for record in read_session(session):
        for note in record["notes"] if record["kind"] == "notes" else ():
            if note["voice"] == "comping":
                chords[note["t_on"]] = chords.get(note["t_on"], 0) + 1
    assert chords and max(chords.values()) <= v.max_polyphony, chords
    assert sum(size == v.max_polyphony for size in chords.values()) >= len(chords) / 2, chords
