"""Render decided notes offline exactly as the live MIDI-out would play them (a session's replay, tests).

:func:`render_notes` schedules notes like the live MIDI-out (same ordering: due time, then arrival order) through a
:class:`~services.midi_out.engine.MidiOutStage` into an in-memory :class:`~services.midi_out.recorder.SmfRecorder`,
so the note messages equal the live recording byte for byte (see :func:`services.oracle.player.replay.replay_session`).
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from typing import Any

from services.midi_out.engine import ListSink, MidiOutStage
from services.midi_out.recorder import SmfRecorder
from services.midi_out.scheduler import NOTE_OFF, NOTE_ON, note_actions
from shared.config import MusicHalConfig
from shared.messages import NoteEvent

__all__ = ["render_notes"]


def render_notes(
    notes: list[NoteEvent],
    config: MusicHalConfig,
    *,
    t_start: float,
    controls: list[dict[str, Any]] = (),
    t_end: float | None = None,
):
    """Play ``notes`` like the live MIDI-out would, into an in-memory recorder; returns the :class:`SmfRecorder`.

    Order: start (panic + profile setup) at ``t_start``; then note-ons, expression automation and note-offs by due
    time, ties in arrival order (:func:`~services.midi_out.scheduler.note_actions`), as :class:`NoteScheduler`; logged
    ``mute`` and ``profile`` controls apply at their
    times (a muted note-on is dropped; a profile switch panics and sends the new setup); close (panic) at the end.
    """
    clock = {"t": float(t_start)}
    recorder = SmfRecorder(clock=lambda: clock["t"])
    midi = replace(config.midi, record_path=None)
    stage = MidiOutStage(midi, ListSink(), recorder=recorder, clock=lambda: clock["t"])
    stage.start()
    heap: list[tuple[float, int, str, Any, Any]] = []
    seq = 0
    for note in notes:
        for due, action, value in note_actions(note):
            heapq.heappush(heap, (due, seq, action, note, value))
            seq += 1
    changes = sorted((c for c in controls if c["name"] in ("mute", "profile")), key=lambda c: c["t"])
    muted = False
    while heap:
        due, _, action, note, value = heapq.heappop(heap)
        if t_end is not None and due > t_end:
            break
        while changes and changes[0]["t"] <= due:
            change = changes.pop(0)
            clock["t"] = change["t"]
            if change["name"] == "mute":
                muted = bool(change["value"])
                if muted:
                    stage.panic()
            else:
                stage.close()
                stage = MidiOutStage(
                    replace(midi, profile=change["value"]), ListSink(), recorder=recorder, clock=lambda: clock["t"]
                )
                stage.start()
        clock["t"] = due
        if action == NOTE_ON:
            if not muted:
                stage.note_on(note)
        elif action == NOTE_OFF:
            stage.note_off(note.note_id)
        else:
            stage.automate(note.note_id, action, value)
    if t_end is not None:
        clock["t"] = max(clock["t"], t_end)
    stage.panic()  # as the live MIDI-out's stop: the scheduler's panic, then close (panic again)
    stage.close()
    return recorder
