"""MIDI-out benchmark: scheduler precision at send_message and delivery latency through a JACK MIDI port.

Plays ``--notes`` notes (default 5,000 → 10,000 scheduled note-on/note-off events) through NoteScheduler →
MidiOutStage (MPE, 15 member channels) → a python-rtmidi JACK output connected to a python-rtmidi JACK input in a
child process (RtMidi's queue drained on its own thread, like the product's ``RtMidiInput``: a Python
``set_callback`` runs on JACK's process thread and loses messages under load, docs/architecture.md "MIDI ports").

- scheduling error = (time just before ``send_message`` of the note-on/note-off) − its due time;
- delivery latency = (arrival at the reader) − (time just before ``send_message``), note-ons and note-offs; arrival
  is RtMidi's JACK timestamp (``jack_get_time()`` in the reader's process callback, chained deltas anchored to
  ``time.monotonic``; see :class:`Reader`). JACK hands MIDI over once per period (256 frames @ 48 kHz = 5.3 ms);
- every message sent after the reader connected must arrive (lost messages are counted, and a goal).

Starts its own JACK dummy server when none is running and stops it afterwards. Prints one JSON object.
Goals: scheduling error p99 ≤ 1 ms; no message lost; the JACK delivery latency is reported (one period bounds it).

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

from _common import emit, goal, strip_no_save  # noqa: E402

from services.midi_out.engine import MidiOutStage  # noqa: E402
from services.midi_out.ports import open_output  # noqa: E402
from services.midi_out.scheduler import NoteScheduler  # noqa: E402
from shared.config import MidiConfig  # noqa: E402
from shared.jack_server import start_dummy_jack as start_jack  # noqa: E402
from shared.jack_server import stop_jack
from shared.messages import NoteEvent  # noqa: E402


class TimingSink:
    """Wraps the rtmidi output; stamps note-on/note-off messages just before send_message."""

    def __init__(self, output) -> None:
        self.output = output
        self.on_sent: list[float] = []
        self.off_sent: list[float] = []
        self.sent: list[tuple[float, tuple[int, ...]]] = []  # every message: (time just before send, bytes)

    def send(self, message: list[int]) -> None:
        now = time.monotonic()
        kind = message[0] & 0xF0
        if kind == 0x90:
            self.on_sent.append(now)
        elif kind == 0x80:
            self.off_sent.append(now)
        self.sent.append((now, tuple(message)))
        self.output.send(message)


def reader_main(client: str, source: str, poll_s: float) -> int:
    """The reader process (``midi.py --reader CLIENT SOURCE``): an RtMidi JACK input in queue mode (no Python
    callback), connected to ``SOURCE`` and drained on a thread of its own, like the product's
    :class:`services.midi_out.ports.RtMidiInput`. Prints ``READY`` and then one JSON line per message:
    ``[drained_at (time.monotonic), rtmidi_delta_s, [message bytes]]``. The benchmark kills it when done (closing a JACK
    input port races JACK's process thread; see testkit/jack_midi_reader.py)."""
    import rtmidi

    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client, queue_size_limit=1 << 16)
    midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
    ports = list(midi_in.get_ports())
    if source not in ports:
        print(f"ERROR no port {source!r} in {ports}", flush=True)
        return 1
    midi_in.open_port(ports.index(source), name="in")
    out = sys.stdout
    print("READY", flush=True)
    get_message, monotonic, wait = midi_in.get_message, time.monotonic, threading.Event().wait
    lines: list[str] = []
    while True:
        received = get_message()
        if received is None:
            if lines:
                out.write("".join(lines))
                out.flush()
                lines.clear()
            wait(poll_s)
            continue
        message, delta = received
        lines.append(f"[{monotonic()!r}, {delta!r}, {list(message)}]\n")


class Reader:
    """Runs :func:`reader_main` in a child process and collects its lines on a thread.

    Arrival time: RtMidi stamps each JACK message with the time since the previous one, from ``jack_get_time()``
    (µs) in the reader client's process callback, i.e. when JACK handed the message to the reader. The chain of those
    deltas gives every message's arrival relative to the first; the offset to ``time.monotonic`` is the smallest
    (drained_at − chained arrival) over all messages (the drain thread only ever stamps after the arrival, so the
    smallest difference is the tightest bound). ``drain_lag`` (drained_at − estimated arrival) is reported too."""

    def __init__(self, source_port: str, *, expected_messages: int, poll_s: float = 0.002) -> None:
        import subprocess

        self.expected = expected_messages
        self.rows: list[tuple[float, float, tuple[int, ...]]] = []
        self.done = threading.Event()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--reader",
                f"mh-bench-reader-{os.getpid()}",
                source_port,
                str(poll_s),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, JACK_NO_START_SERVER="1"),
        )
        first = self.proc.stdout.readline().strip()
        if first != "READY":
            self.proc.kill()
            raise SystemExit(f"midi: reader did not start: {first or self.proc.wait()}")
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        import json

        for line in self.proc.stdout:
            drained, delta, message = json.loads(line)
            self.rows.append((drained, delta, tuple(message)))
            if self.expected and len(self.rows) >= self.expected:
                self.done.set()
        self.done.set()

    def wait(self, expected: int, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
        """Until ``expected`` messages arrived, or none arrived for ``quiet_s`` (the rest were lost)."""
        self.expected = expected
        if len(self.rows) >= expected:
            self.done.set()
        deadline = time.monotonic() + timeout_s
        count, last_change = len(self.rows), time.monotonic()
        while not self.done.wait(0.1) and time.monotonic() < deadline:
            if len(self.rows) != count:
                count, last_change = len(self.rows), time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                return

    def arrivals(self, sent: list[tuple[float, tuple[int, ...]]]) -> dict:
        """Each received message matched to its send (same bytes, in order; a lost message is skipped)."""
        rows = self.rows[: len(sent)]
        drained = np.asarray([r[0] for r in rows])
        chained = np.cumsum(np.concatenate([[0.0], [r[1] for r in rows[1:]]]))
        arrival = float(np.min(drained - chained)) + chained
        delivery = {0x90: [], 0x80: []}
        j = 0
        for t_arrival, (_, _, message) in zip(arrival, rows):
            while j < len(sent) and sent[j][1] != message:
                j += 1
            if j == len(sent):
                break
            kind = message[0] & 0xF0
            if kind in delivery:
                delivery[kind].append(t_arrival - sent[j][0])
            j += 1
        return {
            "on": np.asarray(delivery[0x90]),
            "off": np.asarray(delivery[0x80]),
            "drain_lag": drained - arrival,
            "messages": len(rows),
        }

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


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
    sink = TimingSink(output)
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=15), sink, owns_sink=False)
    reader = None
    sent: list = []
    scheduler = NoteScheduler(stage)
    try:
        reader = Reader(f"{client}:out", expected_messages=0)  # connected before anything is sent: all must arrive
        stage.start()  # its set-up messages (MPE configuration) count too
        rng = random.Random(seed)
        spacing_s = spacing_ms / 1000.0
        base = time.monotonic() + 0.5
        events = []
        for i in range(notes):
            t_on = base + i * spacing_s + rng.uniform(0.0, 0.2) * spacing_s
            t_off = t_on + rng.uniform(0.3, 3.0) * spacing_s  # offs interleave with later ons; ≤ 4 notes overlap
            events.append(
                NoteEvent(
                    note_id=i,
                    pitch=rng.randint(40, 90),
                    velocity=rng.randint(1, 127),
                    t_on=t_on,
                    t_off=t_off,
                    bend_semitones=rng.uniform(-2.0, 2.0),
                    pressure=rng.randint(0, 127),
                    timbre=rng.randint(0, 127),
                )
            )
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
        sent = list(sink.sent)
        reader.wait(len(sent))
        if reader.proc.poll() is not None:
            raise SystemExit(
                f"midi: the reader process exited ({reader.proc.returncode}) after {len(reader.rows)} of "
                f"{len(sent)} messages"
            )
        stats = scheduler.stats()
    finally:
        scheduler.stop(panic=False)
        stage.close()
        output.close()
        if reader is not None:
            reader.close()
    if stage.counters["steals"] or len(sink.on_sent) != notes or len(sink.off_sent) != notes:
        raise SystemExit(f"unexpected steals/messages: {stage.counters}")
    due_on = np.sort([e.t_on for e in events])
    due_off = np.sort([e.t_off for e in events])
    send_on, send_off = np.asarray(sink.on_sent), np.asarray(sink.off_sent)
    sched_error = np.concatenate([send_on - due_on, send_off - due_off])
    got = reader.arrivals(sent)
    if got["on"].size + got["off"].size == 0:
        raise SystemExit(f"midi: the reader got no note-on/note-off of {len(sent)} messages")
    delivery = np.concatenate([got["on"], got["off"]])
    return {
        "benchmark": "midi_out",
        "notes": notes,
        "events": 2 * notes,
        "note_on_spacing_ms": spacing_ms,
        "profile": "mpe",
        "jack_period_ms": round(256 / 48000 * 1000.0, 3),
        "scheduling_error_at_send_message": {
            **percentiles_ms(sched_error),
            "goal_p99_ms": 1.0,
            "p99_within_goal": bool(np.percentile(sched_error, 99) * 1000.0 <= 1.0),
        },
        "scheduler_error_at_dispatch": {k: round(v, 4) for k, v in stats.get("error_ms", {}).items()},
        "late_events_over_1ms": stats["late"],
        "late_on_arrival": stats["late_on_arrival"],
        "delivery_latency_jack": percentiles_ms(delivery),
        "reader_drain_lag": percentiles_ms(got["drain_lag"]),
        "messages_sent": stage.counters["messages_sent"],
        "messages_received": got["messages"],
        "messages_lost": len(sent) - got["messages"],
        "note_ons_received": int(got["on"].size),
        "note_offs_received": int(got["off"].size),
        "messages_at_risk": getattr(output, "at_risk", 0),  # written in late JACK cycles (see jack_midi.py)
        "late_cycles": getattr(output, "late_cycles", 0),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    if sys.argv[1:2] == ["--reader"]:
        return reader_main(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notes", type=int, default=5000, help="notes to play (each = one note-on + one note-off event)"
    )
    parser.add_argument("--spacing-ms", type=float, default=5.0, help="time between note-ons")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--async-server",
        action="store_true",
        help="start the JACK server in JACK2's default asynchronous mode (default: synchronous, -S, as README advises)",
    )
    args = parser.parse_args(strip_no_save())
    jack = start_jack(sync=not args.async_server)
    try:
        result = run(args.notes, args.spacing_ms, args.seed)
        result["jack_started_by_benchmark"] = jack is not None
        result["jack_server_mode"] = "synchronous" if not args.async_server else "asynchronous"
    finally:
        stop_jack(jack)
    goals = [
        goal(
            "scheduling error p99 at send_message",
            result["scheduling_error_at_send_message"]["p99_ms"],
            "<=",
            1.0,
            unit="ms",
        ),
        goal(
            "JACK delivery to a reader, p99",
            result["delivery_latency_jack"]["p99_ms"],
            "report",
            unit="ms",
            note=f"one JACK period = {result['jack_period_ms']} ms",
        ),
        goal(
            "messages lost between the JACK output and the reader",
            result["messages_lost"],
            "==",
            0,
            note=f"of {result['messages_received'] + result['messages_lost']:,}; {result['jack_server_mode']} server; "
            f"{result['messages_at_risk']} written in {result['late_cycles']} late cycles",
        ),
    ]
    notes = (
        "Arrival timing: the reader is a separate process with RtMidi's JACK input in queue mode, drained on its "
        "own thread every 2 ms (no Python callback on JACK's process thread). Each message's arrival is RtMidi's "
        "JACK timestamp (jack_get_time() in the reader's process callback, microseconds, kept as deltas between "
        "messages); the chain of deltas is anchored to time.monotonic by the smallest (drain time − chained time) "
        "over the run, so a late drain does not inflate the latency (reader_drain_lag in the JSON shows how late "
        "the drain thread stamped; the drain's polling period therefore does not limit the precision). Messages sent "
        "within one JACK period arrive in the same cycle, so delivery is bounded by about one period plus the "
        "output's own hand-over. Lost messages: the server runs synchronously (-S) unless --async-server; an "
        "asynchronous server does not wait for a late client, and the MIDI of a late cycle can be dropped or read "
        "twice (the output counts those messages as at risk and says so on stderr); they are counted, not waited "
        "for (the reader stops waiting after 3 s without a message)."
    )
    return emit("midi", result, goals, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
