"""Record every MIDI message sent, with its time, and write a Standard MIDI File (mido, atomic write).

The file is type 0 (one track, all 16 channels kept as sent, so MPE member channels survive), 960 ticks per
beat at 120 bpm (one tick ≈ 0.52 ms). Tick positions are rounded from absolute times, so rounding never drifts.

>>> rec = SmfRecorder()
>>> rec.record([0x91, 60, 100], t=10.0); rec.record([0x81, 60, 0], t=10.5)
>>> [m.bytes() for m in rec.to_midi_file().tracks[0] if not m.is_meta]
[[145, 60, 100], [129, 60, 0]]
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mido

from shared.errors import ParameterError
from shared.model_io import atomic_write_bytes

__all__ = ["SmfRecorder", "read_smf_messages"]


class SmfRecorder:
    """Thread-safe list of (time, message bytes); ``save(path)`` writes them as a Standard MIDI File.

    Parameters
    ----------
    ticks_per_beat : int
        SMF resolution.
    tempo_us_per_beat : int
        Tempo written in the file (µs per quarter note).
    clock : callable
        Time source used when :meth:`record` is called without ``t``.
    """

    def __init__(
        self,
        *,
        ticks_per_beat: int = 960,
        tempo_us_per_beat: int = 500_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 24 <= ticks_per_beat <= 32767:
            raise ParameterError(f"ticks_per_beat must be in 24..32767, got {ticks_per_beat}")
        if not 1 <= tempo_us_per_beat <= 0xFFFFFF:
            raise ParameterError(f"tempo_us_per_beat must be in 1..16777215, got {tempo_us_per_beat}")
        self.ticks_per_beat = ticks_per_beat
        self.tempo_us_per_beat = tempo_us_per_beat
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[tuple[float, tuple[int, ...]]] = []

    def record(self, message: list[int], *, t: float | None = None) -> None:
        """Remember ``message`` sent at monotonic time ``t`` (now when omitted)."""
        if not message:
            raise ParameterError("cannot record an empty MIDI message")
        stamp = self._clock() if t is None else float(t)
        with self._lock:
            self._events.append((stamp, tuple(message)))

    @property
    def events(self) -> list[tuple[float, list[int]]]:
        with self._lock:
            return [(t, list(m)) for t, m in self._events]

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def to_midi_file(self) -> mido.MidiFile:
        """Build the in-memory SMF (type 0); times are relative to the first recorded message."""
        events = self.events
        midi_file = mido.MidiFile(type=0, ticks_per_beat=self.ticks_per_beat)
        track = mido.MidiTrack()
        midi_file.tracks.append(track)
        track.append(mido.MetaMessage("set_tempo", tempo=self.tempo_us_per_beat, time=0))
        events.sort(key=lambda item: item[0])  # stable: equal times keep their send order
        t0 = events[0][0] if events else 0.0
        previous_tick = 0
        for stamp, data in events:
            tick = int(round(mido.second2tick(stamp - t0, self.ticks_per_beat, self.tempo_us_per_beat)))
            tick = max(tick, previous_tick)
            message = mido.Message.from_bytes(data)
            track.append(message.copy(time=tick - previous_tick))
            previous_tick = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        return midi_file

    def save(self, path: str | Path) -> Path:
        """Write the SMF atomically (temp file + rename) and return its path."""
        path = Path(path)
        buffer = io.BytesIO()
        self.to_midi_file().save(file=buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return path


def read_smf_messages(path: str | Path) -> list[tuple[float, list[int]]]:
    """Read an SMF back as (seconds from start, message bytes), meta messages left out."""
    midi_file = mido.MidiFile(str(path))
    out: list[tuple[float, list[int]]] = []
    elapsed = 0.0
    for message in midi_file:  # iterating a MidiFile yields times in seconds
        elapsed += message.time
        if not message.is_meta:
            out.append((elapsed, message.bytes()))
    return out
