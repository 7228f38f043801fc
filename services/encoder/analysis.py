"""Analysis: one code path from (event, window) to descriptors and feature vectors — offline and live.

* :func:`analyze_windows` — windows + events → ``[(EventDescriptors, {view: vector})]``. The trainer and the
  live encoder both call it; nothing else computes features.
* :func:`analyze_blocks` — a stream of internal-rate mono blocks (an iterator, or an array cut into blocks)
  → :class:`~services.capture.segmenter.OnsetSegmenter` block by block → windows → :func:`analyze_windows`.
* :func:`analyze_file` — the trainer's path: file → :func:`shared.audio.iter_file_blocks` (the same front end
  as live capture) → :func:`analyze_blocks`.

Which views are computed is the perception module's choice (:mod:`services.encoder.views`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from services.capture.segmenter import OnsetSegmenter
from services.encoder.expression import slice_expression
from services.encoder.features import describe_event, traditional_features
from services.encoder.perception import PerceptionViews
from services.encoder.symbolic import symbolic_view
from shared.audio import iter_file_blocks
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Event, EventDescriptors

__all__ = ["VIEWS", "Analysis", "analyze_windows", "analyze_blocks", "analyze_array", "analyze_file"]

VIEWS = ("traditional", "wav2vec", "symbolic")

#: One analysed event: its descriptors and a float32 vector per view.
Analysis = tuple[EventDescriptors, dict[str, np.ndarray]]


def analyze_windows(
    windows: Sequence[np.ndarray],
    events: Sequence[Event] | None,
    *,
    sample_rate_hz: int,
    perception: PerceptionViews,
    durations_s: Sequence[float] | None = None,
) -> list[Analysis]:
    """Descriptors and ``{view: float32 vector}`` for each window — the single feature path (trainer and live).

    ``events`` give onset times (``None``: onsets 0). Durations default to the time to the next event in
    ``events`` and the window length for the last one (live: always the window length until known).

    Raises
    ------
    ParameterError
        Mismatched lengths or bad windows.
    """
    if events is not None and len(events) != len(windows):
        raise ParameterError(f"got {len(windows)} windows for {len(events)} events")
    if durations_s is not None and len(durations_s) != len(windows):
        raise ParameterError(f"got {len(durations_s)} durations for {len(windows)} windows")
    sr = int(sample_rate_hz)
    results: list[Analysis] = []
    vectors: dict[str, list[np.ndarray]] = {view: [] for view in perception.views}
    for index, window in enumerate(windows):
        onset_s = events[index].onset_s if events is not None else 0.0
        if durations_s is not None:
            duration = float(durations_s[index])
        elif events is not None and index + 1 < len(events):
            duration = max(0.0, events[index + 1].onset_s - onset_s)
        else:
            duration = np.asarray(window).shape[0] / sr
        results.append((describe_event(window, sample_rate_hz=sr, onset_s=onset_s, duration_s=duration), {}))
        if "traditional" in vectors:
            vectors["traditional"].append(traditional_features(window, sample_rate_hz=sr))
    # the slice's expression (loudness envelope, f0 curve against its own f0, CC74), for every event: cheap (the
    # centroid comes from the traditional vector when there is one), by the same call offline and live
    traditional = vectors.get("traditional")
    for index, window in enumerate(windows):
        d = results[index][0]
        centroid = float(traditional[index][20]) if traditional is not None and traditional[index].any() else None
        results[index] = (
            dataclasses.replace(
                d, **slice_expression(window, sample_rate_hz=sr, reference_hz=d.f0_hz, centroid_feature=centroid)
            ),
            results[index][1],
        )
    if perception.transcriber is not None and windows:
        # what the slice holds: its notes, by the same call offline and live
        slice_notes = perception.transcriber.transcribe_windows(list(windows), sample_rate_hz=sr)
        for index in range(len(windows)):
            notes = tuple(
                (n.pitch, n.onset_s, n.duration_s, n.velocity, n.bend_cents, n.glide_cents) for n in slice_notes[index]
            )
            results[index] = (dataclasses.replace(results[index][0], notes=notes), results[index][1])
    if "symbolic" in vectors:
        # the notes the slice holds (its transcription, else its f0, else its chroma classes): services.encoder.symbolic
        vectors["symbolic"] = [symbolic_view(descriptors) for descriptors, _ in results]
    if "wav2vec" in vectors and windows:
        if perception.wav2vec is None:
            raise ParameterError("the wav2vec view was asked for but no encoder is loaded")
        vectors["wav2vec"] = list(perception.wav2vec.extract_batch(list(windows), sr))
    for view, rows in vectors.items():
        for index, row in enumerate(rows):
            results[index][1][view] = np.asarray(row, dtype=np.float32)
    return results


class _History:
    """The last samples of a stream, addressed by absolute index (the trainer's stand-in for the ring)."""

    def __init__(self) -> None:
        self.data = np.zeros(0, dtype=np.float32)
        self.origin = 0

    def append(self, block: np.ndarray) -> None:
        self.data = np.concatenate([self.data, block])

    def window(self, start: int, end: int) -> np.ndarray:
        if start < self.origin or end > self.origin + self.data.size:
            raise ParameterError(f"window [{start}, {end}) is not in the kept history")
        return self.data[start - self.origin : end - self.origin].copy()

    def keep_last(self, samples: int) -> None:
        drop = self.data.size - samples
        if drop > 0:
            self.data = self.data[drop:]
            self.origin += drop


def analyze_blocks(
    blocks: Iterable[np.ndarray],
    config: MusicHalConfig,
    perception: PerceptionViews,
    *,
    source: str = "",
    window_batches: list | None = None,
) -> tuple[list[Event], list[Analysis]]:
    """Segment a stream of internal-rate (``config.audio.sample_rate_hz``) mono float32 blocks with
    :class:`OnsetSegmenter`, block by block, and analyse the windows in batches of ``config.wav2vec.batch_size``.

    Durations are the time to the next onset (the last event: its window length). ``source`` names the stream in
    the events. ``window_batches``, when given, receives each batch's windows (copies) as analysed — the trainer
    hands them to a separate wav2vec stage.
    """
    sr = config.audio.sample_rate_hz
    segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=sr, source=source, clock=None)
    history = _History()
    events: list[Event] = []
    analyses: list[Analysis] = []
    batch_events: list[Event] = []
    batch_windows: list[np.ndarray] = []

    def flush() -> None:
        if batch_events:
            if window_batches is not None:
                window_batches.append(list(batch_windows))
            analyses.extend(
                analyze_windows(
                    batch_windows,
                    batch_events,
                    sample_rate_hz=sr,
                    perception=perception,
                    durations_s=[e.window_samples / sr for e in batch_events],
                )
            )
            batch_events.clear()
            batch_windows.clear()

    def take(new_events: list[Event]) -> None:
        for event in new_events:
            events.append(event)
            batch_events.append(event)
            batch_windows.append(history.window(event.window_start, event.window_end))
        if len(batch_events) >= config.wav2vec.batch_size:
            flush()

    for block in blocks:
        history.append(block)
        take(segmenter.process(block))
        history.keep_last(segmenter.max_lookback_samples)
    take(segmenter.finish())
    flush()
    for index in range(len(events) - 1):
        duration = max(0.0, events[index + 1].onset_s - events[index].onset_s)
        analyses[index] = (dataclasses.replace(analyses[index][0], duration_s=duration), analyses[index][1])
    return events, analyses


def analyze_array(
    signal: np.ndarray,
    config: MusicHalConfig,
    perception: PerceptionViews,
    *,
    block_frames: int = 4096,
    source: str = "",
    window_batches: list | None = None,
) -> tuple[list[Event], list[Analysis]]:
    """:func:`analyze_blocks` on an internal-rate mono array already in memory (cut into ``block_frames`` blocks;
    the segmenter does not depend on the cut)."""
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ParameterError(f"expected a mono 1-D signal, got shape {signal.shape}")
    blocks = (signal[begin : begin + int(block_frames)] for begin in range(0, signal.size, int(block_frames)))
    return analyze_blocks(blocks, config, perception, source=source, window_batches=window_batches)


def analyze_file(
    path: str | Path,
    config: MusicHalConfig,
    perception: PerceptionViews,
    *,
    block_frames: int = 4096,
    window_batches: list | None = None,
) -> tuple[list[Event], list[Analysis]]:
    """The trainer's path: decode ``path`` block by block through the shared front end into :func:`analyze_blocks`.

    Raises :class:`~shared.errors.AudioInputError` for unreadable files.
    """
    blocks = iter_file_blocks(
        path,
        block_frames=block_frames,
        output_rate_hz=config.audio.sample_rate_hz,
        input_channel=config.audio.input_channel,
    )
    return analyze_blocks(blocks, config, perception, source=str(path), window_batches=window_batches)
