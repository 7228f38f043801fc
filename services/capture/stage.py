"""Capture, as pure logic: audio blocks → front end → shared ring; a segmenter over what the ring holds → events.

Two halves run on two threads (see :mod:`services.capture.actor`):

* :meth:`CaptureStage.push` is all an audio callback does: convert the block with the one front end
  (:class:`shared.audio.StreamingFrontEnd`) and write it into the ring, noting when each block landed.
* :meth:`CaptureStage.segment` reads new samples from the ring with its own cursor, feeds them to the same
  :class:`services.capture.segmenter.OnsetSegmenter` the trainer uses, and stamps every event with the time the
  last sample of its analysis window was written (``Event.t_detected``: the start of the pipeline latency).

:class:`FilePlayer` plays a file into :meth:`push` at real-time pace (``--input-file``: demo, tests, rehearsal).
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from shared.audio import StreamingFrontEnd, probe_audio_file
from shared.config import MusicHalConfig
from shared.errors import ParameterError, RingOverrunError
from shared.messages import Event
from shared.ring import AudioRing
from services.capture.segmenter import OnsetSegmenter

__all__ = ["CaptureStage", "FilePlayer"]


def _early_ms(config) -> float:
    """The live segmenter's early view (none when it would not be shorter than the analysis window)."""
    early = config.segmenter.early_ms
    return early if early < config.segmenter.window_ms else 0.0


class CaptureStage:
    """Front end + ring writer + streaming segmenter for one input stream."""

    is_online = True

    def __init__(self, config: MusicHalConfig, ring: AudioRing, *, input_rate_hz: int, channels: int,
                 source: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        if ring.sample_rate_hz != config.audio.sample_rate_hz:
            raise ParameterError(f"ring rate {ring.sample_rate_hz} Hz differs from the internal rate {config.audio.sample_rate_hz} Hz")
        self.config = config
        self.ring = ring
        self.clock = clock
        self.source = source
        self.front_end = StreamingFrontEnd(input_rate_hz=input_rate_hz, channels=channels,
                                           output_rate_hz=config.audio.sample_rate_hz,
                                           input_channel=config.audio.input_channel)
        self._write_ends: deque[int] = deque(maxlen=4096)  # ring counter after each write
        self._write_times: deque[float] = deque(maxlen=4096)
        self._log_lock = threading.Lock()
        start = ring.write_counter
        self.segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=config.audio.sample_rate_hz,
                                        start_sample=start, source=source, clock=None,
                                        early_ms=_early_ms(config))
        self.reader = ring.reader(start=start)
        self.counters = {"blocks_written": 0, "samples_written": 0, "events": 0, "segmenter_overruns": 0,
                         "samples_lost": 0, "input_overflows": 0}
        self.finished = threading.Event()

    # ---------------------------------------------------------------- writer side (audio callback)
    def push(self, block: np.ndarray, *, last: bool = False) -> int:
        """Convert one device/file block and append it to the ring; returns the ring's write counter."""
        mono = self.front_end.process(block, last=last)
        end = self.ring.write(mono) if mono.size else self.ring.write_counter
        now = self.clock()
        with self._log_lock:
            self._write_ends.append(end)
            self._write_times.append(now)
        self.counters["blocks_written"] += 1
        self.counters["samples_written"] += int(mono.size)
        if last:
            self.finished.set()
        return end

    def written_at(self, sample_index: int) -> float:
        """Monotonic time the block holding ``sample_index`` was written (earliest known if it is older)."""
        with self._log_lock:
            ends = list(self._write_ends)
            times = list(self._write_times)
        if not ends:
            return self.clock()
        i = bisect_left(ends, sample_index + 1)
        return times[min(i, len(times) - 1)]

    # ---------------------------------------------------------------- segmenter side (its own thread)
    def segment(self, *, timeout_s: float) -> list[Event]:
        """Segment whatever the ring has received since the last call (waiting up to ``timeout_s`` for more)."""
        target = self.reader.cursor + 1
        if self.ring.write_counter < target and not self.finished.is_set():
            try:
                self.ring.wait_for(target, timeout_s=timeout_s)
            except Exception:  # timeout: nothing new
                return []
        try:
            block = self.reader.read_available(max_samples=self.ring.capacity // 2)
        except RingOverrunError:
            # the segmenter fell a whole ring behind: restart it on fresh audio, counted (audio itself is never dropped)
            self.counters["segmenter_overruns"] += 1
            before = self.reader.lost_samples
            start = self.reader.skip_to_latest()
            self.counters["samples_lost"] += self.reader.lost_samples - before
            self.segmenter = OnsetSegmenter(self.config.segmenter, sample_rate_hz=self.config.audio.sample_rate_hz,
                                            start_sample=start, source=self.source, clock=None,
                                            early_ms=_early_ms(self.config))
            return []
        events = self.segmenter.process(block) if block.size else []
        if self.finished.is_set() and self.reader.available() == 0:
            events += self.segmenter.finish()
        return [self._stamp(event) for event in events]

    def _stamp(self, event: Event) -> Event:
        self.counters["events"] += 1
        return replace(event, t_detected=self.written_at(event.window_end - 1))

    @property
    def exhausted(self) -> bool:
        """The input ended and every sample has been segmented."""
        return self.finished.is_set() and self.reader.available() == 0 and self.segmenter.finished


class FilePlayer:
    """Plays an audio file into a callback at real-time pace, in blocks of ``block_frames`` (a rehearsal input).

    Pacing waits on an Event with a timeout (so :meth:`stop` interrupts at once); with ``loop`` the file repeats.
    """

    def __init__(self, path: str | Path, push: Callable[..., int], *, block_frames: int = 256, loop: bool = False,
                 speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        import soundfile as sf

        self.info = probe_audio_file(path)
        if speed <= 0:
            raise ParameterError(f"speed must be > 0, got {speed}")
        self._sf = sf
        self.path = Path(path)
        self.push = push
        self.block_frames = int(block_frames)
        self.loop = loop
        self.speed = speed
        self.clock = clock
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.blocks_played = 0
        self.late_blocks = 0
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

    def start(self) -> "FilePlayer":
        self._thread = threading.Thread(target=self._run, name="musichal-file-player", daemon=True)
        self._thread.start()
        return self

    def _blocks(self):
        while True:
            blocks = self._sf.blocks(str(self.path), blocksize=self.block_frames, dtype="float32", always_2d=True)
            for block in blocks:
                if not np.isfinite(block).all():
                    raise ParameterError(f"{self.path}: contains NaN or infinite samples")
                yield block
            if not self.loop:
                return

    def _run(self) -> None:
        period = self.block_frames / self.info.sample_rate_hz / self.speed
        due = self.clock()
        try:
            previous = None
            for block in self._blocks():
                if previous is not None:
                    self.push(previous)
                    self.blocks_played += 1
                previous = block
                due += period
                delay = due - self.clock()
                if delay < -period:
                    self.late_blocks += 1
                if self._stop.wait(max(0.0, delay)):
                    return
            if previous is not None:
                self.push(previous, last=True)
                self.blocks_played += 1
        except BaseException as error:  # reported through .error by the actor
            self.error = error
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
