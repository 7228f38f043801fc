"""Streaming onset segmentation: spectral flux, adaptive median + k·MAD threshold, min gap, silence gate.

The segmenter consumes the internal-rate mono float32 stream in blocks of *any* size and emits one
:class:`~shared.messages.Event` per onset once that onset's fixed-length analysis window
(``onset .. onset + window_ms``) has been completely received. Every decision is made per analysis frame
(``frame_samples`` long, every ``hop_samples``) from the samples alone, one frame at a time, so the events do
not depend on how the stream was cut into blocks: the trainer (file blocks) and the live system (device
blocks through the ring) get identical events from identical samples.

Algorithm, per frame ``i`` (frame ``i`` covers samples ``[i·hop - frame/2, i·hop + frame/2)``; the stream is
preceded by ``frame/2`` virtual zeros so an onset at sample 0 is found):

1. Hann-windowed magnitude spectrum, log-compressed: ``S_i = log1p(10⁴ · |X_i| / sum(window))``.
2. Onset function ``flux_i = mean(max(S_i - S_{i-1}, 0))`` over bins (0 when the frame is gated as silence:
   its RMS is below ``silence_db``).
3. Frame ``i`` is an onset when ``flux_i`` is the maximum of frames ``i-3 .. i+2`` (strictly above the three
   before), ``flux_i >= median + threshold_k · MAD`` of the last ``threshold_window_frames`` flux values
   (ending at ``i+2``), ``flux_i >= min_flux``, and it is at least ``min_gap_ms`` after the previous onset.
4. The onset sample is the frame centre minus half a hop (the flux is a difference of two frames).

The decision for frame ``i`` needs two frames of look-ahead (``frame/2 + 2·hop`` samples: 15 ms at the
defaults), far less than the analysis window, so it never delays an event.

>>> import numpy as np
>>> from shared.config import SegmenterConfig
>>> sr = 48000
>>> t = np.arange(sr) / sr
>>> tone = (0.5 * np.sin(2 * np.pi * 440 * t) * (t > 0.25)).astype(np.float32)
>>> events = segment_signal(tone, SegmenterConfig(), sample_rate_hz=sr)
>>> len(events), abs(events[0].onset_sample - 12000) < 512
(1, True)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from shared.config import SegmenterConfig
from shared.errors import ParameterError
from shared.messages import Event

__all__ = ["OnsetSegmenter", "segment_signal"]

_LOOKAHEAD_FRAMES = 2
_PRE_MAX_FRAMES = 3
_LOG_GAMMA = 1.0e4


class OnsetSegmenter:
    """Block-size independent streaming onset detector (see module docstring for the algorithm).

    Parameters
    ----------
    config:
        Segmentation settings (frame, hop, window length, threshold, gap, silence gate).
    sample_rate_hz:
        Rate of the incoming stream (the internal rate).
    start_sample:
        Absolute sample index of the first sample given to :meth:`process` (ring index on a live stream).
    source:
        Copied into every event (file or device name).
    clock:
        Called to stamp ``Event.t_detected`` when an event is emitted; ``None`` stamps 0.0 (reproducible
        offline events). Defaults to ``time.monotonic``.
    early_ms:
        When > 0, every onset also yields an *early* event (``Event.early``) as soon as its first ``early_ms``
        have arrived, with that short window (the live oracle's early view: pitch and chroma, influence only).
        It carries the id its full event will have. The trainer and offline analysis leave it at 0.
    """

    def __init__(
        self,
        config: SegmenterConfig,
        *,
        sample_rate_hz: int,
        start_sample: int = 0,
        source: str = "",
        clock: Callable[[], float] | None = time.monotonic,
        early_ms: float = 0.0,
    ) -> None:
        if not isinstance(config, SegmenterConfig):
            raise ParameterError(f"config must be a SegmenterConfig, got {type(config).__name__}")
        if not 1_000 <= int(sample_rate_hz) <= 384_000:
            raise ParameterError(f"sample_rate_hz must be in 1000..384000, got {sample_rate_hz}")
        if int(start_sample) < 0:
            raise ParameterError(f"start_sample must be >= 0, got {start_sample}")
        self.config = config
        self.sample_rate_hz = int(sample_rate_hz)
        self.start_sample = int(start_sample)
        self.source = str(source)
        self.clock = clock
        self.window_samples = max(1, int(round(config.window_ms * 1e-3 * self.sample_rate_hz)))
        self.min_gap_samples = int(round(config.min_gap_ms * 1e-3 * self.sample_rate_hz))
        if early_ms < 0 or early_ms * 1e-3 * self.sample_rate_hz >= self.window_samples:
            raise ParameterError(f"early_ms must be in 0..window_ms, got {early_ms}")
        self.early_samples = int(round(early_ms * 1e-3 * self.sample_rate_hz))
        self._frame = config.frame_samples
        self._hop = config.hop_samples
        self._half = config.frame_samples // 2
        self._hann = np.hanning(self._frame + 2)[1:-1].astype(np.float64)  # no zero end points
        self._spec_scale = _LOG_GAMMA / float(self._hann.sum())
        self._silence_rms = 10.0 ** (config.silence_db / 20.0)
        #: samples of look-back a caller must keep to slice any window that may still be emitted
        self.max_lookback_samples = self.window_samples + self._frame + (_LOOKAHEAD_FRAMES + 2) * self._hop
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream (start again at ``start_sample``); the configuration is kept."""
        self._buffer = np.zeros(self._half, dtype=np.float32)  # virtual zeros before the stream
        self._buffer_origin = -self._half  # stream-relative index of _buffer[0]
        self._received = 0  # samples received (stream-relative)
        self._next_frame = 0
        self._prev_spec: np.ndarray | None = None
        self._flux: deque[float] = deque(
            maxlen=max(self.config.threshold_window_frames, _PRE_MAX_FRAMES + _LOOKAHEAD_FRAMES + 1)
        )
        self._flux_first_frame = 0  # frame index of _flux[0]
        self._last_onset: int | None = None
        self._pending: list[tuple[int, float, int]] = []  # (stream-relative onset, strength, id), window not complete
        self._early: list[tuple[int, float, int]] = []  # the same, early window not yet complete
        self._next_event_id = 0
        self._finished = False

    @property
    def finished(self) -> bool:
        """True after :meth:`finish` (until :meth:`reset`)."""
        return self._finished

    @property
    def samples_received(self) -> int:
        """Samples given to :meth:`process` since the last reset."""
        return self._received

    # ------------------------------------------------------------------ processing
    def process(self, block: np.ndarray, *, reset: bool = False) -> list[Event]:
        """Consume one block; return the events whose analysis windows are now complete.

        Raises
        ------
        ParameterError
            If the block is not 1-D, or after :meth:`finish` without :meth:`reset`.
        """
        if reset:
            self.reset()
        if self._finished:
            raise ParameterError("segmenter is finished; call reset() before feeding a new stream")
        block = np.asarray(block)
        if block.ndim != 1:
            raise ParameterError(f"segmenter blocks must be mono 1-D arrays, got shape {block.shape}")
        if block.size:
            block = block.astype(np.float32, copy=False)
            if not np.isfinite(block).all():
                block = np.where(np.isfinite(block), block, np.float32(0.0))
            self._buffer = np.concatenate([self._buffer, block])
            self._received += block.size
            self._run_frames()
        return self._emit()

    __call__ = process

    def finish(self) -> list[Event]:
        """End of stream: decide the last frames (silence assumed after the end) and return complete events.

        Events whose windows run past the end of the stream are dropped.
        """
        if self._finished:
            return []
        received = self._received
        pad = np.zeros(self._frame + (_LOOKAHEAD_FRAMES + 2) * self._hop, dtype=np.float32)
        self._buffer = np.concatenate([self._buffer, pad])
        self._received += pad.size
        self._run_frames()
        self._received = received
        events = self._emit()
        self._pending.clear()
        self._early.clear()
        self._finished = True
        return events

    def _run_frames(self) -> None:
        hop, frame, half = self._hop, self._frame, self._half
        while True:
            frame_start = self._next_frame * hop - half  # stream-relative
            if frame_start + frame > self._received:
                break
            offset = frame_start - self._buffer_origin
            samples = self._buffer[offset : offset + frame].astype(np.float64)
            self._push_frame(samples)
            self._next_frame += 1
        # keep only what the next frame needs
        keep_from = self._next_frame * hop - half - self._buffer_origin
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_origin += keep_from

    def _push_frame(self, samples: np.ndarray) -> None:
        spec = np.log1p(self._spec_scale * np.abs(np.fft.rfft(samples * self._hann)))
        rms = float(np.sqrt(np.mean(samples * samples)))
        if self._prev_spec is None:
            flux = float(np.mean(spec))
        else:
            flux = float(np.mean(np.maximum(spec - self._prev_spec, 0.0)))
        self._prev_spec = spec
        if rms < self._silence_rms:
            flux = 0.0
        if len(self._flux) == self._flux.maxlen:
            self._flux_first_frame += 1
        self._flux.append(flux)
        self._decide(self._next_frame - _LOOKAHEAD_FRAMES)

    def _decide(self, frame_index: int) -> None:
        if frame_index < 0:
            return
        values = np.fromiter(self._flux, dtype=np.float64, count=len(self._flux))
        position = frame_index - self._flux_first_frame
        candidate = values[position]
        config = self.config
        if candidate <= 0.0 or candidate < config.min_flux:
            return
        after = values[position + 1 : position + 1 + _LOOKAHEAD_FRAMES]
        before = values[max(0, position - _PRE_MAX_FRAMES) : position]
        if after.size and candidate < after.max():
            return
        if before.size and candidate <= before.max():
            return
        history = values[-config.threshold_window_frames :]
        if history.size < config.threshold_window_frames:  # the virtual silence before the stream: flux 0
            history = np.concatenate((np.zeros(config.threshold_window_frames - history.size), history))
        median = float(np.median(history))
        mad = float(np.median(np.abs(history - median)))
        if candidate < median + config.threshold_k * mad:
            return
        onset = max(0, frame_index * self._hop - self._hop // 2)
        if self._last_onset is not None and onset - self._last_onset < self.min_gap_samples:
            return
        self._last_onset = onset
        self._pending.append((onset, candidate, self._next_event_id))
        if self.early_samples:
            self._early.append((onset, candidate, self._next_event_id))
        self._next_event_id += 1

    def _emit(self) -> list[Event]:
        events: list[Event] = []
        for queue, length, early in (
            (self._early, self.early_samples, True),
            (self._pending, self.window_samples, False),
        ):
            while queue and queue[0][0] + length <= self._received:
                onset, strength, event_id = queue.pop(0)
                absolute = self.start_sample + onset
                events.append(
                    Event(
                        event_id=event_id,
                        onset_sample=absolute,
                        window_start=absolute,
                        window_end=absolute + length,
                        sample_rate_hz=self.sample_rate_hz,
                        strength=float(strength),
                        t_detected=self.clock() if self.clock is not None else 0.0,
                        source=self.source,
                        early=early,
                    )
                )
        return events


def segment_signal(
    signal: np.ndarray,
    config: SegmenterConfig,
    *,
    sample_rate_hz: int,
    block_samples: int = 4096,
    start_sample: int = 0,
    source: str = "",
) -> list[Event]:
    """Segment a whole internal-rate mono signal by feeding :class:`OnsetSegmenter` block by block.

    Events are stamped ``t_detected=0.0`` so repeated runs compare equal.

    Raises
    ------
    ParameterError
        If ``signal`` is not 1-D or ``block_samples < 1``.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ParameterError(f"signal must be mono 1-D, got shape {signal.shape}")
    if int(block_samples) < 1:
        raise ParameterError(f"block_samples must be >= 1, got {block_samples}")
    segmenter = OnsetSegmenter(
        config, sample_rate_hz=sample_rate_hz, start_sample=start_sample, source=source, clock=None
    )
    events: list[Event] = []
    for begin in range(0, signal.size, int(block_samples)):
        events.extend(segmenter.process(signal[begin : begin + int(block_samples)]))
    events.extend(segmenter.finish())
    return events
