"""The MIDI-out actor: notes ring → :class:`NoteScheduler` → :class:`MidiOutStage` → rtmidi port.

Panics the port first on every (re)start (covers a killed predecessor), and on stop, on exceptions and at
process exit. Records the performance as an SMF when ``midi.record_path`` is set.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import numpy as np
import ray

from services.midi_out.engine import MidiOutStage
from services.midi_out.ports import open_output
from services.midi_out.scheduler import NoteScheduler, note_kind
from services.ray_support import current_node_id
from shared.config import VOICE_NAMES, MusicHalConfig
from shared.message_ring import MessageRing
from shared.messages import NoteEvent, message_from_bytes
from shared.stats import LatencyRecorder

__all__ = ["MidiOutActor"]


#: how many of the last sent notes :meth:`MidiOutActor.traced_notes` keeps (fixed memory over a long set)
TRACED_NOTES = 10_000
_TRACE_FIELDS = ("note_id", "pitch", "channel", "voice", "source_state", "source_event_id")


class NoteTrace:
    """The last ``size`` notes sent (:data:`_TRACE_FIELDS`) in one numpy ring written in full when created, so its
    memory is resident from the start and never grows (a deque of tuples took ~96 B per note until it was full:
    10,000 notes, half an hour of a set, which a soak reads as a slope). Voices are kept as indices into
    :attr:`voices` (the known names first; another name is added once)."""

    def __init__(self, size: int = TRACED_NOTES) -> None:
        self.rows = np.full((int(size), len(_TRACE_FIELDS)), -1, dtype=np.int64)
        self.voices: list[str] = list(VOICE_NAMES)
        self.count = 0

    def add(self, note: NoteEvent, channel: int) -> None:
        if note.voice not in self.voices:
            self.voices.append(note.voice)
        row = (
            note.note_id,
            note.pitch,
            channel,
            self.voices.index(note.voice),
            note.source_state,
            note.source_event_id,
        )
        self.rows[self.count % self.rows.shape[0]] = row
        self.count += 1

    def notes(self) -> list[dict[str, Any]]:
        """The traced notes, oldest first, as dicts of :data:`_TRACE_FIELDS`."""
        size = self.rows.shape[0]
        kept = np.arange(max(0, self.count - size), self.count) % size
        out = []
        for row in self.rows[kept].tolist():
            record = dict(zip(_TRACE_FIELDS, row))
            record["voice"] = self.voices[record["voice"]]
            out.append(record)
        return out


class _MeasuredStage:
    """Wraps the stage so each note-on's send time is measured against its event's timestamps."""

    def __init__(self, stage: MidiOutStage, latency: LatencyRecorder, clock=time.monotonic) -> None:
        self.stage = stage
        self.latency = latency
        self.clock = clock
        self.sent_notes = NoteTrace(TRACED_NOTES)  # the last notes sent
        self.muted = False
        self.dropped_muted = 0

    def note_on(self, note: NoteEvent) -> int:
        if self.muted:  # performer mute: new notes are dropped (their note-offs are ignored by the stage)
            self.dropped_muted += 1
            return -1
        channel = self.stage.note_on(note)
        now = self.clock()
        stamps = note.stamps or {}
        if "t_detected" in stamps and stamps.get("first_of_response"):
            event_id = stamps.get("input_event_id")  # joins the other actors' series per event
            self.latency.add("pipeline", now - stamps["t_detected"], key=event_id)
            if "t_decided" in stamps:
                self.latency.add("decision_to_note_on", now - stamps["t_decided"], key=event_id)
            if "onset_t" in stamps:
                self.latency.add("onset_to_note", now - stamps["onset_t"])
                self.latency.add("onset_to_detected", stamps["t_detected"] - stamps["onset_t"])
        self.latency.add("schedule_error", now - note.t_on)
        self.latency.add(f"schedule_error_{note_kind(note)}", now - note.t_on)
        self.sent_notes.add(note, channel)
        return channel

    def note_off(self, note: Any) -> bool:
        return self.stage.note_off(note)

    def automate(self, note_id: int, kind: str, value: float) -> bool:
        return self.stage.automate(note_id, kind, value)

    def panic(self) -> None:
        self.stage.panic()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class MidiOutActor:
    def __init__(self, config: MusicHalConfig, notes_ring_name: str) -> None:
        self.started_monotonic = time.monotonic()  # (re)start time, system-wide clock: the panic follows it
        self.config = config
        self.node_id = current_node_id()
        self.port = open_output(config.midi.api, config.midi.port, virtual_name=config.midi.virtual_port_name)
        self.port_open_monotonic = time.monotonic()  # the port is ours from here: the panic is the next thing sent
        self.stage = MidiOutStage(config.midi, self.port)
        self.stage.start()  # panic first, then the profile's setup
        self.latency = LatencyRecorder()
        self.measured = _MeasuredStage(self.stage, self.latency)
        self.scheduler = NoteScheduler(self.measured, realtime_priority=config.midi.scheduler_priority).start()
        self.notes = MessageRing.attach(notes_ring_name)
        self.reader = self.notes.reader()
        self.received = 0
        self.clocked_sent_behind = 0  # clocked notes the oracle sent after their t_on
        self.error: str | None = None
        self._stop = threading.Event()
        self._closed = False
        atexit.register(self._close_quietly)
        self._thread = threading.Thread(target=self._loop, name="musichal-midi-in", daemon=True)
        self._thread.start()
        self.port_lost = False
        self.port_counters = {"port_losses": 0, "port_reconnects": 0}
        if not self.port.is_virtual:  # a named destination (synth, DAW) may vanish and return: watch it
            threading.Thread(target=self._watch_port, name="musichal-midi-port", daemon=True).start()

    PORT_CHECK_S = 0.25

    def _watch_port(self) -> None:
        """Notice the destination port disappearing (reported in stats) and reconnect when it is back."""
        while not self._stop.wait(self.PORT_CHECK_S):
            try:
                present = self.port.port_name in self.port.destinations()
                if not present and not self.port_lost:
                    self.port_lost = True
                    self.port_counters["port_losses"] += 1
                elif present and self.port_lost:
                    self._reconnect()
            except Exception as error:  # keep watching; report
                self.error = f"MIDI port watch: {type(error).__name__}: {error}"

    def _reconnect(self) -> None:
        new = open_output(self.port.api, self.port.port_name, virtual_name=self.config.midi.virtual_port_name)
        self.stage.replace_sink(new)  # closes the old port; panic + the profile's setup on the returned synth
        self.port = new
        self.port_lost = False
        self.port_counters["port_reconnects"] += 1

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                payload = self.reader.receive(timeout_s=0.05)
                if payload is None:
                    continue
                note = message_from_bytes(payload)
                if isinstance(note, NoteEvent):
                    self.received += 1
                    if note.stamps and "t_decided" in note.stamps:
                        hop = time.monotonic() - note.stamps["t_decided"]
                        self.latency.add("oracle_to_midi_out", hop, key=note.stamps.get("input_event_id"))
                        if note_kind(note) == "clocked":  # against its look-ahead (t_on - t_decided)
                            self.latency.add("clocked_hop", hop)
                            lead = note.t_on - note.stamps["t_decided"]
                            if lead > 0:
                                self.latency.add("clocked_lead", lead)
                            else:  # the oracle sent it after its time: late before any hop
                                self.clocked_sent_behind += 1
                    self.scheduler.schedule(note)
        except BaseException as error:
            self.error = f"midi loop failed: {type(error).__name__}: {error}"
            self.scheduler.stop(panic=True)

    def ready(self) -> str:
        return self.node_id

    def port_name(self) -> str:
        return self.port.port_name

    # ------------------------------------------------------------------ performer controls
    def set_muted(self, muted: bool) -> bool:
        """Mute: drop new notes and silence the sounding ones (panic); unmute: play again."""
        self.measured.muted = bool(muted)
        if muted:
            self.stage.panic()
        return self.measured.muted

    def panic(self) -> None:
        self.stage.panic()

    def set_profile(self, profile: str) -> str:
        """Switch MIDI profile live: panic, then the new profile's setup on the same port (and recording)."""
        from dataclasses import replace

        old = self.stage
        if profile == old.config.profile:
            return profile
        new = MidiOutStage(replace(old.config, profile=profile), self.port, recorder=old.recorder)
        old.hand_over(new, self._attach_stage)
        return profile

    def _attach_stage(self, stage: MidiOutStage) -> None:
        self.stage = stage
        self.measured.stage = stage

    def stats(self) -> dict[str, Any]:
        counters = dict(self.stage.stats() if callable(getattr(self.stage, "stats", None)) else {})
        counters.update({f"scheduler_{k}": v for k, v in self.scheduler.counters.items()})
        counters["notes_received"] = self.received
        counters["clocked_sent_behind"] = self.clocked_sent_behind
        counters["message_overruns"] = self.reader.overruns
        counters["sounding"] = len(self.stage.sounding)
        counters["dropped_muted"] = self.measured.dropped_muted
        counters.update(getattr(self, "port_counters", {}))
        return {
            "stage": "midi_out",
            "node_id": self.node_id,
            "counters": counters,
            "latency_ms": self.latency.summary(),
            "error": self.error,
            "port": self.port.port_name,
            "port_lost": getattr(self, "port_lost", False),
            "muted": self.measured.muted,
            "profile": self.stage.config.profile,
            "scheduler_realtime": self.scheduler.realtime,  # SCHED_FIFO (midi.scheduler_priority) where allowed
        }

    def traced_notes(self) -> list[dict[str, Any]]:
        """The last :data:`TRACED_NOTES` notes sent: id, pitch, channel, voice and where in the oracle each came
        from."""
        return self.measured.sent_notes.notes()

    def latency_values(self, name: str) -> list[float]:
        return self.latency.values(name)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every received note has been sent and ended (used before a clean stop)."""
        deadline = time.monotonic() + timeout_s
        while self.reader.pending() and time.monotonic() < deadline:
            self._stop.wait(0.01)
        return self.scheduler.wait_idle(timeout_s=max(0.0, deadline - time.monotonic()))

    def stop(self) -> dict[str, Any]:
        """Stop: panic (all notes off, CC123/CC120), write the SMF, close the port. Returns final stats."""
        self._stop.set()
        self._thread.join(timeout=1.0)
        stats = self.stats()
        self._close_quietly()
        return stats

    def _close_quietly(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.scheduler.stop(panic=True)
        finally:
            self.stage.close()  # panics, writes the SMF when recording, closes the port
            self.notes.close()
