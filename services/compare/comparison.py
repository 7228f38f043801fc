"""The whole perception comparison: :func:`run_comparison` measures traditional 22-D and Wav2Vec perception on the
same events of one clip and returns the results dict (:data:`services.compare.schema.RESULTS_SCHEMA`).

Features are computed by the encoder stage's own code (:func:`~services.encoder.analysis.analyze_array` on the
decoded clip for segmentation and descriptors, :func:`~services.encoder.analysis.analyze_windows` with a hybrid
:class:`~services.encoder.views.HybridPerceptionModule` for both views); timings call the same functions
(:func:`~services.encoder.features.traditional_features`, :meth:`Wav2VecMusicEncoder.encode` /
:meth:`~Wav2VecMusicEncoder.encode_batch`) window by window. The figures are the pure functions of
:mod:`services.compare.metrics`.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from services.compare.metrics import (
    CONSONANCE_DIMENSION,
    consonance_targets,
    dimension_stats,
    figures_from_results,
    pitch_class_labels,
    probe_classification,
    probe_regression,
    projection_2d,
    read_reference_notes,
    recommend,
    timing_summary,
    vocabulary_stats,
)
from services.encoder.analysis import analyze_array, analyze_windows
from services.encoder.features import traditional_features
from services.encoder.views import HybridPerceptionModule
from services.encoder.wav2vec import Wav2VecMusicEncoder
from shared.audio import load_audio_internal
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Event

__all__ = ["SCHEMA_VERSION", "run_comparison"]

SCHEMA_VERSION = 1


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return _peak_rss_bytes()


def _fixed_events(samples: int, *, sample_rate_hz: int, window_samples: int, source: str) -> list[Event]:
    starts = range(0, max(samples - window_samples, 0) + 1, window_samples)
    return [
        Event(
            event_id=i,
            onset_sample=s,
            window_start=s,
            window_end=min(s + window_samples, samples),
            sample_rate_hz=sample_rate_hz,
            source=source,
        )
        for i, s in enumerate(starts)
    ]


def run_comparison(
    path: str | Path,
    *,
    config: MusicHalConfig | None = None,
    wav2vec_model: str | None = None,
    encoder: Wav2VecMusicEncoder | None = None,
    use_gpu: bool = False,
    segments: int | None = None,
    duration_s: float | None = None,
    reference: str | Path | None = None,
    vocabulary_size: int = 16,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Measure both perceptions on the same events of ``path`` and return the results dict
    (:data:`services.compare.schema.RESULTS_SCHEMA`).

    Parameters
    ----------
    config:
        Segmenter, rates, wav2vec layer/batch size and the encoder deadline (defaults: ``MusicHalConfig()``).
    wav2vec_model:
        Checkpoint name or local directory (default ``config.wav2vec.model``); ignored when ``encoder`` is given.
    encoder:
        An already loaded encoder (tests inject slow or instrumented ones); its ``load_seconds`` is reported.
    segments, duration_s:
        Analyse at most the first ``segments`` events of the first ``duration_s`` seconds.
    reference:
        MIDI file with the true notes: pitch-class and consonance targets come from it.
    clock:
        Time source in seconds for every timing (tests inject a fake one).

    Raises
    ------
    DeviceError
        The wav2vec checkpoint cannot be loaded (one line saying how to provide it).
    AudioInputError
        The audio cannot be read. ParameterError: bad options or no events at all.
    """
    config = config or MusicHalConfig()
    if segments is not None and int(segments) < 2:
        raise ParameterError(f"segments must be >= 2, got {segments}")
    if duration_s is not None and not float(duration_s) > 0:
        raise ParameterError(f"duration must be > 0 s, got {duration_s}")
    if not 2 <= int(vocabulary_size) <= 65_536:
        raise ParameterError(f"vocabulary_size must be in 2..65536, got {vocabulary_size}")
    sr = config.audio.sample_rate_hz
    warnings_out: list[str] = []
    notes = read_reference_notes(reference) if reference is not None else None

    # -- the audio at the internal rate, cut to --duration, segmented and described from memory
    audio = load_audio_internal(path, output_rate_hz=sr, input_channel=config.audio.input_channel)
    if duration_s is not None:
        audio = audio[: int(round(float(duration_s) * sr))]
    if audio.size == 0:
        raise ParameterError(f"{path}: no audio to analyse")
    traditional_only = HybridPerceptionModule(vocabulary_size=max(2, int(vocabulary_size)), enable_wav2vec=False)
    segment_started = clock()
    events, first_pass = analyze_array(audio, config, traditional_only, source=str(path))
    segmentation_s = clock() - segment_started
    segmentation = "onsets"
    window_samples = int(round(config.segmenter.window_ms * sr / 1000.0))
    if len(events) < 2:
        segmentation = "fixed"
        warnings_out.append(
            f"only {len(events)} onset(s) found: analysing fixed {config.segmenter.window_ms:.0f} ms windows instead"
        )
        events = _fixed_events(
            audio.size, sample_rate_hz=sr, window_samples=min(window_samples, audio.size), source=str(path)
        )
        first_pass = None
    if segments is not None:
        events = events[: int(segments)]
        first_pass = first_pass[: int(segments)] if first_pass is not None else None
    if len(events) < 2:
        raise ParameterError(f"{path}: fewer than 2 events to compare")
    windows = [audio[e.window_start : e.window_end] for e in events]
    durations = (
        [d.duration_s for d, _ in first_pass] if first_pass is not None else [e.window_samples / sr for e in events]
    )
    audio_seconds = float(max(events[-1].onset_s + durations[-1], events[-1].window_end / sr) - events[0].onset_s)
    audio_seconds = max(audio_seconds, sum(w.size for w in windows) / sr / len(windows))

    # -- traditional: warm-up (first call: imports, caches) then per window
    started = clock()
    traditional_features(windows[0], sample_rate_hz=sr)
    trad_warmup_s = clock() - started
    trad_times = []
    for window in windows:
        started = clock()
        traditional_features(window, sample_rate_hz=sr)
        trad_times.append(clock() - started)

    # -- wav2vec: load (+ warm-up inside the constructor), per window single, then batched
    rss_before, peak_before = _rss_bytes(), _peak_rss_bytes()
    cuda = None
    if encoder is None:
        if use_gpu:
            cuda = _cuda_reset()
        started = clock()
        encoder = Wav2VecMusicEncoder(
            wav2vec_model or config.wav2vec.model, layer=config.wav2vec.layer, use_gpu=use_gpu
        )
        load_s = clock() - started
    else:
        load_s = float(getattr(encoder, "load_seconds", 0.0))
    if getattr(encoder, "is_fallback", False):
        raise ParameterError("the wav2vec encoder is in fallback mode: nothing to compare")
    if encoder.device == "cuda" and cuda is None:
        cuda = _cuda_reset()
    rss_loaded = _rss_bytes()
    started = clock()  # the first call at the clip's window length (allocations, kernel choice) is warm-up
    encoder.encode(windows[0], sr)
    first_call_s = clock() - started
    single_times, single_vectors = [], []
    for event, window in zip(events, windows):
        started = clock()
        single_vectors.append(encoder.encode(window, sr, event.onset_s).vector)
        single_times.append(clock() - started)
    batch_size = config.wav2vec.batch_size
    batch_total = 0.0
    batch_vectors = []
    for begin in range(0, len(windows), batch_size):
        started = clock()
        batch_vectors.extend(f.vector for f in encoder.encode_batch(windows[begin : begin + batch_size], sr))
        batch_total += clock() - started
    batch_mismatch = float(np.max(np.abs(np.stack(batch_vectors) - np.stack(single_vectors))))

    # -- the analysed views: the encoder stage's single feature path, both views per event
    hybrid = HybridPerceptionModule(vocabulary_size=max(2, int(vocabulary_size)), hybrid=True, wav2vec=encoder)
    analyses = analyze_windows(windows, events, sample_rate_hz=sr, perception=hybrid, durations_s=durations)
    descriptors = [d for d, _ in analyses]
    matrices = {
        view: np.stack([v[view] for _, v in analyses]).astype(np.float64) for view in ("traditional", "wav2vec")
    }
    if first_pass is not None and not np.allclose(
        np.stack([v["traditional"] for _, v in first_pass]), matrices["traditional"]
    ):
        warnings_out.append(
            "traditional vectors differ between analyze_array and analyze_windows (feature path mismatch)"
        )
    memory_w2v = {
        "rss_before_load_bytes": rss_before,
        "rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": _peak_rss_bytes(),
        "peak_rss_growth_bytes": max(0, _peak_rss_bytes() - peak_before),
        "model_bytes": int(getattr(encoder, "memory_bytes", 0)),
        "cuda_max_allocated_bytes": _cuda_peak() if encoder.device == "cuda" else None,
    }

    # -- quality
    onsets = [e.onset_s for e in events]
    if notes is not None:
        labels = pitch_class_labels(onsets, notes=notes)
        label_source = "reference"
        consonance = consonance_targets(onsets, notes=notes)
        consonance_source = "reference_chord"
    else:
        labels = pitch_class_labels(
            onsets, f0_hz=[d.f0_hz for d in descriptors], f0_confidence=[d.f0_confidence for d in descriptors]
        )
        label_source = "f0_estimate"
        consonance = consonance_targets(onsets, traditional=matrices["traditional"])
        consonance_source = "traditional_consonance_dimension"
    labelled = [i for i, label in enumerate(labels) if label is not None]
    probe_inputs = dict(matrices)
    if consonance_source == "traditional_consonance_dimension":  # the target must not be among its own inputs
        probe_inputs_consonance = {
            "traditional": np.delete(matrices["traditional"], CONSONANCE_DIMENSION, axis=1),
            "wav2vec": matrices["wav2vec"],
        }
    else:
        probe_inputs_consonance = probe_inputs
    pitch_probe: dict[str, Any] = {"label_source": label_source, "events_labelled": len(labelled)}
    consonance_probe: dict[str, Any] = {"target_source": consonance_source}
    pipelines: dict[str, Any] = {}
    for view in ("traditional", "wav2vec"):
        if len(labelled) >= 4:
            pitch_probe[view] = probe_classification(
                probe_inputs[view][labelled], [labels[i] for i in labelled], seed=seed
            )
        else:
            pitch_probe[view] = {"accuracy": None, "folds": 0, "events": len(labelled), "classes": 0, "chance": None}
        consonance_probe[view] = probe_regression(probe_inputs_consonance[view], consonance, seed=seed)
        vocabulary, tokens = vocabulary_stats(matrices[view], vocabulary_size=vocabulary_size, seed=seed)
        if vocabulary["collapse"]:
            warnings_out.append(
                f"{view}: token collapse — {vocabulary['used']} of {vocabulary['vocabulary_size']} tokens used"
            )
        points, explained = projection_2d(matrices[view])
        pipelines[view] = {
            "dimension": int(matrices[view].shape[1]),
            "vocabulary": vocabulary,
            "tokens": [int(t) for t in tokens],
            "features": dimension_stats(matrices[view]),
            "projection_2d": points,
            "explained_variance_ratio": explained,
        }
    pipelines["traditional"].update(
        device="cpu",
        model="traditional-22d",
        load_seconds=0.0,
        warmup_seconds=float(trad_warmup_s),
        timing=timing_summary(trad_times, audio_seconds=audio_seconds),
        batch=None,
        memory={"peak_rss_bytes": peak_before, "rss_bytes": rss_before},
    )
    single = timing_summary(single_times, audio_seconds=audio_seconds)
    pipelines["wav2vec"].update(
        device=str(encoder.device),
        model=str(encoder.model_name),
        layer=int(encoder.layer),
        load_seconds=float(load_s),
        warmup_seconds=float(first_call_s),
        timing=single,
        batch={
            "batch_size": int(batch_size),
            "total_s": float(batch_total),
            "per_window_ms": float(batch_total * 1e3 / len(windows)),
            "real_time_factor": float(batch_total / audio_seconds),
            "speedup_vs_single": float(single["total_s"] / batch_total) if batch_total > 0 else None,
            "max_abs_difference_vs_single": batch_mismatch,
        },
        memory=memory_w2v,
    )
    if single["real_time_factor"] >= 1.0:
        warnings_out.append(
            f"wav2vec is slower than real time here (real-time factor {single['real_time_factor']:.2f})"
        )
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "musichal-compare",
        "input": {
            "file": str(path),
            "sample_rate_hz": int(sr),
            "audio_seconds": audio_seconds,
            "events": len(events),
            "segmentation": segmentation,
            "segmentation_seconds": float(segmentation_s),
            "reference": str(reference) if reference is not None else None,
            "segments_limit": int(segments) if segments is not None else None,
            "duration_limit_s": float(duration_s) if duration_s is not None else None,
        },
        "settings": {
            "vocabulary_size": int(vocabulary_size),
            "seed": int(seed),
            "encoder_deadline_ms": float(config.cluster.encoder_deadline_ms),
            "window_ms": float(config.segmenter.window_ms),
            "use_gpu": bool(use_gpu),
        },
        "pipelines": pipelines,
        "probes": {"pitch_class": pitch_probe, "consonance": consonance_probe},
        "recommendations": [],
        "warnings": warnings_out,
    }
    results["recommendations"] = recommend(figures_from_results(results))
    return results


def _cuda_reset() -> bool | None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return True
    except Exception:  # noqa: BLE001 - memory figures are optional
        pass
    return None


def _cuda_peak() -> int | None:
    try:
        import torch

        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None
