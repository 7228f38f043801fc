"""Traditional 22-D vs. Wav2Vec perception on the same events: the figures, as plain functions tests check one by one.

Pure logic (no printing, no plotting); :func:`services.compare.comparison.run_comparison` is the whole measurement
that calls them:

* :func:`timing_summary` — per-window times → mean/p50/p95/max ms and the real-time factor;
* :func:`dimension_stats` — per-dimension variance and sparsity of a ``(n, d)`` feature matrix;
* :func:`vocabulary_stats` — quantize to a fixed vocabulary (:class:`~services.encoder.quantizer.SymbolQuantizer`),
  usage, entropy and a collapse flag;
* :func:`pitch_class_labels` / :func:`consonance_targets` — probe targets from a reference MIDI or the
  descriptors;
* :func:`probe_classification` / :func:`probe_regression` — cross-validated linear probes (fixed seeds);
* :func:`recommend` — recommendations as a pure function of the measured figures (:func:`figures_from_results`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.encoder.features import FEATURE_NAMES
from services.encoder.quantizer import SymbolQuantizer
from shared.errors import ParameterError
from shared.pitch import hz_to_midi

__all__ = [
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
]

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
    energy = (s**2).sum()
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
    for (_channel, pitch), starts in sounding.items():
        notes.extend((int(pitch), start, now) for start in starts)
    notes.sort(key=lambda n: (n[1], n[0]))
    return notes


def _sounding(notes: Sequence[tuple[int, float, float]], onset_s: float) -> list[tuple[int, float, float]]:
    return [n for n in notes if n[1] <= onset_s + _ONSET_TOLERANCE_S and n[2] > onset_s + _ONSET_TOLERANCE_S / 2]


def pitch_class_labels(
    onsets_s: Sequence[float],
    *,
    notes: Sequence[tuple[int, float, float]] | None = None,
    f0_hz: Sequence[float] | None = None,
    f0_confidence: Sequence[float] | None = None,
    min_confidence: float = 0.5,
) -> list[int | None]:
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
    labels: list[int | None] = []
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
        for b in classes[i + 1 :]:
            interval = (b - a) % 12
            scores.append(INTERVAL_CLASS_CONSONANCE[min(interval, 12 - interval)])
    return float(np.mean(scores))


def consonance_targets(
    onsets_s: Sequence[float],
    *,
    notes: Sequence[tuple[int, float, float]] | None = None,
    traditional: Any | None = None,
) -> list[float]:
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
    result: dict[str, Any] = {
        "accuracy": None,
        "folds": 0,
        "events": int(y.size),
        "classes": int(np.unique(y).size),
        "chance": None,
    }
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


def _quality(view: Mapping[str, Any]) -> float | None:
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


def _better(a: float | None, b: float | None, *, margin: float = _QUALITY_MARGIN) -> str | None:
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
        rows.append(
            {
                "criterion": "live (real time)",
                "choice": "either",
                "reason": f"both keep up: traditional {speed(trad)}; wav2vec {speed(w2v)} (deadline {deadline:.0f} ms)",
            }
        )
    elif trad_rt:
        why = (
            "slower than real time"
            if float(w2v["real_time_factor"]) >= 1.0
            else f"p95 over the {deadline:.0f} ms deadline"
        )
        rows.append(
            {
                "criterion": "live (real time)",
                "choice": "traditional",
                "reason": f"wav2vec is {why} here ({speed(w2v)}); traditional {speed(trad)}",
            }
        )
    elif w2v_rt:
        rows.append(
            {
                "criterion": "live (real time)",
                "choice": "wav2vec",
                "reason": f"traditional does not keep up ({speed(trad)}); wav2vec {speed(w2v)}",
            }
        )
    else:
        rows.append(
            {
                "criterion": "live (real time)",
                "choice": "traditional",
                "reason": "neither keeps up on this machine; traditional is the cheaper "
                f"({speed(trad)} vs {speed(w2v)})",
            }
        )

    pitch = _better(w2v.get("pitch_accuracy"), trad.get("pitch_accuracy"))
    if w2v.get("pitch_accuracy") is None or trad.get("pitch_accuracy") is None:
        rows.append({"criterion": "pitch information", "choice": "either", "reason": "no pitch labels to probe with"})
    else:
        rows.append(
            {
                "criterion": "pitch information",
                "choice": {"a": "wav2vec", "b": "traditional"}.get(pitch, "either"),
                "reason": f"probe accuracy traditional {trad['pitch_accuracy']:.2f}, "
                f"wav2vec {w2v['pitch_accuracy']:.2f}",
            }
        )

    if w2v["collapse"] and not trad["collapse"]:
        vocab_choice, vocab_reason = "traditional", "wav2vec tokens collapse onto a few symbols"
    elif trad["collapse"] and not w2v["collapse"]:
        vocab_choice, vocab_reason = "wav2vec", "traditional tokens collapse onto a few symbols"
    else:
        better = _better(float(w2v["normalized_entropy"]), float(trad["normalized_entropy"]))
        vocab_choice = {"a": "wav2vec", "b": "traditional"}.get(better, "either")
        vocab_reason = (
            f"normalized token entropy traditional {float(trad['normalized_entropy']):.2f}, "
            f"wav2vec {float(w2v['normalized_entropy']):.2f}"
        )
    rows.append({"criterion": "vocabulary use", "choice": vocab_choice, "reason": vocab_reason})

    q_trad, q_w2v = _quality(trad), _quality(w2v)
    quality = _better(q_w2v, q_trad)
    quality_text = f"quality score traditional {q_trad:.2f}, wav2vec {q_w2v:.2f}"
    if not w2v_rt:
        overall = (
            "traditional",
            f"wav2vec cannot run live here ({speed(w2v)}); {quality_text}"
            + ("; wav2vec is still worth it for offline training" if quality == "a" else ""),
        )
    elif quality == "a":
        overall = ("wav2vec", f"real time and more informative: {quality_text}")
    elif quality == "b":
        overall = ("traditional", f"as fast or faster and more informative: {quality_text}")
    else:
        overall = (
            "hybrid",
            f"wav2vec keeps up and neither view is clearly better ({quality_text}); "
            "hybrid keeps both and falls back to traditional",
        )
    rows.append({"criterion": "overall", "choice": overall[0], "reason": overall[1]})
    return rows
