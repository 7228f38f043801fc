"""Traditional 22-D vs. Wav2Vec perception on the same events: speed, vocabulary use and musical information.

Pure logic (no printing, no plotting). :func:`run_comparison` is the whole measurement; the pieces are plain
functions so tests can check them one by one:

* :func:`timing_summary` — per-window times → mean/p50/p95/max ms and the real-time factor;
* :func:`dimension_stats` — per-dimension variance and sparsity of a ``(n, d)`` feature matrix;
* :func:`vocabulary_stats` — quantize to a fixed vocabulary (:class:`~services.encoder.quantizer.SymbolQuantizer`),
  usage, entropy and a collapse flag;
* :func:`pitch_class_labels` / :func:`consonance_targets` — probe targets from a reference MIDI or the
  descriptors;
* :func:`probe_classification` / :func:`probe_regression` — cross-validated linear probes (fixed seeds);
* :func:`recommend` — recommendations as a pure function of the measured figures (:func:`figures_from_results`).

Features are computed by the encoder stage's own code (:func:`~services.encoder.analysis.analyze_array` on the
decoded clip for segmentation and descriptors, :func:`~services.encoder.analysis.analyze_windows` with a hybrid
:class:`~services.encoder.views.HybridPerceptionModule` for both views); timings call the same functions
(:func:`~services.encoder.features.traditional_features`, :meth:`Wav2VecMusicEncoder.encode` /
:meth:`~Wav2VecMusicEncoder.encode_batch`) window by window.
"""
from __future__ import annotations

import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from shared.audio import load_audio_internal
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Event
from shared.pitch import hz_to_midi
from services.encoder.features import FEATURE_NAMES, traditional_features
from services.encoder.analysis import analyze_array, analyze_windows
from services.encoder.views import HybridPerceptionModule
from services.encoder.quantizer import SymbolQuantizer
from services.encoder.wav2vec import Wav2VecMusicEncoder

__all__ = [
    "SCHEMA_VERSION",
    "CONSONANCE_DIMENSION",
    "INTERVAL_CLASS_CONSONANCE",
    "timing_summary",
    "dimension_stats",
    "vocabulary_stats",
    "projection_2d",
    "read_reference_notes",
    "pitch_class_labels",
    "consonance_targets",
    "chord_consonance",
    "probe_classification",
    "probe_regression",
    "figures_from_results",
    "recommend",
    "run_comparison",
]

SCHEMA_VERSION = 1
#: Index of the documented consonance dimension of the traditional vector (see services/encoder/features.py).
CONSONANCE_DIMENSION = FEATURE_NAMES.index("consonance")
#: Consonance of each interval class 0..6 (unison/octave, m2/M7, M2/m7, m3/M6, M3/m6, P4/P5, tritone),
#: a coarse ranking after the Plomp–Levelt / Sethares roughness curves: 1 = smooth, 0 = rough.
INTERVAL_CLASS_CONSONANCE = (1.0, 0.0, 0.3, 0.7, 0.8, 0.9, 0.2)
#: Fewer used tokens than this fraction of the vocabulary is reported as a collapse.
COLLAPSE_USED_FRACTION = 0.25
_SPARSITY_RELATIVE = 0.01
_ONSET_TOLERANCE_S = 0.06
_QUALITY_MARGIN = 0.05


# ---------------------------------------------------------------------------------------------- small pure pieces
def timing_summary(per_window_s: Sequence[float], *, audio_seconds: float) -> dict[str, Any]:
    """Mean/p50/p95/max per-window time in ms, the total and the real-time factor (total / ``audio_seconds``).

    A real-time factor below 1 means the extractor keeps up with the audio it analysed.

    Raises
    ------
    ParameterError
        No timings, negative values or ``audio_seconds <= 0``.

    >>> timing_summary([0.001, 0.003], audio_seconds=1.0)["real_time_factor"]
    0.004
    """
    times = np.asarray(per_window_s, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ParameterError("need at least one per-window time")
    if not np.isfinite(times).all() or (times < 0).any():
        raise ParameterError("per-window times must be finite and >= 0")
    if not audio_seconds > 0:
        raise ParameterError(f"audio_seconds must be > 0, got {audio_seconds}")
    ms = times * 1e3
    total = float(times.sum())
    return {
        "windows": int(times.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "total_s": total,
        "real_time_factor": total / float(audio_seconds),
        "per_window_ms": [float(v) for v in ms],
    }


def _matrix(features: Any, *, name: str = "features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ParameterError(f"{name} must be a non-empty (n, d) array, got shape {np.shape(features)}")
    if not np.isfinite(x).all():
        raise ParameterError(f"{name} contain NaN or infinite values")
    return x


def dimension_stats(features: Any) -> dict[str, Any]:
    """Per-dimension variance across events and sparsity of a ``(n, d)`` matrix.

    ``sparsity`` is the fraction of entries whose magnitude is below 1 % of the matrix's largest magnitude
    (1.0 for an all-zero matrix); ``dead_dimensions`` counts dimensions with variance below 1e-10.
    """
    x = _matrix(features)
    variance = x.var(axis=0)
    peak = float(np.abs(x).max())
    sparsity = float((np.abs(x) <= _SPARSITY_RELATIVE * peak).mean()) if peak > 0 else 1.0
    return {
        "dimension": int(x.shape[1]),
        "events": int(x.shape[0]),
        "variance_mean": float(variance.mean()),
        "variance_max": float(variance.max()),
        "variance_min": float(variance.min()),
        "total_variance": float(variance.sum()),
        "dead_dimensions": int((variance < 1e-10).sum()),
        "sparsity": sparsity,
        "variance_per_dimension": [float(v) for v in variance],
    }


def vocabulary_stats(features: Any, *, vocabulary_size: int, seed: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    """Quantize ``(n, d)`` features with a k-means :class:`SymbolQuantizer` of ``vocabulary_size`` symbols
    (L2-normalised, like the live quantizer) and report usage.

    Returns ``(stats, tokens)``; ``stats`` holds the quantizer's usage figures (``used``, ``entropy_bits``,
    ``perplexity``, ``counts`` …) plus ``vocabulary_size``, ``normalized_entropy`` (entropy / log2 of the
    vocabulary size) and ``collapse`` (fewer than 25 % of the symbols, or at most 2, in use).
    """
    x = _matrix(features)
    if not 2 <= int(vocabulary_size) <= 65_536:
        raise ParameterError(f"vocabulary_size must be in 2..65536, got {vocabulary_size}")
    quantizer = SymbolQuantizer(int(vocabulary_size), l2_normalize=True, seed=int(seed)).fit(x)
    tokens = quantizer.transform(x)
    stats = dict(quantizer.usage(tokens))
    counts = list(stats["counts"]) + [0] * (int(vocabulary_size) - len(stats["counts"]))
    stats["counts"] = counts
    stats["vocabulary_size"] = int(vocabulary_size)
    stats["fitted_symbols"] = quantizer.n_centroids
    stats["used_fraction"] = float(stats["used"] / int(vocabulary_size))
    stats["max_entropy_bits"] = float(math.log2(int(vocabulary_size)))
    stats["normalized_entropy"] = float(stats["entropy_bits"] / stats["max_entropy_bits"])
    possible = min(int(vocabulary_size), int(x.shape[0]))
    stats["collapse"] = bool(stats["used"] <= 2 or stats["used"] < COLLAPSE_USED_FRACTION * possible)
    return stats, tokens


def projection_2d(features: Any) -> tuple[list[list[float]], list[float]]:
    """2-D PCA of standardized features: ``(points, explained_variance_ratio)`` (zeros when degenerate)."""
    x = _matrix(features)
    centred = x - x.mean(axis=0)
    scale = centred.std(axis=0)
    centred = np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 1e-12)
    if x.shape[0] < 2 or not np.any(centred):
        return [[0.0, 0.0] for _ in range(x.shape[0])], [0.0, 0.0]
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, s.size)
    points = u[:, :k] * s[:k]
    if k < 2:
        points = np.hstack([points, np.zeros((x.shape[0], 2 - k))])
    energy = (s ** 2).sum()
    ratio = [float(v) for v in (s[:2] ** 2 / energy)] + [0.0] * (2 - k)
    return [[float(a), float(b)] for a, b in points], ratio


# ---------------------------------------------------------------------------------------------- probe targets
def read_reference_notes(path: str | Path) -> list[tuple[int, float, float]]:
    """``(pitch, start_s, end_s)`` of every note in a Standard MIDI File (all tracks and channels, tempo map
    honoured by mido); a note-on without a note-off ends at the end of the file.

    Raises
    ------
    ParameterError
        The file cannot be read as MIDI.
    """
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as error:
        raise ParameterError(f"reference {path}: not a readable MIDI file ({error})") from None
    now = 0.0
    sounding: dict[tuple[int, int], list[float]] = {}
    notes: list[tuple[int, float, float]] = []
    for message in midi:
        now += float(message.time)
        if message.type == "note_on" and message.velocity > 0:
            sounding.setdefault((message.channel, message.note), []).append(now)
        elif message.type in ("note_off", "note_on"):
            starts = sounding.get((message.channel, message.note))
            if starts:
                notes.append((int(message.note), starts.pop(0), now))
    for (channel, pitch), starts in sounding.items():
        notes.extend((int(pitch), start, now) for start in starts)
    notes.sort(key=lambda n: (n[1], n[0]))
    return notes


def _sounding(notes: Sequence[tuple[int, float, float]], onset_s: float) -> list[tuple[int, float, float]]:
    return [n for n in notes if n[1] <= onset_s + _ONSET_TOLERANCE_S and n[2] > onset_s + _ONSET_TOLERANCE_S / 2]


def pitch_class_labels(onsets_s: Sequence[float], *, notes: Optional[Sequence[tuple[int, float, float]]] = None,
                       f0_hz: Optional[Sequence[float]] = None, f0_confidence: Optional[Sequence[float]] = None,
                       min_confidence: float = 0.5) -> list[Optional[int]]:
    """Pitch class per event: from reference ``notes`` (the most recently started note sounding at the onset,
    with a 60 ms tolerance for onset-detection lag; the lowest of simultaneous ones), else from the f0 estimate
    (``None`` where unvoiced or below ``min_confidence``).

    >>> pitch_class_labels([0.0, 1.0], notes=[(60, 0.0, 0.9), (64, 1.0, 2.0)])
    [0, 4]
    >>> pitch_class_labels([0.0], f0_hz=[440.0], f0_confidence=[0.9])
    [9]
    """
    if notes is None and f0_hz is None:
        raise ParameterError("pitch_class_labels needs reference notes or f0 estimates")
    labels: list[Optional[int]] = []
    if notes is not None:
        for onset in onsets_s:
            current = _sounding(notes, float(onset))
            if not current:
                labels.append(None)
                continue
            latest = max(n[1] for n in current)
            labels.append(min(n[0] for n in current if n[1] >= latest - 0.03) % 12)
        return labels
    if len(f0_hz) != len(onsets_s) or (f0_confidence is not None and len(f0_confidence) != len(onsets_s)):
        raise ParameterError("f0_hz / f0_confidence must have one value per onset")
    for index, f0 in enumerate(f0_hz):
        confidence = 1.0 if f0_confidence is None else float(f0_confidence[index])
        if f0 > 0 and confidence >= min_confidence:
            labels.append(int(round(hz_to_midi(float(f0)))) % 12)
        else:
            labels.append(None)
    return labels


def chord_consonance(pitches: Sequence[int]) -> float:
    """Mean :data:`INTERVAL_CLASS_CONSONANCE` over all pairs of pitch classes (1.0 for zero or one note).

    >>> chord_consonance([60, 64, 67]) > chord_consonance([60, 61, 62])
    True
    """
    classes = sorted({int(p) % 12 for p in pitches})
    if len(classes) < 2:
        return 1.0
    scores = []
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            interval = (b - a) % 12
            scores.append(INTERVAL_CLASS_CONSONANCE[min(interval, 12 - interval)])
    return float(np.mean(scores))


def consonance_targets(onsets_s: Sequence[float], *, notes: Optional[Sequence[tuple[int, float, float]]] = None,
                       traditional: Optional[Any] = None) -> list[float]:
    """Consonance per event: :func:`chord_consonance` of the reference notes sounding at the onset, else the
    traditional vector's documented consonance dimension (:data:`CONSONANCE_DIMENSION`)."""
    if notes is not None:
        return [chord_consonance([n[0] for n in _sounding(notes, float(t))]) for t in onsets_s]
    if traditional is None:
        raise ParameterError("consonance_targets needs reference notes or traditional vectors")
    x = _matrix(traditional, name="traditional vectors")
    if x.shape[0] != len(onsets_s):
        raise ParameterError("one traditional vector per onset is needed")
    return [float(v) for v in x[:, CONSONANCE_DIMENSION]]


# ---------------------------------------------------------------------------------------------- probes
def _folds(labels: np.ndarray, *, max_folds: int = 5) -> int:
    _, counts = np.unique(labels, return_counts=True)
    return int(min(max_folds, counts.min()))


def probe_classification(features: Any, labels: Sequence[int], *, seed: int = 0, max_folds: int = 5) -> dict[str, Any]:
    """Cross-validated accuracy of a standardized logistic-regression probe (stratified folds, fixed seed).

    Classes with fewer than 2 examples are dropped. Returns ``accuracy`` (``None`` when fewer than 2 classes
    or folds are possible), ``folds``, ``events``, ``classes`` and the majority-class ``chance`` accuracy.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _matrix(features)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (x.shape[0],):
        raise ParameterError(f"need one label per row: {y.shape} labels for {x.shape[0]} rows")
    classes, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, classes[counts >= 2])
    x, y = x[keep], y[keep]
    result: dict[str, Any] = {"accuracy": None, "folds": 0, "events": int(y.size), "classes": int(np.unique(y).size),
                              "chance": None}
    if np.unique(y).size < 2:
        return result
    folds = _folds(y, max_folds=max_folds)
    result["chance"] = float(np.bincount(y).max() / y.size)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    scores = cross_val_score(model, x, y, cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
    result.update(accuracy=float(scores.mean()), folds=folds)
    return result


def probe_regression(features: Any, targets: Sequence[float], *, seed: int = 0, max_folds: int = 5) -> dict[str, Any]:
    """Cross-validated R² of a standardized RidgeCV probe (shuffled K-fold, fixed seed), computed over all
    out-of-fold predictions. ``r2`` is ``None`` when the target is constant or there are fewer than 4 events."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _matrix(features)
    y = np.asarray(targets, dtype=np.float64)
    if y.shape != (x.shape[0],) or not np.isfinite(y).all():
        raise ParameterError("need one finite target per row")
    result: dict[str, Any] = {"r2": None, "folds": 0, "events": int(y.size), "target_variance": float(y.var())}
    if y.size < 4 or y.var() < 1e-9:
        return result
    folds = int(min(max_folds, y.size // 2))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    predicted = cross_val_predict(model, x, y, cv=KFold(n_splits=folds, shuffle=True, random_state=seed))
    result.update(r2=float(r2_score(y, predicted)), folds=folds)
    return result


# ---------------------------------------------------------------------------------------------- recommendations
def figures_from_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The figures :func:`recommend` decides on, taken from a results dict (see :mod:`services.compare.schema`)."""
    figures: dict[str, Any] = {"deadline_ms": float(results["settings"]["encoder_deadline_ms"])}
    for view in ("traditional", "wav2vec"):
        pipe = results["pipelines"][view]
        figures[view] = {
            "real_time_factor": float(pipe["timing"]["real_time_factor"]),
            "p95_ms": float(pipe["timing"]["p95_ms"]),
            "load_seconds": float(pipe["load_seconds"]),
            "pitch_accuracy": results["probes"]["pitch_class"][view]["accuracy"],
            "consonance_r2": results["probes"]["consonance"][view]["r2"],
            "normalized_entropy": float(pipe["vocabulary"]["normalized_entropy"]),
            "collapse": bool(pipe["vocabulary"]["collapse"]),
        }
    return figures


def _quality(view: Mapping[str, Any]) -> Optional[float]:
    """Mean of the available quality figures in [0, 1] (pitch accuracy, clipped R², normalized entropy)."""
    parts = []
    if view.get("pitch_accuracy") is not None:
        parts.append(float(view["pitch_accuracy"]))
    if view.get("consonance_r2") is not None:
        parts.append(min(1.0, max(0.0, float(view["consonance_r2"]))))
    parts.append(float(view["normalized_entropy"]) * (0.0 if view.get("collapse") else 1.0))
    return float(np.mean(parts))


def _realtime(view: Mapping[str, Any], deadline_ms: float) -> bool:
    return float(view["real_time_factor"]) < 1.0 and float(view["p95_ms"]) <= deadline_ms


def _better(a: Optional[float], b: Optional[float], *, margin: float = _QUALITY_MARGIN) -> Optional[str]:
    """``"a"``/``"b"`` when one beats the other by more than ``margin``; ``None`` for a tie or missing data."""
    if a is None or b is None:
        return None
    if a > b + margin:
        return "a"
    if b > a + margin:
        return "b"
    return None


def recommend(figures: Mapping[str, Any]) -> list[dict[str, str]]:
    """Recommendations derived only from measured ``figures`` (see :func:`figures_from_results`).

    Rows ``{"criterion", "choice", "reason"}``; ``choice`` is ``"traditional"``, ``"wav2vec"``, ``"hybrid"`` or
    ``"either"``. An encoder that is slower than real time (real-time factor ≥ 1) or misses the encoder
    deadline at p95 is never recommended for live use, whatever its quality.

    >>> fast = {"real_time_factor": 0.1, "p95_ms": 20.0, "load_seconds": 1.0, "pitch_accuracy": 0.9,
    ...         "consonance_r2": 0.5, "normalized_entropy": 0.9, "collapse": False}
    >>> slow = dict(fast, real_time_factor=1.5)
    >>> trad = dict(fast, pitch_accuracy=0.5, consonance_r2=0.1, real_time_factor=0.01)
    >>> recommend({"deadline_ms": 250.0, "traditional": trad, "wav2vec": fast})[-1]["choice"]
    'wav2vec'
    >>> recommend({"deadline_ms": 250.0, "traditional": trad, "wav2vec": slow})[-1]["choice"]
    'traditional'
    """
    try:
        deadline = float(figures["deadline_ms"])
        trad, w2v = figures["traditional"], figures["wav2vec"]
        for view in (trad, w2v):
            for key in ("real_time_factor", "p95_ms", "load_seconds", "normalized_entropy", "collapse"):
                view[key]
    except (KeyError, TypeError) as error:
        raise ParameterError(f"figures lack {error}") from None
    rows: list[dict[str, str]] = []
    trad_rt, w2v_rt = _realtime(trad, deadline), _realtime(w2v, deadline)

    def speed(view: Mapping[str, Any]) -> str:
        return f"RTF {float(view['real_time_factor']):.3f}, p95 {float(view['p95_ms']):.1f} ms"

    if w2v_rt and trad_rt:
        rows.append({"criterion": "live (real time)", "choice": "either",
                     "reason": f"both keep up: traditional {speed(trad)}; wav2vec {speed(w2v)} (deadline {deadline:.0f} ms)"})
    elif trad_rt:
        why = "slower than real time" if float(w2v["real_time_factor"]) >= 1.0 else f"p95 over the {deadline:.0f} ms deadline"
        rows.append({"criterion": "live (real time)", "choice": "traditional",
                     "reason": f"wav2vec is {why} here ({speed(w2v)}); traditional {speed(trad)}"})
    elif w2v_rt:
        rows.append({"criterion": "live (real time)", "choice": "wav2vec",
                     "reason": f"traditional does not keep up ({speed(trad)}); wav2vec {speed(w2v)}"})
    else:
        rows.append({"criterion": "live (real time)", "choice": "traditional",
                     "reason": f"neither keeps up on this machine; traditional is the cheaper ({speed(trad)} vs {speed(w2v)})"})

    pitch = _better(w2v.get("pitch_accuracy"), trad.get("pitch_accuracy"))
    if w2v.get("pitch_accuracy") is None or trad.get("pitch_accuracy") is None:
        rows.append({"criterion": "pitch information", "choice": "either", "reason": "no pitch labels to probe with"})
    else:
        rows.append({"criterion": "pitch information", "choice": {"a": "wav2vec", "b": "traditional"}.get(pitch, "either"),
                     "reason": f"probe accuracy traditional {trad['pitch_accuracy']:.2f}, wav2vec {w2v['pitch_accuracy']:.2f}"})

    if w2v["collapse"] and not trad["collapse"]:
        vocab_choice, vocab_reason = "traditional", "wav2vec tokens collapse onto a few symbols"
    elif trad["collapse"] and not w2v["collapse"]:
        vocab_choice, vocab_reason = "wav2vec", "traditional tokens collapse onto a few symbols"
    else:
        better = _better(float(w2v["normalized_entropy"]), float(trad["normalized_entropy"]))
        vocab_choice = {"a": "wav2vec", "b": "traditional"}.get(better, "either")
        vocab_reason = (f"normalized token entropy traditional {float(trad['normalized_entropy']):.2f}, "
                        f"wav2vec {float(w2v['normalized_entropy']):.2f}")
    rows.append({"criterion": "vocabulary use", "choice": vocab_choice, "reason": vocab_reason})

    q_trad, q_w2v = _quality(trad), _quality(w2v)
    quality = _better(q_w2v, q_trad)
    quality_text = f"quality score traditional {q_trad:.2f}, wav2vec {q_w2v:.2f}"
    if not w2v_rt:
        overall = ("traditional", f"wav2vec cannot run live here ({speed(w2v)}); {quality_text}"
                   + ("; wav2vec is still worth it for offline training" if quality == "a" else ""))
    elif quality == "a":
        overall = ("wav2vec", f"real time and more informative: {quality_text}")
    elif quality == "b":
        overall = ("traditional", f"as fast or faster and more informative: {quality_text}")
    else:
        overall = ("hybrid", f"wav2vec keeps up and neither view is clearly better ({quality_text}); "
                             "hybrid keeps both and falls back to traditional")
    rows.append({"criterion": "overall", "choice": overall[0], "reason": overall[1]})
    return rows


# ---------------------------------------------------------------------------------------------- the measurement
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
    return [Event(event_id=i, onset_sample=s, window_start=s, window_end=min(s + window_samples, samples),
                  sample_rate_hz=sample_rate_hz, source=source) for i, s in enumerate(starts)]


def run_comparison(path: str | Path, *, config: Optional[MusicHalConfig] = None, wav2vec_model: Optional[str] = None,
                   encoder: Optional[Wav2VecMusicEncoder] = None, use_gpu: bool = False, segments: Optional[int] = None,
                   duration_s: Optional[float] = None, reference: Optional[str | Path] = None, vocabulary_size: int = 16,
                   seed: int = 0, clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
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
        warnings_out.append(f"only {len(events)} onset(s) found: analysing fixed {config.segmenter.window_ms:.0f} ms windows instead")
        events = _fixed_events(audio.size, sample_rate_hz=sr, window_samples=min(window_samples, audio.size), source=str(path))
        first_pass = None
    if segments is not None:
        events = events[: int(segments)]
        first_pass = first_pass[: int(segments)] if first_pass is not None else None
    if len(events) < 2:
        raise ParameterError(f"{path}: fewer than 2 events to compare")
    windows = [audio[e.window_start:e.window_end] for e in events]
    durations = ([d.duration_s for d, _ in first_pass] if first_pass is not None
                 else [e.window_samples / sr for e in events])
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
        encoder = Wav2VecMusicEncoder(wav2vec_model or config.wav2vec.model, layer=config.wav2vec.layer, use_gpu=use_gpu)
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
        batch_vectors.extend(f.vector for f in encoder.encode_batch(windows[begin:begin + batch_size], sr))
        batch_total += clock() - started
    batch_mismatch = float(np.max(np.abs(np.stack(batch_vectors) - np.stack(single_vectors))))

    # -- the analysed views: the encoder stage's single feature path, both views per event
    hybrid = HybridPerceptionModule(vocabulary_size=max(2, int(vocabulary_size)), hybrid=True, wav2vec=encoder)
    analyses = analyze_windows(windows, events, sample_rate_hz=sr, perception=hybrid, durations_s=durations)
    descriptors = [d for d, _ in analyses]
    matrices = {view: np.stack([v[view] for _, v in analyses]).astype(np.float64) for view in ("traditional", "wav2vec")}
    if first_pass is not None and not np.allclose(np.stack([v["traditional"] for _, v in first_pass]), matrices["traditional"]):
        warnings_out.append("traditional vectors differ between analyze_array and analyze_windows (feature path mismatch)")
    memory_w2v = {"rss_before_load_bytes": rss_before, "rss_after_load_bytes": rss_loaded,
                  "peak_rss_bytes": _peak_rss_bytes(), "peak_rss_growth_bytes": max(0, _peak_rss_bytes() - peak_before),
                  "model_bytes": int(getattr(encoder, "memory_bytes", 0)),
                  "cuda_max_allocated_bytes": _cuda_peak() if encoder.device == "cuda" else None}

    # -- quality
    onsets = [e.onset_s for e in events]
    if notes is not None:
        labels = pitch_class_labels(onsets, notes=notes)
        label_source = "reference"
        consonance = consonance_targets(onsets, notes=notes)
        consonance_source = "reference_chord"
    else:
        labels = pitch_class_labels(onsets, f0_hz=[d.f0_hz for d in descriptors],
                                    f0_confidence=[d.f0_confidence for d in descriptors])
        label_source = "f0_estimate"
        consonance = consonance_targets(onsets, traditional=matrices["traditional"])
        consonance_source = "traditional_consonance_dimension"
    labelled = [i for i, label in enumerate(labels) if label is not None]
    probe_inputs = dict(matrices)
    if consonance_source == "traditional_consonance_dimension":  # the target must not be among its own inputs
        probe_inputs_consonance = {"traditional": np.delete(matrices["traditional"], CONSONANCE_DIMENSION, axis=1),
                                   "wav2vec": matrices["wav2vec"]}
    else:
        probe_inputs_consonance = probe_inputs
    pitch_probe: dict[str, Any] = {"label_source": label_source, "events_labelled": len(labelled)}
    consonance_probe: dict[str, Any] = {"target_source": consonance_source}
    pipelines: dict[str, Any] = {}
    for view in ("traditional", "wav2vec"):
        if len(labelled) >= 4:
            pitch_probe[view] = probe_classification(probe_inputs[view][labelled], [labels[i] for i in labelled], seed=seed)
        else:
            pitch_probe[view] = {"accuracy": None, "folds": 0, "events": len(labelled), "classes": 0, "chance": None}
        consonance_probe[view] = probe_regression(probe_inputs_consonance[view], consonance, seed=seed)
        vocabulary, tokens = vocabulary_stats(matrices[view], vocabulary_size=vocabulary_size, seed=seed)
        if vocabulary["collapse"]:
            warnings_out.append(f"{view}: token collapse — {vocabulary['used']} of {vocabulary['vocabulary_size']} tokens used")
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
        device="cpu", model="traditional-22d", load_seconds=0.0, warmup_seconds=float(trad_warmup_s),
        timing=timing_summary(trad_times, audio_seconds=audio_seconds), batch=None,
        memory={"peak_rss_bytes": peak_before, "rss_bytes": rss_before})
    single = timing_summary(single_times, audio_seconds=audio_seconds)
    pipelines["wav2vec"].update(
        device=str(encoder.device), model=str(encoder.model_name), layer=int(encoder.layer),
        load_seconds=float(load_s), warmup_seconds=float(first_call_s), timing=single,
        batch={"batch_size": int(batch_size), "total_s": float(batch_total), "per_window_ms": float(batch_total * 1e3 / len(windows)),
               "real_time_factor": float(batch_total / audio_seconds),
               "speedup_vs_single": float(single["total_s"] / batch_total) if batch_total > 0 else None,
               "max_abs_difference_vs_single": batch_mismatch},
        memory=memory_w2v)
    if single["real_time_factor"] >= 1.0:
        warnings_out.append(f"wav2vec is slower than real time here (real-time factor {single['real_time_factor']:.2f})")
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "musichal-compare",
        "input": {"file": str(path), "sample_rate_hz": int(sr), "audio_seconds": audio_seconds, "events": len(events),
                  "segmentation": segmentation, "segmentation_seconds": float(segmentation_s),
                  "reference": str(reference) if reference is not None else None,
                  "segments_limit": int(segments) if segments is not None else None,
                  "duration_limit_s": float(duration_s) if duration_s is not None else None},
        "settings": {"vocabulary_size": int(vocabulary_size), "seed": int(seed),
                     "encoder_deadline_ms": float(config.cluster.encoder_deadline_ms),
                     "window_ms": float(config.segmenter.window_ms), "use_gpu": bool(use_gpu)},
        "pipelines": pipelines,
        "probes": {"pitch_class": pitch_probe, "consonance": consonance_probe},
        "recommendations": [],
        "warnings": warnings_out,
    }
    results["recommendations"] = recommend(figures_from_results(results))
    return results


def _cuda_reset() -> Optional[bool]:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return True
    except Exception:  # noqa: BLE001 - memory figures are optional
        pass
    return None


def _cuda_peak() -> Optional[int]:
    try:
        import torch

        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None
