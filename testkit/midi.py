"""Test helpers for midi_out: a JACK MIDI reader (with receive times), a receiver model that replays raw bytes, and the
hung-note checks the full-stack tests use (message pairing, and each note's length against its scheduled duration)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
        self._process = subprocess.Popen(
            [sys.executable, "-m", "testkit.jack_midi_reader", self.client_name, mode, port],
            cwd=_REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        first = self._process.stdout.readline().strip()
        if not first.startswith("READY "):
            self.close()
            raise RuntimeError(f"JACK MIDI reader did not start: {first!r}")
        self._thread = threading.Thread(target=self._pump, name="jack-reader-pipe", daemon=True)
        self._thread.start()
        return first[len("READY ") :]

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


class TimedJackReader(JackReader):
    """:class:`JackReader` that also keeps each message's receive time: :attr:`timed` holds ``(t, message)``, ``t``
    the ``time.monotonic`` at which the reader's JACK process callback got it (not when the pipe delivered it to
    this process), so note lengths measured from it do not include the pipe's delay."""

    def __init__(self, client_name: str | None = None) -> None:
        super().__init__(client_name)
        self.timed: list[tuple[float, list[int]]] = []

    def _received(self, t: float, message: list[int]) -> None:
        with self._condition:
            self.timed.append((t, list(message)))
            self.messages.append(list(message))
            self._condition.notify_all()

    def snapshot(self) -> list[tuple[float, list[int]]]:
        """A copy of :attr:`timed`."""
        with self._condition:
            return [(t, list(m)) for t, m in self.timed]

    def clear(self) -> None:
        with self._condition:
            self.messages.clear()
            self.timed.clear()


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

    def feed_all(self, messages: list[list[int]]) -> ReceiverModel:
        for message in messages:
            self.feed(message)
        return self


def panic_starts(messages: list[list[int]]) -> list[int]:
    """Indices where a full panic block (CC123 then CC120 on channels 0..15, in that order) begins."""
    block = expected_panic()
    starts = []
    i = 0
    while i <= len(messages) - len(block):
        if list(messages[i]) == block[0] and [list(m) for m in messages[i : i + len(block)]] == block:
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


def note_pairing_problems(
    messages: list[list[int]], *, allowed_cuts: int = 0, require_stop_panic: bool = True
) -> list[str]:
    """Hung-note check on the stream *played*, i.e. received before the stop's panic (the last full panic block).

    Per channel and pitch, in arrival order: a note-on while that note sounds is a double on, a note-off (or note-on
    velocity 0) for a note not sounding is a stray off, and every note-on must be ended by its own note-off before the
    stop's panic — a note only CC123/CC120 silences is reported as never ended. Without a full panic after the last
    note-on the whole stream is judged (and, with ``require_stop_panic``, the missing stop panic is a problem). Earlier
    panic blocks (the start-up
    panic, a restarted midi_out's panic) reset the state; ``allowed_cuts`` of them may cut sounding notes (a restarted
    midi_out whose predecessor died with notes on, a mute), any other cut is a problem. Returns a list of one-line
    problems (empty: ok).
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
                    problems.append(
                        f"panic at message {i} cut sounding notes {sorted(sounding)} (more cuts than the "
                        f"{allowed_cuts} allowed)"
                    )
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


#: How much longer than its scheduled duration a note may sound at the reader (receive times) before it counts as
#: hung. A note's on→off gap at the reader is its scheduled duration plus the note-off's scheduling delay minus the
#: note-on's, plus the difference of the two deliveries (a JACK period, 5.3 ms, each). Measured beside other jobs
#: (load 15-22 on 2 cores): at most 0.35 s over (the end-to-end JACK audio test), 0.22 s (the cluster tests), 0.17 s
#: (the stack and fault tests); 2 s is far above that, and far below what a missing note-off leaves: a note that only
#: a steal or the stop ends sounds until then. (A live run stops no sooner than :func:`first_note_age_s` says, so that
#: its first note would be over the bound by then if nothing but the stop ended it.)
HUNG_NOTE_SLACK_S = 2.0


@dataclass(frozen=True)
class PlayedNote:
    """A note in a received stream: ``on_index``/``off_index`` index the stream; ``off_index`` is None when no note-off
    of its own ended it (a panic did, or nothing did)."""

    channel: int
    pitch: int
    on_index: int
    off_index: int | None


@dataclass(frozen=True)
class ScheduledNote:
    """A note as the oracle decided it (its scheduled times, on the deciding host's ``time.monotonic``)."""

    pitch: int
    t_on: float
    t_off: float

    @property
    def duration_s(self) -> float:
        return self.t_off - self.t_on


def scheduled_notes(session_log: str | Path) -> list[ScheduledNote]:
    """Every note the oracle decided in a session (``--session-log``/``LiveStack(session_log=...)``), in log order:
    what midi_out was asked to play, with each note's scheduled duration."""
    from services.oracle.player.session import read_session

    return [
        ScheduledNote(int(n["pitch"]), float(n["t_on"]), float(n["t_off"]))
        for record in read_session(session_log)
        if record["kind"] == "notes"
        for n in record["notes"]
    ]


def max_note_duration_s(config) -> float:
    """The longest note the live stack can schedule with ``config`` (a :class:`~shared.config.MusicHalConfig`): a
    melody note lasts at most the player's longest step (``MAX_IOI_S``) at its speed, a bass or comping note at most
    the voices' ``MAX_DUR_S``. For :func:`note_timing_problems` where a run's scheduled notes are not all known."""
    from services.oracle.player.voices import MAX_DUR_S
    from services.oracle.player.walk import MAX_IOI_S

    speed = config.generation.density * config.generation.tempo
    return max(MAX_IOI_S / speed if speed > 0 else MAX_IOI_S, MAX_DUR_S)


def _play_end(messages: list[list[int]]) -> tuple[int, set[int]]:
    """(index where play ends: the stop's panic, or the end; start indices of the earlier panic blocks)."""
    starts = panic_starts(messages)
    if stop_panic_received(messages):
        return starts[-1], set(starts[:-1])
    return len(messages), set(starts)


def _is_on(message: list[int]) -> bool:
    return (message[0] & 0xF0) == 0x90 and len(message) > 2 and message[2] > 0


def _is_off(message: list[int]) -> bool:
    return (message[0] & 0xF0) == 0x80 or ((message[0] & 0xF0) == 0x90 and len(message) > 2 and message[2] == 0)


def played_notes(messages: list[list[int]]) -> list[PlayedNote]:
    """The notes played before the stop's panic (see :func:`note_pairing_problems` for what play is), in note-on
    order: a note-off ends the sounding note of its channel and pitch; a panic block ends every note (no
    ``off_index``)."""
    stop, earlier = _play_end(messages)
    notes: list[PlayedNote] = []
    sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> index into notes
    i = 0
    while i < stop:
        if i in earlier:
            sounding.clear()
            i += 32
            continue
        message = messages[i]
        key = (message[0] & 0x0F, message[1] if len(message) > 1 else -1)
        if _is_on(message):
            sounding[key] = len(notes)
            notes.append(PlayedNote(key[0], key[1], i, None))
        elif _is_off(message) and key in sounding:
            k = sounding.pop(key)
            notes[k] = PlayedNote(key[0], key[1], notes[k].on_index, i)
        i += 1
    return notes


def note_timing_problems(
    timed: Sequence[tuple[float, list[int]]],
    *,
    scheduled: Sequence[ScheduledNote] | None = None,
    max_duration_s: float | None = None,
    slack_s: float = HUNG_NOTE_SLACK_S,
) -> list[str]:
    """Hung-note check by time: every note played before the stop's panic and ended by a note-off of its own (the
    scheduler's, a steal's, or the stop's own note-offs, which the engine sends before CC123) must have lasted, at
    the reader, at most its scheduled duration + ``slack_s``. A scheduler that never sent a note-off passes the
    pairing check (the engine ends a stolen note first and every sounding note before a panic) but not this one.

    ``timed`` is ``(receive time, message)`` (:attr:`TimedJackReader.timed`). ``scheduled`` (the session's notes,
    :func:`scheduled_notes`) gives each note its own duration: the k-th note-on of a pitch is the k-th scheduled note
    of that pitch (by scheduled time, then log order: the order midi_out's scheduler sends them in), and a note-on
    no scheduled note accounts for is a problem. ``max_duration_s`` instead bounds every note by one duration (for
    runs where some scheduled notes never reach the port: a killed midi_out, a mute). Returns one-line problems.
    """
    if (scheduled is None) == (max_duration_s is None):
        raise ValueError("give exactly one of scheduled and max_duration_s")
    times = [float(t) for t, _ in timed]
    messages = [list(m) for _, m in timed]
    problems: list[str] = []
    queues: dict[int, list[ScheduledNote]] = {}
    if scheduled is not None:
        order = sorted(range(len(scheduled)), key=lambda k: (scheduled[k].t_on, k))
        for k in order:
            queues.setdefault(scheduled[k].pitch, []).append(scheduled[k])
        for queue in queues.values():
            queue.reverse()  # pop() takes the earliest
    for note in played_notes(messages):
        if scheduled is not None:
            queue = queues.get(note.pitch)
            if not queue:
                problems.append(
                    f"note-on {(note.channel, note.pitch)} at message {note.on_index} matches no scheduled note"
                )
                continue
            duration_s = queue.pop().duration_s
        else:
            duration_s = float(max_duration_s)
        if note.off_index is None:
            continue  # ended by a panic or not at all: note_pairing_problems judges it
        lasted_s = times[note.off_index] - times[note.on_index]
        if lasted_s > duration_s + slack_s:
            problems.append(
                f"note {(note.channel, note.pitch)} (on at message {note.on_index}) sounded "
                f"{lasted_s:.3f} s, longer than its scheduled {duration_s:.3f} s + {slack_s:g} s: "
                "hung until a steal or a stop"
            )
    return problems


def hung_note_problems(
    timed: Sequence[tuple[float, list[int]]],
    *,
    scheduled: Sequence[ScheduledNote] | None = None,
    max_duration_s: float | None = None,
    slack_s: float = HUNG_NOTE_SLACK_S,
    allowed_cuts: int = 0,
    require_stop_panic: bool = True,
) -> list[str]:
    """:func:`note_pairing_problems` (order) and :func:`note_timing_problems` (each note's length) of one stream."""
    messages = [list(m) for _, m in timed]
    return note_pairing_problems(
        messages, allowed_cuts=allowed_cuts, require_stop_panic=require_stop_panic
    ) + note_timing_problems(timed, scheduled=scheduled, max_duration_s=max_duration_s, slack_s=slack_s)


def first_note_age_s(timed: Sequence[tuple[float, list[int]]], now: float) -> float:
    """Seconds since the first note-on of ``timed`` arrived (0 before any): a test stops only once this exceeds a
    note's duration plus twice :data:`HUNG_NOTE_SLACK_S`, so a note left on until the stop is longer than the bound."""
    return next((now - t for t, m in timed if _is_on(m)), 0.0)


def stop_stats_problems(final: dict, *, steals_expected: bool = False) -> list[str]:
    """What a graceful, drained ``LiveStack.stop`` reports about midi_out (``final["midi_out"]``, taken after the
    drain, before its stop): the notes still sounding are the notes the stop's panic has to end (its own note-offs)
    — a graceful stop ends none; and no note was stolen (a steal ends the oldest note early, or a hung one late)
    unless ``steals_expected``."""
    counters = (final.get("midi_out") or {}).get("counters")
    if counters is None:
        return ["no midi_out figures from the graceful stop (its drain did not finish)"]
    problems = []
    if counters.get("sounding", 0):
        problems.append(f"{counters['sounding']} note(s) still sounding after the drain: the stop had to end them")
    if not steals_expected and counters.get("steals", 0):
        problems.append(f"{counters['steals']} note(s) stolen: more notes sounding at once than channels")
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
    return [
        [status, 101, 0],
        [status, 100, param_lsb],
        [status, 6, value],
        [status, 38, 0],
        [status, 101, 127],
        [status, 100, 127],
    ]


def note_on_messages(messages: list[list[int]]) -> list[list[int]]:
    """The note-on messages (velocity > 0) of raw MIDI ``messages``, in order (``[m[1] for m in ...]``: the pitches)."""
    return [m for m in messages if (m[0] & 0xF0) == 0x90 and m[2] > 0]
