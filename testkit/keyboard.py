"""A test player for ``--input-midi``: a JACK MIDI output that plays a score into MusicHal's "MusicHal in" port, and
the figures tests and benchmarks read from what came back (pitch-class correlation, onset → note latencies)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from testkit.midi import unique_name

__all__ = [
    "open_keyboard",
    "timeline",
    "play_score",
    "chord_send_times",
    "pc_histogram",
    "correlation",
    "first_note_latencies_ms",
]


def open_keyboard(port: str = "MusicHal in") -> Any:
    """A JACK MIDI output (JACK-Client, services.midi_out.jack_midi) connected to the input port matching ``port``."""
    from services.midi_out.jack_midi import open_jack_output
    from services.midi_out.ports import choose_port

    return open_jack_output(
        port, virtual_name="out", client_name=unique_name("mh-keyboard"), choose=choose_port, connect_port_name="out"
    )


def timeline(notes: Sequence[Sequence[float]]) -> list[tuple[float, list[int]]]:
    """``(time_s, message)`` of ``(pitch, start_s, dur_s, velocity)`` notes: note-offs before note-ons at the same
    time (a legato line re-strikes cleanly), a chord's notes together."""
    events = []
    for pitch, start, duration, velocity in notes:
        events.append((float(start), 1, [0x90, int(pitch), int(velocity)]))
        events.append((float(start) + float(duration), 0, [0x80, int(pitch), 0]))
    return [(t, message) for t, _, message in sorted(events, key=lambda e: (round(e[0], 6), e[1], e[2][1]))]


def play_score(
    output: Any, notes: Sequence[Sequence[float]], *, lead_s: float = 0.3
) -> list[tuple[float, float, list]]:
    """Send the score at its times (the player's own schedule: the wait paces it, it synchronises nothing) and wait
    until JACK has delivered it; returns ``(sent at, score time, message)`` for every message."""
    pause = threading.Event()
    t0 = time.monotonic() + lead_s
    sent = []
    for t, message in timeline(notes):
        delay = t0 + t - time.monotonic()
        if delay > 0:
            pause.wait(delay)
        output.send(message)
        sent.append((time.monotonic(), round(t, 6), message))
    output.flush()
    return sent


def chord_send_times(sent: Sequence[tuple[float, float, list]]) -> dict[float, float]:
    """Score time of each chord → when its first note-on left the player."""
    first: dict[float, float] = {}
    for t, at_s, message in sent:
        if message[0] & 0xF0 == 0x90 and message[2] > 0:
            first.setdefault(at_s, t)
    return first


def pc_histogram(pitches: Sequence[int]) -> np.ndarray:
    hist = np.zeros(12)
    for pitch in pitches:
        hist[int(pitch) % 12] += 1
    return hist / max(1.0, hist.sum())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def first_note_latencies_ms(
    onsets: Sequence[float], timed: Sequence[tuple[float, list[int]]], *, within_s: float = 0.2
) -> list[float]:
    """For each onset (the player's send time), the time to the first note-on the reader received after it
    (within ``within_s``), in ms: onset → note through JACK MIDI in and out, on one machine's monotonic clock."""
    note_ons = np.array(sorted(t for t, m in timed if (m[0] & 0xF0) == 0x90 and m[2] > 0))
    out = []
    for onset in onsets:
        index = int(np.searchsorted(note_ons, onset))
        if index < note_ons.size and note_ons[index] - onset <= within_s:
            out.append(float(note_ons[index] - onset) * 1000.0)
    return out
