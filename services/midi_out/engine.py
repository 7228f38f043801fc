"""MidiOutStage: NoteEvents → raw MIDI messages through the channel allocator, with panic on every exit.

Pure logic: it writes ``list[int]`` messages to any ``sink`` with ``send(message)`` (an
:class:`~services.midi_out.ports.RtMidiOutput` or :class:`ListSink` in tests). Thread-safe: the scheduler
thread plays notes while another thread (signal handler, actor shutdown) may call :meth:`panic`/:meth:`close`.

Profiles
--------
- ``mpe``: start = panic, MPE Configuration Message (lower zone, N member channels), RPN 0 pitch-bend range
  (``config.bend_range_semitones``, MPE default 48) on every member channel.
- ``gm-safe``: start = panic, RPN 0 = ±2 semitones on every member channel (channel 10 never used); the bass
  and comping voices play on channels of their own (``midi.bass_channel`` 11, ``midi.comping_channel`` 12 by
  default; notes there share the channel, a same-pitch note is a retrigger), the melody rotates over the other
  member channels.
- ``mono``: start = panic, RPN 0 = ±2 on channel 1 (every note on it).

Expression is per note, so only the MPE profile carries it: before each note-on the note's member channel gets
its pitch bend (scaled to the profile's bend range, 48 semitones by default), channel pressure and CC74 (a reused
channel keeps the previous note's expression otherwise), and during the note :meth:`MidiOutStage.automate` sends its
bend and pressure automation on that channel (the scheduler times it; a point whose note no longer sounds is
dropped). ``gm-safe`` and ``mono`` play the same notes with velocity only: no per-note bend, pressure or CC74 (a
note with expression counts as ``expression_skipped``), so their ±2 bend range is never exceeded.

>>> from shared.config import MidiConfig
>>> from shared.messages import NoteEvent
>>> sink = ListSink()
>>> stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=2), sink)
>>> stage.start()
>>> sink.clear()
>>> stage.note_on(NoteEvent(note_id=1, pitch=60, velocity=100, t_on=0.0, t_off=1.0))  # channel index
1
>>> sink.messages
[[225, 0, 64], [209, 0], [177, 74, 64], [145, 60, 100]]
>>> stage.note_off(1), sink.messages[-1]
(True, [129, 60, 0])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from services.midi_out import protocol
from services.midi_out.allocator import ChannelAllocator, Voice, voice_channel_map
from services.midi_out.recorder import SmfRecorder
from shared.config import MidiConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent

__all__ = ["MidiSink", "ListSink", "MidiOutStage", "GM_BEND_RANGE_SEMITONES", "profile_bend_range"]

GM_BEND_RANGE_SEMITONES = 2


class MidiSink(Protocol):
    """Anything that takes one raw MIDI message at a time."""

    def send(self, message: list[int]) -> None: ...


class ListSink:
    """In-memory sink for pure tests: keeps every message sent."""

    def __init__(self) -> None:
        self.messages: list[list[int]] = []
        self.closed = False

    def send(self, message: list[int]) -> None:
        self.messages.append(list(message))

    def clear(self) -> None:
        self.messages.clear()

    def close(self) -> None:
        self.closed = True


def profile_bend_range(config: MidiConfig) -> int:
    """Pitch-bend range (semitones) a profile sets with RPN 0: the config's for mpe, ±2 for gm-safe and mono."""
    return config.bend_range_semitones if config.profile == "mpe" else GM_BEND_RANGE_SEMITONES


class MidiOutStage:
    """Turns note-ons/note-offs into MIDI bytes on ``sink`` for one profile.

    Parameters
    ----------
    config : MidiConfig
        Profile, member channels, bend range, optional ``record_path`` (an SMF written on :meth:`close`).
    sink : MidiSink
        Object with ``send(list[int])``; closed by :meth:`close` when it has ``close()`` and ``owns_sink``.
    recorder : SmfRecorder, optional
        Records every message sent; created automatically when ``config.record_path`` is set.
    clock : callable
        Monotonic time source for recording stamps.
    owns_sink : bool
        Whether :meth:`close` also closes the sink.
    """

    def __init__(
        self,
        config: MidiConfig,
        sink: MidiSink,
        *,
        recorder: SmfRecorder | None = None,
        clock: Callable[[], float] = time.monotonic,
        owns_sink: bool = True,
    ) -> None:
        if not isinstance(config, MidiConfig):
            raise ParameterError(f"config must be a MidiConfig, got {type(config).__name__}")
        if not callable(getattr(sink, "send", None)):
            raise ParameterError("sink must have a send(message) method")
        self.config = config
        self.sink = sink
        self.owns_sink = owns_sink
        self.clock = clock
        self.recorder = recorder if recorder is not None else (SmfRecorder(clock=clock) if config.record_path else None)
        self.allocator = ChannelAllocator(
            config.profile, config.member_channels, voice_channels=voice_channel_map(config)
        )
        self.bend_range_semitones = profile_bend_range(config)
        self._lock = threading.RLock()
        self._started = False
        self._closed = False
        self.counters: dict[str, int] = {
            "messages_sent": 0,
            "notes_on": 0,
            "notes_off": 0,
            "steals": 0,
            "retriggers": 0,
            "unknown_note_offs": 0,
            "bend_clamped": 0,
            "expression_skipped": 0,
            "panics": 0,
            "starts": 0,
            "automation_sent": 0,
            "automation_dropped": 0,
        }
        #: per-note expression (starting bend, pressure, CC74 and their automation): the MPE profile only
        self.per_note_expression = config.profile == "mpe"

    # ------------------------------------------------------------------------------------------- plumbing
    def _send(self, message: list[int]) -> None:
        self.sink.send(message)
        self.counters["messages_sent"] += 1
        if self.recorder is not None:
            self.recorder.record(message, t=self.clock())

    def _send_all(self, messages: list[list[int]]) -> None:
        for message in messages:
            self._send(message)

    def _check_open(self) -> None:
        if self._closed:
            raise ParameterError("MidiOutStage is closed")

    # ------------------------------------------------------------------------------------------- lifecycle
    def setup_messages(self) -> list[list[int]]:
        """The profile's setup (after the panic): MCM + RPN 0 per member channel, or RPN 0 ±2."""
        messages: list[list[int]] = []
        if self.config.profile == "mpe":
            messages += protocol.mpe_configuration_message(self.config.member_channels)
        for channel in self.allocator.channels:
            messages += protocol.pitch_bend_range(channel, self.bend_range_semitones)
        return messages

    def start(self) -> None:
        """(Re)start: panic the port first (covers a killed predecessor), then send the profile's setup."""
        with self._lock:
            self._check_open()
            self.panic()
            self._send_all(self.setup_messages())
            self._started = True
            self.counters["starts"] += 1

    def replace_sink(self, sink: MidiSink) -> None:
        """Send through ``sink`` from now on (a reconnected port): close the old sink, then :meth:`start` on the new
        one (panic + the profile's setup on the returned synth), all under this stage's lock so no note goes between."""
        with self._lock:
            old, self.sink = self.sink, sink
            old.close()
            self.start()

    def hand_over(self, successor: MidiOutStage, attach: Callable[[MidiOutStage], None]) -> None:
        """Silence this stage, start ``successor`` and run ``attach(successor)`` (the caller routes its notes there)
        while holding this stage's lock: a note being sent through this stage finishes first, none starts between."""
        with self._lock:
            self.panic()
            successor.start()
            attach(successor)

    def reset(self) -> None:
        """Silence everything and start again with the same parameters."""
        self.start()

    def process(self, item: Any, *, reset: bool = False) -> None:
        """Play ``item`` now (a NoteEvent starts, an ``int`` note id ends)."""
        if reset:
            self.reset()
        if isinstance(item, NoteEvent):
            self.note_on(item)
        elif isinstance(item, int):
            self.note_off(item)
        else:
            raise ParameterError(f"MidiOutStage.process takes a NoteEvent or a note id, got {type(item).__name__}")

    def panic(self) -> None:
        """Note-off for every sounding note, then CC123 and CC120 on all 16 channels."""
        with self._lock:
            for voice in self.allocator.end_all():
                self._send(protocol.note_off(voice.channel, voice.pitch))
                self.counters["notes_off"] += 1
            self._send_all(protocol.panic_messages())
            self.counters["panics"] += 1

    def close(self) -> None:
        """Panic, write the recording (``config.record_path``), close the sink if owned. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self.panic()
            finally:
                self._closed = True
                try:
                    if self.recorder is not None and self.config.record_path:
                        self.recorder.save(self.config.record_path)
                finally:
                    if self.owns_sink and callable(getattr(self.sink, "close", None)):
                        self.sink.close()

    def __enter__(self) -> MidiOutStage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------------------------------- notes
    def _note_off_voice(self, voice: Voice) -> None:
        self._send(protocol.note_off(voice.channel, voice.pitch))
        self.counters["notes_off"] += 1

    def note_on(self, note: NoteEvent) -> int:
        """Start ``note`` now; returns the channel index it sounds on."""
        if not isinstance(note, NoteEvent):
            raise ParameterError(f"note_on takes a NoteEvent, got {type(note).__name__}")
        with self._lock:
            self._check_open()
            plan = self.allocator.note_on(note.note_id, note.pitch, note.voice)
            for voice in plan.ended:
                self._note_off_voice(voice)
            self.counters["steals"] += int(plan.stolen)
            self.counters["retriggers"] += int(plan.retriggered)
            channel = plan.channel
            if not self.per_note_expression:
                if note.bend_semitones or note.pressure or note.timbre != 64 or note.bend_curve or note.pressure_curve:
                    self.counters["expression_skipped"] += 1
            else:
                if abs(note.bend_semitones) > self.bend_range_semitones:
                    self.counters["bend_clamped"] += 1
                self._send(
                    protocol.pitch_bend(
                        channel, semitones=note.bend_semitones, bend_range_semitones=self.bend_range_semitones
                    )
                )
                self._send(protocol.channel_pressure(channel, note.pressure))
                self._send(protocol.control_change(channel, protocol.CC_TIMBRE, note.timbre))
            self._send(protocol.note_on(channel, note.pitch, note.velocity))
            self.counters["notes_on"] += 1
            return channel

    def automate(self, note_id: int, kind: str, value: float) -> bool:
        """One automation point of a sounding note on its own channel (``kind``: ``"bend"`` in semitones or
        ``"pressure"`` 0..127); False (counted as dropped) when the profile carries no per-note expression or the
        note no longer sounds."""
        if kind not in ("bend", "pressure"):
            raise ParameterError(f"automation kind must be 'bend' or 'pressure', got {kind!r}")
        with self._lock:
            voice = None if self._closed or not self.per_note_expression else self.allocator.voice(note_id)
            if voice is None:
                self.counters["automation_dropped"] += 1
                return False
            if kind == "bend":
                if abs(float(value)) > self.bend_range_semitones:
                    self.counters["bend_clamped"] += 1
                self._send(
                    protocol.pitch_bend(
                        voice.channel, semitones=float(value), bend_range_semitones=self.bend_range_semitones
                    )
                )
            else:
                self._send(protocol.channel_pressure(voice.channel, int(value)))
            self.counters["automation_sent"] += 1
            return True

    def note_off(self, note: NoteEvent | int) -> bool:
        """End a note by id (or NoteEvent); False (counted) when it was already ended by a steal or retrigger."""
        note_id = note.note_id if isinstance(note, NoteEvent) else note
        if not isinstance(note_id, int):
            raise ParameterError(f"note_off takes a NoteEvent or an int note id, got {type(note).__name__}")
        with self._lock:
            if self._closed:
                return False  # everything was already silenced by close()
            voice = self.allocator.note_off(note_id)
            if voice is None:
                self.counters["unknown_note_offs"] += 1
                return False
            self._note_off_voice(voice)
            return True

    @property
    def sounding(self) -> dict[int, Voice]:
        with self._lock:
            return self.allocator.sounding

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters, sounding=len(self.allocator))
