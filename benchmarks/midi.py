"""MIDI-out benchmark: scheduler precision at send_message and delivery latency through a JACK MIDI port.

Plays ``--notes`` notes (default 5,000 → 10,000 scheduled note-on/note-off events) through NoteScheduler →
MidiOutStage (MPE, 15 member channels) → a python-rtmidi JACK output connected to a python-rtmidi JACK input.

- scheduling error = (time just before ``send_message`` of the note-on/note-off) − its due time;
- delivery latency = (reader callback time) − (time just before ``send_message``), note-ons and note-offs;
  JACK hands MIDI over once per period (256 frames @ 48 kHz = 5.3 ms), which bounds it.

Starts its own JACK dummy server when none is running and stops it afterwards. Prints one JSON object.
Goal: scheduling error p99 ≤ 1 ms; the JACK delivery latency is reported (one period bounds it).

    .venv/bin/python benchmarks/midi.py [--notes 5000] [--spacing-ms 5] [--no-save]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("JACK_NO_START_SERVER", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.midi_out.engine import MidiOutStage  # noqa: E402
from services.midi_out.ports import open_output  # noqa: E402
from services.midi_out.scheduler import NoteScheduler  # noqa: E402
from shared.config import MidiConfig  # noqa: E402
from shared.messages import NoteEvent  # noqa: E402

from shared.jack_server import start_dummy_jack as start_jack, stop_jack  # noqa: E402
from _common import emit, goal, strip_no_save  # noqa: E402


class TimingSink:
    """Wraps the rtmidi output; stamps note-on/note-off messages just before send_message."""

    def __init__(self, output) -> None:
        self.output = output
        self.on_sent: list[float] = []
        self.off_sent: list[float] = []

    def send(self, message: list[int]) -> None:
        kind = message[0] & 0xF0
        if kind == 0x90:
            self.on_sent.append(time.monotonic())
        elif kind == 0x80:
            self.off_sent.append(time.monotonic())
        self.output.send(message)


class Reader:
    """python-rtmidi JACK input that stamps every note-on/note-off in its callback."""

    def __init__(self, source_port: str, *, expected_notes: int) -> None:
        import rtmidi

        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"mh-bench-reader-{os.getpid()}")
        self.on_received: list[float] = []
        self.off_received: list[float] = []
        self.expected = expected_notes
        self.done = threading.Event()
        ports = self.midi_in.get_ports()
        self.midi_in.set_callback(self._callback)
        self.midi_in.open_port(ports.index(source_port), name="in")

    def _callback(self, event, _data=None) -> None:
        now = time.monotonic()
        kind = event[0][0] & 0xF0
        if kind == 0x90:
            self.on_received.append(now)
        elif kind == 0x80:
            self.off_received.append(now)
            if len(self.off_received) >= self.expected:
                self.done.set()

    def close(self) -> None:
        self.midi_in.cancel_callback()
        self.midi_in.close_port()
        self.midi_in.delete()


def percentiles_ms(values_s: np.ndarray) -> dict[str, float]:
    values_ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(values_ms, 50)), 4),
        "p99_ms": round(float(np.percentile(values_ms, 99)), 4),
        "max_ms": round(float(values_ms.max()), 4),
        "min_ms": round(float(values_ms.min()), 4),
    }


def run(notes: int, spacing_ms: float, seed: int) -> dict:
    client = f"mh-bench-{os.getpid()}"
    output = open_output("jack", None, virtual_name="out", client_name=client)
    reader = Reader(f"{client}:out", expected_notes=notes)
    sink = TimingSink(output)
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=15), sink, owns_sink=False)
    stage.start()
    rng = random.Random(seed)
    spacing_s = spacing_ms / 1000.0
    base = time.monotonic() + 0.5
    events = []
    for i in range(notes):
        t_on = base + i * spacing_s + rng.uniform(0.0, 0.2) * spacing_s
        t_off = t_on + rng.uniform(0.3, 3.0) * spacing_s  # offs interleave with later ons; ≤ 4 notes overlap
        events.append(NoteEvent(note_id=i, pitch=rng.randint(40, 90), velocity=rng.randint(1, 127),
                                t_on=t_on, t_off=t_off, bend_semitones=rng.uniform(-2.0, 2.0),
                                pressure=rng.randint(0, 127), timbre=rng.randint(0, 127)))
    scheduler = NoteScheduler(stage)
    try:
        scheduler.start()
        # feed the scheduler in chunks ahead of time, like the oracle actor would (never all at once)
        fed = 0
        while fed < notes:
            horizon = time.monotonic() + 0.2
            while fed < notes and events[fed].t_on < horizon:
                scheduler.schedule(events[fed])
                fed += 1
            if fed < notes:
                threading.Event().wait(max(0.0, events[fed].t_on - 0.2 - time.monotonic()))
        if not scheduler.wait_idle(timeout_s=60.0):
            raise SystemExit("scheduler did not drain")
        if not reader.done.wait(timeout=10.0):
            raise SystemExit(f"reader got {len(reader.off_received)} of {notes} note-offs")
        stats = scheduler.stats()
    finally:
        scheduler.stop(panic=False)
        stage.close()
        output.close()
        reader.close()
    if stage.counters["steals"] or len(sink.on_sent) != notes or len(sink.off_sent) != notes:
        raise SystemExit(f"unexpected steals/messages: {stage.counters}")
    due_on = np.sort([e.t_on for e in events])
    due_off = np.sort([e.t_off for e in events])
    send_on, send_off = np.asarray(sink.on_sent), np.asarray(sink.off_sent)
    sched_error = np.concatenate([send_on - due_on, send_off - due_off])
    delivery = np.concatenate([np.asarray(reader.on_received) - send_on, np.asarray(reader.off_received) - send_off])
    return {
        "benchmark": "midi_out",
        "notes": notes,
        "events": 2 * notes,
        "note_on_spacing_ms": spacing_ms,
        "profile": "mpe",
        "jack_period_ms": round(256 / 48000 * 1000.0, 3),
        "scheduling_error_at_send_message": {**percentiles_ms(sched_error),
                                             "goal_p99_ms": 1.0,
                                             "p99_within_goal": bool(np.percentile(sched_error, 99) * 1000.0 <= 1.0)},
        "scheduler_error_at_dispatch": {k: round(v, 4) for k, v in stats.get("error_ms", {}).items()},
        "late_events_over_1ms": stats["late"],
        "late_on_arrival": stats["late_on_arrival"],
        "delivery_latency_jack": percentiles_ms(delivery),
        "messages_sent": stage.counters["messages_sent"],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=5000, help="notes to play (each = one note-on + one note-off event)")
    parser.add_argument("--spacing-ms", type=float, default=5.0, help="time between note-ons")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(strip_no_save())
    jack = start_jack()
    try:
        result = run(args.notes, args.spacing_ms, args.seed)
        result["jack_started_by_benchmark"] = jack is not None
    finally:
        stop_jack(jack)
    goals = [
        goal("scheduling error p99 at send_message", result["scheduling_error_at_send_message"]["p99_ms"], "<=", 1.0,
             unit="ms"),
        goal("JACK delivery to a reader, p99", result["delivery_latency_jack"]["p99_ms"], "report", unit="ms",
             note=f"one JACK period = {result['jack_period_ms']} ms"),
    ]
    return emit("midi", result, goals)


if __name__ == "__main__":
    sys.exit(main())
