"""Test helpers for midi_out: a JACK MIDI reader and a receiver model that replays raw bytes."""
from __future__ import annotations

import itertools
import os
import threading

import rtmidi

_counter = itertools.count()


def unique_name(prefix: str) -> str:
    """JACK client names must be unique per server."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


class JackReader:
    """A python-rtmidi JACK input that collects every message it receives (callback + condition, no sleeps)."""

    def __init__(self, client_name: str | None = None) -> None:
        self.client_name = client_name or unique_name("mh-reader")
        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=self.client_name)
        self.midi_in.ignore_types(sysex=False, timing=True, active_sense=True)
        self.messages: list[list[int]] = []
        self._condition = threading.Condition()

    def _callback(self, event, _data=None) -> None:
        message, _delta = event
        with self._condition:
            self.messages.append(list(message))
            self._condition.notify_all()

    def connect_from(self, port_name: str) -> None:
        """Connect this input to the JACK MIDI output ``port_name`` (``client:port``)."""
        ports = self.midi_in.get_ports()
        matches = [i for i, name in enumerate(ports) if name == port_name]
        if not matches:
            raise RuntimeError(f"JACK source {port_name!r} not found among {ports}")
        self.midi_in.set_callback(self._callback)
        self.midi_in.open_port(matches[0], name="in")

    def open_virtual(self, port_name: str = "in") -> str:
        """Expose a JACK MIDI input port that outputs can open; returns its full name."""
        self.midi_in.set_callback(self._callback)
        self.midi_in.open_virtual_port(port_name)
        return f"{self.client_name}:{port_name}"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[list[int]]:
        """Block until ``count`` messages arrived (or the timeout) and return a copy of them."""
        with self._condition:
            self._condition.wait_for(lambda: len(self.messages) >= count, timeout=timeout_s)
            return [list(m) for m in self.messages]

    def clear(self) -> None:
        with self._condition:
            self.messages.clear()

    def close(self) -> None:
        self.midi_in.cancel_callback()
        self.midi_in.close_port()
        self.midi_in.delete()


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
