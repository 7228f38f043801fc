"""Test helpers for midi_out: a JACK MIDI reader and a receiver model that replays raw bytes."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading

_counter = itertools.count()
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unique_name(prefix: str) -> str:
    """JACK client names must be unique per server."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


class JackReader:
    """A JACK MIDI input (in a child process, see ``testkit/jack_midi_reader.py``) that collects every message.

    Messages arrive through a pipe on a reader thread and are handed to :meth:`_callback` (subclasses may
    override it); :meth:`wait_for` blocks on a condition — no sleeps. :meth:`close` closes the child's standard
    input, and the child leaves the JACK graph cleanly (a killed client would stall the tests' ``--sync`` server
    for JACK's 5 s client timeout).
    """

    def __init__(self, client_name: str | None = None) -> None:
        self.client_name = client_name or unique_name("mh-reader")
        self.messages: list[list[int]] = []
        self._condition = threading.Condition()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _callback(self, event, _data=None) -> None:
        message, _delta = event
        with self._condition:
            self.messages.append(list(message))
            self._condition.notify_all()

    def _start(self, mode: str, port: str) -> str:
        self._process = subprocess.Popen([sys.executable, "-m", "testkit.jack_midi_reader", self.client_name, mode, port],
                                         cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        first = self._process.stdout.readline().strip()
        if not first.startswith("READY "):
            self.close()
            raise RuntimeError(f"JACK MIDI reader did not start: {first!r}")
        self._thread = threading.Thread(target=self._pump, name="jack-reader-pipe", daemon=True)
        self._thread.start()
        return first[len("READY "):]

    def _pump(self) -> None:
        for line in self._process.stdout:
            try:
                t, message = json.loads(line)
            except ValueError:
                continue
            self._received(float(t), message)

    def _received(self, t: float, message: list[int]) -> None:
        """One message from the child, ``t`` its receive time (``time.monotonic``); subclasses may extend it."""
        self._callback((message, 0.0))

    def connect_from(self, port_name: str) -> None:
        """Connect this input to the JACK MIDI output ``port_name`` (``client:port``)."""
        self._start("connect", port_name)

    def open_virtual(self, port_name: str = "in") -> str:
        """Expose a JACK MIDI input port that outputs can open; returns its full name."""
        return self._start("virtual", port_name)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[list[int]]:
        """Block until ``count`` messages arrived (or the timeout) and return a copy of them."""
        with self._condition:
            self._condition.wait_for(lambda: len(self.messages) >= count, timeout=timeout_s)
            return [list(m) for m in self.messages]

    def wait_for_stop_panic(self, timeout_s: float = 20.0) -> list[list[int]]:
        """Block until a full panic block arrived after the last note-on (the stop's), or the timeout; return a copy.

        The reader is another process behind a pipe: what the stack sent at its stop arrives a little later.
        """
        with self._condition:
            self._condition.wait_for(lambda: stop_panic_received(self.messages), timeout=timeout_s)
            return [list(m) for m in self.messages]

    def clear(self) -> None:
        with self._condition:
            self.messages.clear()

    def close(self) -> None:
        """Stop the reader process (idempotent): its standard input closes and it closes its JACK client, or it
        is killed when it has not exited within 10 s; messages already received stay in :attr:`messages`."""
        process, self._process = self._process, None
        if process is not None:
            try:
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=5)  # the pipe's end: the child has exited
            self._thread = None
        if process is not None and process.stdout is not None:
            process.stdout.close()


class ReceiverModel:
    """What a synth would have sounding after a byte stream: (channel, pitch) pairs that are on."""

    def __init__(self) -> None:
        self.on: set[tuple[int, int]] = set()
        self.double_on: list[tuple[int, int]] = []  # note-on for a (channel, pitch) already sounding: ambiguous
        self.stray_off: list[tuple[int, int]] = []  # note-off for something not sounding
        self.note_ons = 0
        self.note_offs = 0
        self.channels_used: set[int] = set()  # every channel-voice message except the CC120/CC123 panic

    def feed(self, message: list[int]) -> None:
        status = message[0]
        kind, channel = status & 0xF0, status & 0x0F
        is_panic = kind == 0xB0 and message[1] in (120, 123)
        if 0x80 <= status < 0xF0 and not is_panic:
            self.channels_used.add(channel)  # channels used for notes, expression and setup (panic is everywhere)
        if kind == 0x90 and message[2] > 0:
            key = (channel, message[1])
            if key in self.on:
                self.double_on.append(key)
            self.on.add(key)
            self.note_ons += 1
        elif kind == 0x80 or (kind == 0x90 and message[2] == 0):
            key = (channel, message[1])
            if key not in self.on:
                self.stray_off.append(key)
            self.on.discard(key)
            self.note_offs += 1
        elif kind == 0xB0 and message[1] in (120, 123):
            self.on = {key for key in self.on if key[0] != channel}

    def feed_all(self, messages: list[list[int]]) -> "ReceiverModel":
        for message in messages:
            self.feed(message)
        return self


def panic_starts(messages: list[list[int]]) -> list[int]:
    """Indices where a full panic block (CC123 then CC120 on channels 0..15, in that order) begins."""
    block = expected_panic()
    starts = []
    i = 0
    while i <= len(messages) - len(block):
        if list(messages[i]) == block[0] and [list(m) for m in messages[i:i + len(block)]] == block:
            starts.append(i)
            i += len(block)
        else:
            i += 1
    return starts


def stop_panic_received(messages: list[list[int]]) -> bool:
    """True when a full panic block follows the last note-on (what every stop sends last)."""
    starts = panic_starts(messages)
    if not starts:
        return False
    last_on = max((i for i, m in enumerate(messages) if (m[0] & 0xF0) == 0x90 and len(m) > 2 and m[2] > 0), default=-1)
    return starts[-1] > last_on


def note_pairing_problems(messages: list[list[int]], *, allowed_cuts: int = 0, require_stop_panic: bool = True) -> list[str]:
    """Hung-note check on the stream *played*, i.e. received before the stop's panic (the last full panic block).

    Per channel and pitch, in arrival order: a note-on while that note sounds is a double on, a note-off (or note-on
    velocity 0) for a note not sounding is a stray off, and every note-on must be ended by its own note-off before the
    stop's panic — a note only CC123/CC120 silences is reported as never ended. Without a full panic after the last
    note-on the whole stream is judged (and, with ``require_stop_panic``, the missing stop panic is a problem). Earlier panic blocks (the start-up
    panic, a restarted midi_out's panic) reset the state; ``allowed_cuts`` of them may cut sounding notes (a restarted
    midi_out whose predecessor died with notes on, a mute), any other cut is a problem. Returns a list of one-line problems (empty: ok).
    A note-off the stop sends for a note still sounding (the engine's panic ends each voice by its own note-off
    before CC123) counts as that note's off; a graceful, drained stop sends none.
    """
    starts = panic_starts(messages)
    problems: list[str] = []
    if not stop_panic_received(messages):  # no full panic after the last note-on: judge the whole stream
        if require_stop_panic:
            problems.append("no stop panic (CC123/CC120 on all 16 channels) after the last note-on")
        stop = len(messages)
        earlier = set(starts)
    else:
        stop = starts[-1]
        earlier = set(starts[:-1])
    sounding: dict[tuple[int, int], int] = {}
    cuts = 0
    i = 0
    while i < stop:
        if i in earlier:
            if sounding:
                cuts += 1
                if cuts > allowed_cuts:
                    problems.append(f"panic at message {i} cut sounding notes {sorted(sounding)} (more cuts than the {allowed_cuts} allowed)")
                sounding.clear()
            i += 32
            continue
        message = messages[i]
        kind, channel = message[0] & 0xF0, message[0] & 0x0F
        if kind == 0x90 and len(message) > 2 and message[2] > 0:
            key = (channel, message[1])
            if key in sounding:
                problems.append(f"double note-on {key} at message {i} (first at {sounding[key]})")
            sounding[key] = i
        elif kind == 0x80 or (kind == 0x90 and len(message) > 2 and message[2] == 0):
            key = (channel, message[1])
            if key not in sounding:
                problems.append(f"stray note-off {key} at message {i}")
            sounding.pop(key, None)
        i += 1
    for key, index in sorted(sounding.items()):
        problems.append(f"note {key} (on at message {index}) never ended by its own note-off before the stop's panic")
    return problems


def expected_panic() -> list[list[int]]:
    """CC123 then CC120 on channels 0..15, written out from the MIDI spec."""
    out = []
    for channel in range(16):
        out += [[0xB0 | channel, 123, 0], [0xB0 | channel, 120, 0]]
    return out


def expected_rpn(channel: int, param_lsb: int, value: int) -> list[list[int]]:
    """RPN (0, param_lsb) = value with data LSB 0, then the null RPN, written out from the MIDI spec."""
    status = 0xB0 | channel
    return [[status, 101, 0], [status, 100, param_lsb], [status, 6, value], [status, 38, 0],
            [status, 101, 127], [status, 100, 127]]


def note_on_messages(messages: list[list[int]]) -> list[list[int]]:
    """The note-on messages (velocity > 0) of raw MIDI ``messages``, in order (``[m[1] for m in ...]``: the pitches)."""
    return [m for m in messages if (m[0] & 0xF0) == 0x90 and m[2] > 0]
