"""The hung-note checker the full-stack tests use: it must fail on each kind of broken stream, and pass a good one."""

from __future__ import annotations

import pytest

from testkit.midi import (
    HUNG_NOTE_SLACK_S,
    ScheduledNote,
    expected_panic,
    hung_note_problems,
    note_pairing_problems,
    note_timing_problems,
    played_notes,
    stop_panic_received,
    stop_stats_problems,
)


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
    assert any("stray note-off (1, 60)" in p for p in problems) and any(
        "(0, 60)" in p and "never ended" in p for p in problems
    )


def test_a_mid_stream_panic_may_cut_notes_only_when_allowed():
    stream = START + [on(0, 60)] + expected_panic() + [on(0, 60), off(0, 60)] + STOP
    assert len(note_pairing_problems(stream)) == 1
    assert note_pairing_problems(stream, allowed_cuts=1) == []
    # a panic with nothing sounding (like the start-up one) is never a cut
    assert note_pairing_problems(START + expected_panic() + [on(0, 60), off(0, 60)] + STOP) == []


def test_missing_stop_panic_is_reported_and_a_lone_cc123_does_not_end_a_note():
    assert note_pairing_problems([on(0, 60), off(0, 60)]) == [
        "no stop panic (CC123/CC120 on all 16 channels) after the last note-on"
    ]
    assert note_pairing_problems(START + [on(0, 60), off(0, 60)]) == [
        "no stop panic (CC123/CC120 on all 16 channels) after the last note-on"
    ]
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


# ---------------------------------------------------------------------------------------- timed: each note's length
def timed(events):
    """``[(t, [messages...]), ...]`` → ``[(t, message), ...]`` (messages of one entry arrive together)."""
    return [(t, m) for t, messages in events for m in messages]


def scheduled_line(n, *, step_s=0.4, duration_s=0.34, pitches=(60, 62, 64)):
    starts = [10.0 + k * step_s for k in range(n)]
    return [ScheduledNote(pitches[k % len(pitches)], t, t + duration_s) for k, t in enumerate(starts)]


def played_as_scheduled(notes, channels=(1, 2, 3, 4), *, late_s=0.0):
    """What a working midi_out sends for ``notes``: each on at t_on, its own off at t_off (+ ``late_s``)."""
    events = []
    for k, note in enumerate(notes):
        channel = channels[k % len(channels)]
        events += [(note.t_on, [on(channel, note.pitch)]), (note.t_off + late_s, [off(channel, note.pitch)])]
    return sorted(events, key=lambda e: e[0])


def played_without_note_offs(notes, channels=(1, 2, 3, 4), *, stop_s):
    """What midi_out sends when its scheduler never sends a note-off: the engine still ends a stolen note first
    (when all channels are busy) and ends every sounding note by its own note-off before the stop's panic."""
    events, sounding = [], []  # sounding: (channel, pitch), oldest first
    free = list(channels)
    for note in notes:
        if not free:
            channel, pitch = sounding.pop(0)
            events.append((note.t_on, [off(channel, pitch)]))
            free.append(channel)
        channel = free.pop(0)
        sounding.append((channel, note.pitch))
        events.append((note.t_on, [on(channel, note.pitch)]))
    events.append((stop_s, [off(c, p) for c, p in sounding] + STOP))
    return events


def test_a_scheduler_that_never_sends_a_note_off_passes_the_pairing_check_but_not_the_timed_one():
    notes = scheduled_line(12, step_s=0.8)  # four channels: each note is stolen 3.2 s after it started
    stream = timed([(9.0, START)] + played_without_note_offs(notes, stop_s=notes[-1].t_off + 3 * HUNG_NOTE_SLACK_S))
    assert note_pairing_problems([m for _, m in stream]) == []  # order alone cannot see it
    problems = note_timing_problems(stream, scheduled=notes)
    assert len(problems) == 12 and all("hung until a steal or a stop" in p for p in problems), problems
    assert len(hung_note_problems(stream, scheduled=notes)) == 12
    assert len(note_timing_problems(stream, max_duration_s=0.34)) == 12


def test_a_working_scheduler_passes_with_each_note_late_by_less_than_the_slack():
    notes = scheduled_line(12)
    stream = timed(
        [(9.0, START)] + played_as_scheduled(notes, late_s=0.9 * HUNG_NOTE_SLACK_S) + [(notes[-1].t_off + 2.0, STOP)]
    )
    assert hung_note_problems(stream, scheduled=notes) == []
    late = timed(
        [(9.0, START)] + played_as_scheduled(notes, late_s=1.1 * HUNG_NOTE_SLACK_S) + [(notes[-1].t_off + 2.0, STOP)]
    )
    assert len(note_timing_problems(late, scheduled=notes)) == 12


def test_each_note_is_held_to_its_own_scheduled_duration():
    # a long note (3 s) and a short one on the same pitch: the k-th note-on of a pitch is its k-th scheduled note
    notes = [ScheduledNote(60, 10.0, 13.0), ScheduledNote(60, 13.5, 13.6), ScheduledNote(64, 10.0, 10.2)]
    good = timed(
        [
            (9.0, START),
            (10.0, [on(1, 60), on(2, 64)]),
            (10.2, [off(2, 64)]),
            (13.0, [off(1, 60)]),
            (13.5, [on(1, 60)]),
            (13.6, [off(1, 60)]),
            (15.0, STOP),
        ]
    )
    assert hung_note_problems(good, scheduled=notes) == []
    assert len(note_timing_problems(good, max_duration_s=0.2)) == 1  # one bound for all: the 3 s note is too long
    # the short one held as long as the long one: hung
    bad = timed(
        [
            (9.0, START),
            (10.0, [on(1, 60), on(2, 64)]),
            (10.2, [off(2, 64)]),
            (13.0, [off(1, 60)]),
            (13.5, [on(1, 60)]),
            (16.5, [off(1, 60)]),
            (17.0, STOP),
        ]
    )
    problems = note_timing_problems(bad, scheduled=notes)
    assert len(problems) == 1 and "(1, 60)" in problems[0] and "scheduled 0.100 s" in problems[0]


def test_the_stops_own_note_offs_count_when_they_come_late_and_unscheduled_notes_are_reported():
    notes = scheduled_line(2)
    # the stop's panic ends the second note (its note-off just before CC123) 5 s after it started: hung
    stream = timed(
        [(9.0, START), (10.0, [on(1, 60)]), (10.34, [off(1, 60)]), (10.4, [on(2, 62)]), (15.4, [off(2, 62)] + STOP)]
    )
    problems = hung_note_problems(stream, scheduled=notes)
    assert len(problems) == 1 and "(2, 62)" in problems[0]
    # a note-on midi_out was never asked for
    stream = timed(
        [
            (9.0, START),
            (10.0, [on(1, 60)]),
            (10.34, [off(1, 60)]),
            (10.5, [on(1, 70)]),
            (10.6, [off(1, 70)]),
            (11.0, STOP),
        ]
    )
    problems = note_timing_problems(stream, scheduled=notes)
    assert len(problems) == 1 and "matches no scheduled note" in problems[0]


def test_played_notes_end_at_their_own_note_off_or_at_a_panic():
    notes = played_notes(START + [on(1, 60), on(2, 62), off(1, 60)] + expected_panic() + [on(1, 64)] + STOP)
    assert [(n.channel, n.pitch, n.off_index is not None) for n in notes] == [
        (1, 60, True),
        (2, 62, False),
        (1, 64, False),
    ]


def test_timing_check_needs_exactly_one_bound():
    with pytest.raises(ValueError):
        note_timing_problems([], scheduled=[], max_duration_s=1.0)
    with pytest.raises(ValueError):
        note_timing_problems([])


def test_stop_stats_problems_counts_the_notes_a_graceful_stop_had_to_end_and_steals():
    assert stop_stats_problems({"midi_out": {"counters": {"sounding": 0, "steals": 0}}}) == []
    assert len(stop_stats_problems({"midi_out": {"counters": {"sounding": 2, "steals": 0}}})) == 1
    assert len(stop_stats_problems({"midi_out": {"counters": {"sounding": 0, "steals": 3}}})) == 1
    assert stop_stats_problems({"midi_out": {"counters": {"sounding": 0, "steals": 3}}}, steals_expected=True) == []
    assert stop_stats_problems({}) == ["no midi_out figures from the graceful stop (its drain did not finish)"]
