"""Live MIDI input as events: note-on/off messages → early and full percepts of the symbolic view, no analysis wait.

:class:`LiveNoteInput` is pure logic (no Ray, no port): the oracle actor feeds it the messages the MIDI input port
received (with their arrival time) and gets back what to hand the decision object, the same calls an audio onset
makes:

* at the note-on that opens an event: an **early** percept (its first note's pitch: influence and the reaction at
  once, never learned — as the audio early view), so the reaction does not wait for the chord window;
* once the chord window (``features.chord_window_ms``) has passed: the **full** event and its percept — the notes
  grouped by :class:`~services.encoder.symbolic.NoteGrouper` exactly as a MIDI file is in training, tokenised by the
  stack's symbolic perception (:meth:`~services.encoder.stage.EncoderStage.percepts_for`: the model's quantizer, or
  learned live) — which is learned.

The early and the full percept share the event id (one onset, two views). MIDI event ids count from
:data:`MIDI_EVENT_IDS` so they never meet the audio events' ids when both inputs play. An event's duration is
unknown when it is made (the next onset completes it in the memory, as for audio); notes still held then last so far.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.encoder.stage import EncoderStage
from services.encoder.symbolic import NoteGroup, NoteGrouper, descriptors_from_group, symbolic_view
from services.encoder.views import HybridPerceptionModule
from shared.errors import ParameterError
from shared.messages import Event, Percept

__all__ = [
    "MIDI_EVENT_IDS",
    "midi_record",
    "read_midi_record",
    "parse_note_message",
    "LiveNoteInput",
    "symbolic_stage",
]

MIDI_EVENT_IDS = 1 << 40  # MIDI events' ids start here (audio events count from 0)
_RECORD_TIME = "<d"  # a ``midi_in`` ring record: the arrival time (monotonic seconds, little-endian float64) …
_RECORD_TIME_BYTES = struct.calcsize(_RECORD_TIME)  # … then the message's bytes
DUE_MARGIN_S = 1e-4  # a window has passed strictly after its end (NoteGrouper.close_due): wake just after it


def midi_record(arrival_s: float, message: Sequence[int]) -> bytes:
    """A ``midi_in`` ring record: the arrival time, then the message (:func:`read_midi_record` reads it).

    >>> read_midi_record(midi_record(12.5, [0x90, 60, 100]))
    (12.5, [144, 60, 100])
    """
    return struct.pack(_RECORD_TIME, float(arrival_s)) + bytes(message)


def read_midi_record(payload: bytes) -> tuple[float, list[int]]:
    """``(arrival time, message)`` of a :func:`midi_record`."""
    (arrival,) = struct.unpack_from(_RECORD_TIME, payload)
    return float(arrival), list(payload[_RECORD_TIME_BYTES:])


def parse_note_message(data: Sequence[int]) -> tuple[str, int, int, int] | None:
    """``("on"|"off", pitch, velocity, channel)`` of a note message (a note-on of velocity 0 is an off); None for
    any other message (controllers, clock, sysex).

    >>> parse_note_message([0x91, 60, 100]), parse_note_message([0x80, 60, 0]), parse_note_message([0xB0, 1, 2])
    (('on', 60, 100, 1), ('off', 60, 0, 0), None)
    """
    if len(data) < 3:
        return None
    status, pitch, velocity = int(data[0]), int(data[1]) & 0x7F, int(data[2]) & 0x7F
    kind, channel = status & 0xF0, status & 0x0F
    if kind == 0x90 and velocity > 0:
        return "on", pitch, velocity, channel
    if kind in (0x80, 0x90):
        return "off", pitch, 0, channel
    return None


def symbolic_stage(config: Any, model: Any = None, *, node_id: str = "") -> EncoderStage:
    """The tokeniser of MIDI events: the model's fitted symbolic perception, or a live-learning one.

    Raises
    ------
    ParameterError
        The model does not listen with the symbolic view (an audio model: MIDI notes have no audio to analyse).
    """
    if model is not None and "symbolic" not in model.views:
        raise ParameterError(
            f"MIDI input needs a model of the symbolic view; this one listens with {'+'.join(model.views)} "
            "(train one from MIDI files or with musichal-train --symbolic)"
        )
    perception = HybridPerceptionModule(
        vocabulary_size=model.vocabulary_size if model is not None else config.quantizer.vocabulary_size,
        l2_normalize=model.l2_normalize if model is not None else config.quantizer.l2_normalize,
        symbolic=True,
    )
    return EncoderStage(perception, model, node_id=node_id)


class LiveNoteInput:
    """Note messages (with arrival times, monotonic seconds) → ``(event, percept, early)`` for the decision object.

    Parameters
    ----------
    stage:
        Tokenises full events (:func:`symbolic_stage`).
    chord_window_s, include_drums:
        The grouping (``features.chord_window_ms``, ``features.midi_drums``), as in training.
    sample_rate_hz, origin_s:
        Event sample indices are ``(arrival − origin_s) × sample_rate_hz`` (the audio events' sample clock when
        ``origin_s`` is the moment the stack started listening).
    """

    def __init__(
        self,
        stage: EncoderStage,
        *,
        chord_window_s: float = 0.030,
        include_drums: bool = False,
        sample_rate_hz: int = 48_000,
        origin_s: float = 0.0,
        node_id: str = "",
    ) -> None:
        if sample_rate_hz <= 0:
            raise ParameterError(f"sample_rate_hz must be > 0, got {sample_rate_hz}")
        self.stage = stage
        self.grouper = NoteGrouper(chord_window_s=chord_window_s, include_drums=include_drums)
        self.sample_rate_hz = int(sample_rate_hz)
        self.origin_s = float(origin_s)
        self.node_id = node_id
        self.next_id = MIDI_EVENT_IDS
        self._open_event: Event | None = None
        self.counters = {"messages": 0, "notes": 0, "events": 0, "early": 0, "ignored": 0}

    def _event(self, group: NoteGroup) -> Event:
        sample = max(0, int(round((group.onset_s - self.origin_s) * self.sample_rate_hz)))
        event = Event(
            event_id=self.next_id,
            onset_sample=sample,
            window_start=sample,
            window_end=sample + 1,  # the onset is the arrival: onset_t(event) = t_detected
            sample_rate_hz=self.sample_rate_hz,
            strength=1.0,
            t_detected=group.onset_s,
            t_sent=group.onset_s,
            source="midi",
        )
        self.next_id += 1
        return event

    def _descriptors(self, group: NoteGroup, now_s: float):
        d = descriptors_from_group(group, duration_s=max(0.0, now_s - group.onset_s), now_s=now_s)
        # onsets on the stack's sample clock, as an audio event's (the group keeps monotonic arrival times)
        return dataclasses.replace(d, onset_s=max(0.0, group.onset_s - self.origin_s))

    def on_message(self, time_s: float, data: Sequence[int]) -> list[tuple[Event, Percept, bool]]:
        """One received message: the early percept of a new event, the full one of an event it closes (or none)."""
        self.counters["messages"] += 1
        out = self.due(time_s)
        note = parse_note_message(data)
        if note is None:
            self.counters["ignored"] += 1
            return out
        kind, pitch, velocity, channel = note
        if kind == "off":
            self.grouper.note_off(time_s, pitch, channel)
            return out
        closed, opened = self.grouper.note_on(time_s, pitch, velocity, channel)
        if closed is not None:  # a note-on after the window, before due() saw it pass
            out.append(self._full(closed, time_s))
        if opened and self.grouper.open is not None:
            self.counters["notes"] += 1
            event = self._event(self.grouper.open)
            self._open_event = event
            descriptors = self._descriptors(self.grouper.open, time_s)
            self.counters["early"] += 1
            early = Percept(
                event_id=event.event_id,
                token=0,
                features=np.zeros(0, dtype=np.float32),
                descriptors=descriptors,
                view="symbolic",
                node_id=self.node_id,
                stamps={"t_detected": event.t_detected},
            )
            out.append((event, early, True))
        elif self.grouper.open is not None and kind == "on":
            self.counters["notes"] += 1
        return out

    def _full(self, group: NoteGroup, now_s: float) -> tuple[Event, Percept, bool]:
        event = self._open_event
        if event is None:
            raise ParameterError("a note group closed that was never opened")
        self._open_event = None
        descriptors = self._descriptors(group, now_s)
        percept = self.stage.percepts_for([event], [(descriptors, {"symbolic": symbolic_view(descriptors)})])[0]
        percept.stamps.update({"t_detected": event.t_detected, "t_ready": now_s})
        self.counters["events"] += 1
        return event, percept, False

    def due(self, now_s: float) -> list[tuple[Event, Percept, bool]]:
        """The full event whose chord window has passed at ``now_s`` (an empty list when none)."""
        group = self.grouper.close_due(now_s)
        return [] if group is None else [self._full(group, now_s)]

    def seconds_to_due(self, now_s: float) -> float | None:
        """Seconds until the open event's chord window passes (None when no event is open)."""
        group = self.grouper.open
        if group is None:
            return None
        return max(0.0, group.onset_s + self.grouper.chord_window_s - now_s) + DUE_MARGIN_S
