"""midi_out's trace of the last notes sent: what ``traced_notes`` answers, in memory held from the start."""

from __future__ import annotations

import tracemalloc

from services.midi_out.actor import NoteTrace
from shared.messages import NoteEvent


def _note(i: int, voice: str = "melody") -> NoteEvent:
    return NoteEvent(
        note_id=i,
        pitch=40 + i % 40,
        velocity=90,
        t_on=0.0,
        t_off=0.1,
        voice=voice,
        source_state=i // 2,
        source_event_id=i // 3,
    )


def test_the_trace_keeps_the_last_notes_oldest_first_with_their_fields():
    trace = NoteTrace(4)
    voices = ["melody", "bass", "comping", "descant"]  # a name the player does not use yet is kept too
    for i in range(6):
        trace.add(_note(i, voices[i % 4]), channel=i + 1)
    notes = trace.notes()
    assert [n["note_id"] for n in notes] == [2, 3, 4, 5]
    assert notes[0] == {
        "note_id": 2,
        "pitch": 42,
        "channel": 3,
        "voice": "comping",
        "source_state": 1,
        "source_event_id": 0,
    }
    assert [n["voice"] for n in notes] == ["comping", "descant", "melody", "bass"]
    assert NoteTrace(4).notes() == []


def test_the_trace_takes_no_memory_per_note():
    """A deque of tuples took ~150 B per note until full (10,000 notes: half an hour), a slope in a soak."""
    trace = NoteTrace(10_000)
    trace.add(_note(0), channel=1)
    notes = [_note(i, ("melody", "bass", "comping")[i % 3]) for i in range(1, 10_001)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for note in notes:
            trace.add(note, channel=2)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 50_000, f"{after - before} bytes kept for 10,000 notes"
    assert len(trace.notes()) == 10_000 and trace.notes()[-1]["note_id"] == 10_000
