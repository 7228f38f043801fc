"""Capture, as pure logic: audio blocks → front end → shared ring; a segmenter over what the ring holds → events.

Two halves run on two threads (see :mod:`services.capture.actor`):

* :meth:`CaptureStage.push` is all an audio callback does: convert the block with the one front end
  (:class:`shared.audio.StreamingFrontEnd`) and write it into the ring, noting when each block landed.
* :meth:`CaptureStage.segment` reads new samples from the ring with its own cursor, feeds them to the same
  :class:`services.capture.segmenter.OnsetSegmenter` the trainer uses, and stamps every event with the time the
  last sample of its analysis window was written (``Event.t_detected``: the start of the pipeline latency).

What feeds :meth:`CaptureStage.push` is an input source (:mod:`services.capture.sources`).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from services.capture.segmenter import OnsetSegmenter
from shared.audio import StreamingFrontEnd
from shared.config import MusicHalConfig
from shared.errors import ParameterError, RingOverrunError
from shared.messages import Event
from shared.ring import AudioRing

__all__ = ["CaptureStage"]


def _early_ms(config) -> float:
    """The live segmenter's early view (none when it would not be shorter than the analysis window)."""
    early = config.segmenter.early_ms
    return early if early < config.segmenter.window_ms else 0.0


class CaptureStage:
    """Front end + ring writer + streaming segmenter for one input stream."""

    def __init__(
        self,
        config: MusicHalConfig,
        ring: AudioRing,
        *,
        input_rate_hz: int,
        channels: int,
        source: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ring.sample_rate_hz != config.audio.sample_rate_hz:
            raise ParameterError(
                f"ring rate {ring.sample_rate_hz} Hz differs from the internal rate {config.audio.sample_rate_hz} Hz"
            )
        self.config = config
        self.ring = ring
        self.clock = clock
        self.source = source
        self.front_end = StreamingFrontEnd(
            input_rate_hz=input_rate_hz,
            channels=channels,
            output_rate_hz=config.audio.sample_rate_hz,
            input_channel=config.audio.input_channel,
        )
        self._write_ends: deque[int] = deque(maxlen=4096)  # ring counter after each write
        self._write_times: deque[float] = deque(maxlen=4096)
        self._log_lock = threading.Lock()
        start = ring.write_counter
        self.segmenter = OnsetSegmenter(
            config.segmenter,
            sample_rate_hz=config.audio.sample_rate_hz,
            start_sample=start,
            source=source,
            clock=None,
            early_ms=_early_ms(config),
        )
        self.reader = ring.reader(start=start)
        self.counters = {
            "blocks_written": 0,
            "samples_written": 0,
            "events": 0,
            "segmenter_overruns": 0,
            "samples_lost": 0,
            "input_overflows": 0,
        }
        self.finished = threading.Event()
        self.first_onset_s: float | None = None  # onset times (input seconds) of the first and last full events
        self.last_onset_s: float | None = None

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
            self.segmenter = OnsetSegmenter(
                self.config.segmenter,
                sample_rate_hz=self.config.audio.sample_rate_hz,
                start_sample=start,
                source=self.source,
                clock=None,
                early_ms=_early_ms(self.config),
            )
            return []
        events = self.segmenter.process(block) if block.size else []
        if self.finished.is_set() and self.reader.available() == 0:
            events += self.segmenter.finish()
        return [self._stamp(event) for event in events]

    def _stamp(self, event: Event) -> Event:
        self.counters["events"] += 1
        if not event.early:  # the input heard, on its own clock: seconds since the first sample entered the ring
            onset_s = event.onset_sample / self.config.audio.sample_rate_hz
            self.first_onset_s = onset_s if self.first_onset_s is None else self.first_onset_s
            self.last_onset_s = onset_s
        return replace(event, t_detected=self.written_at(event.window_end - 1))

    @property
    def exhausted(self) -> bool:
        """The input ended and every sample has been segmented."""
        return self.finished.is_set() and self.reader.available() == 0 and self.segmenter.finished
