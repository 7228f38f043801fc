"""The hung-note checker the full-stack tests use: it must fail on each kind of broken stream, and pass a good one."""
from __future__ import annotations

from testkit.midi import expected_panic, note_pairing_problems, stop_panic_received


def on(channel, pitch, velocity=90):
    return [0x90 | channel, pitch, velocity]


def off(channel, pitch):
    return [0x80 | channel, pitch, 0]


START = expected_panic()  # the start-up panic every midi_out sends first
STOP = expected_panic()


def test_well_paired_stream_passes_including_velocity_zero_offs_and_the_same_pitch_on_two_channels():
    played = [on(0, 60), on(1, 60), off(0, 60), [0x91, 60, 0], on(0, 60), [0xB0, 7, 100], off(0, 60)]
    assert note_pairing_problems(START + played + STOP) == []


def test_missing_note_off_fails_although_the_stop_panic_would_silence_it():
    problems = note_pairing_problems(START + [on(0, 60), on(2, 64), off(2, 64)] + STOP)
    assert len(problems) == 1 and "(0, 60)" in problems[0] and "never ended" in problems[0]


def test_double_on_fails():
    problems = note_pairing_problems(START + [on(3, 62), on(3, 62), off(3, 62)] + STOP)
    assert len(problems) == 1 and "double note-on (3, 62)" in problems[0]


def test_stray_off_fails():
    problems = note_pairing_problems(START + [on(0, 60), off(0, 60), off(0, 60), off(5, 70)] + STOP)
    assert [p.split(" at ")[0] for p in problems] == ["stray note-off (0, 60)", "stray note-off (5, 70)"]


def test_off_on_another_channel_does_not_end_a_note():
    problems = note_pairing_problems(START + [on(0, 60), off(1, 60)] + STOP)
    assert any("stray note-off (1, 60)" in p for p in problems) and any("(0, 60)" in p and "never ended" in p
                                                                          for p in problems)


def test_a_mid_stream_panic_may_cut_notes_only_when_allowed():
    stream = START + [on(0, 60)] + expected_panic() + [on(0, 60), off(0, 60)] + STOP
    assert len(note_pairing_problems(stream)) == 1
    assert note_pairing_problems(stream, allowed_cuts=1) == []
    # a panic with nothing sounding (like the start-up one) is never a cut
    assert note_pairing_problems(START + expected_panic() + [on(0, 60), off(0, 60)] + STOP) == []


def test_missing_stop_panic_is_reported_and_a_lone_cc123_does_not_end_a_note():
    assert note_pairing_problems([on(0, 60), off(0, 60)]) == [
        "no stop panic (CC123/CC120 on all 16 channels) after the last note-on"]
    assert note_pairing_problems(START + [on(0, 60), off(0, 60)]) == [
        "no stop panic (CC123/CC120 on all 16 channels) after the last note-on"]
    assert note_pairing_problems(START + [on(0, 60), off(0, 60)], require_stop_panic=False) == []
    assert len(note_pairing_problems(START + [on(0, 60)], require_stop_panic=False)) == 1  # never ended
    assert note_pairing_problems([on(0, 60), off(0, 60)], require_stop_panic=False) == []
    assert note_pairing_problems(START + [on(0, 60), [0xB0, 123, 0], off(0, 60)] + STOP) == []
    problems = note_pairing_problems(START + [on(0, 60), [0xB0, 123, 0]] + STOP)
    assert len(problems) == 1 and "never ended" in problems[0]


def test_only_the_stream_before_the_stop_panic_is_play_and_nothing_may_start_after_it():
    problems = note_pairing_problems(START + [on(0, 60), off(0, 60)] + STOP + [on(0, 61)])
    assert problems[0].startswith("no stop panic") and "(0, 61)" in problems[1] and "never ended" in problems[1]
    problems = note_pairing_problems(START + [on(0, 60)] + STOP + [off(0, 60)])
    assert len(problems) == 1 and "never ended" in problems[0]


def test_stop_panic_received_only_when_a_full_panic_follows_the_last_note_on():
    assert not stop_panic_received(START + [on(0, 60), off(0, 60)])
    assert not stop_panic_received(START + [on(0, 60), off(0, 60)] + STOP[:-1])
    assert stop_panic_received(START + [on(0, 60), off(0, 60)] + STOP)
