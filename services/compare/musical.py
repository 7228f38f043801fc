"""Listening measures of what the player plays against the score of what it heard (pure; benchmarks/musical.py).

Notes are plain tuples: a *score* is ``(pitch, start_s, duration_s[, velocity])`` (the input, on its own clock); an
*output* is ``(pitch, t_on_s)`` on the same clock (the caller aligns the player's clock to the score's). Nothing here
reads files or plays anything; every function is checked on hand-made note lists (tests/compare/test_musical.py).

* :func:`harmonic_agreement` — share of output onsets whose pitch class sounds in the score within ±``tolerance_s``
  (in the spirit of ReaLchords' note-in-chord ratio);
* :func:`key_only_agreement` — the same figure for a player that knows only the key: at the same onset times it draws
  pitch classes from the score's whole (duration-weighted) histogram; the expectation is computed exactly, no draw;
* :func:`late_parrot_agreement` — the score itself played ``delay_s`` late (the ceiling a follower can reach);
* :func:`top_line`, :func:`repeat_share` — the input's top line (highest note at each score onset) and the share of
  consecutive notes repeating a pitch (a droning line scores high);
* :func:`copy_share` — share of the melody's ``n``-grams of pitch classes found verbatim in the top line (octave
  moves do not hide copying: the player places runs by whole octaves);
* :func:`pc_histogram`, :func:`correlation`, :func:`margin_floor` — pitch-class correlation and the listening
  margin's floor for two pieces (half of what the two scores do not share).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from shared.errors import ParameterError

__all__ = [
    "AGREEMENT_TOLERANCE_S",
    "PARROT_DELAY_S",
    "pc_histogram",
    "correlation",
    "margin_floor",
    "top_line",
    "repeat_share",
    "sounding_classes",
    "harmonic_agreement",
    "key_only_agreement",
    "late_parrot_agreement",
    "copy_share",
]

#: an output onset agrees when its pitch class sounds in the input within this many seconds either side
AGREEMENT_TOLERANCE_S = 0.25
#: the late parrot plays the input this much later
PARROT_DELAY_S = 0.1


def _score(score: Iterable[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [(float(n[0]), float(n[1]), float(n[2])) for n in score]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    x = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(x).all() or (x[:, 2] < 0).any():
        raise ParameterError("score notes need finite (pitch, start_s, duration_s >= 0)")
    return x[:, 0].astype(np.int64), x[:, 1], x[:, 2]


def pc_histogram(score: Iterable[Sequence[float]]) -> np.ndarray:
    """Duration-weighted pitch-class histogram (12 bins) of a score.

    >>> pc_histogram([(60, 0.0, 1.0), (72, 1.0, 0.5), (67, 0.0, 2.0)])[[0, 7]].tolist()
    [1.5, 2.0]
    """
    pitch, _, duration = _score(score)
    return np.bincount(pitch % 12, weights=duration, minlength=12).astype(np.float64)


def correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation of two histograms (0 when either is flat)."""
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    den = float(np.sqrt((a @ a) * (b @ b)))
    return 0.0 if den == 0 else float(a @ b) / den


def margin_floor(own_score: Iterable[Sequence[float]], other_score: Iterable[Sequence[float]]) -> float:
    """The least listening margin (own − other correlation) that shows the output follows its own input: half of
    ``1 - correlation(own score, other score)`` — two pieces in one key leave less room than two in different keys."""
    return 0.5 * (1.0 - correlation(pc_histogram(own_score), pc_histogram(other_score)))


def top_line(score: Iterable[Sequence[float]]) -> list[int]:
    """The highest pitch at each distinct score onset (the input's top line), in time order.

    >>> top_line([(60, 0.0, 1.0), (67, 0.0, 1.0), (64, 0.5, 1.0)])
    [67, 64]
    """
    by_onset: dict[float, int] = {}
    for n in score:
        key = round(float(n[1]), 4)
        by_onset[key] = max(by_onset.get(key, -1), int(n[0]))
    return [by_onset[k] for k in sorted(by_onset)]


def repeat_share(pitches: Iterable[int]) -> float:
    """Share of consecutive notes that repeat the previous pitch (0 for fewer than two notes).

    >>> repeat_share([60, 60, 62, 62, 64])
    0.5
    """
    p = [int(x) for x in pitches]
    if len(p) < 2:
        return 0.0
    return float(np.mean([a == b for a, b in zip(p, p[1:])]))


def sounding_classes(score: Iterable[Sequence[float]], times_s: Sequence[float], *, tolerance_s: float) -> np.ndarray:
    """``(len(times_s), 12)`` booleans: pitch class ``pc`` sounds in the score somewhere in ``t ± tolerance_s``
    (a note sounds from its start to its end; touching the window counts)."""
    if tolerance_s < 0:
        raise ParameterError(f"tolerance_s must be >= 0, got {tolerance_s}")
    pitch, start, duration = _score(score)
    t = np.asarray(times_s, dtype=np.float64).reshape(-1, 1)
    out = np.zeros((t.shape[0], 12), dtype=bool)
    if pitch.size == 0 or t.size == 0:
        return out
    overlap = (start[None, :] <= t + tolerance_s) & (start[None, :] + duration[None, :] >= t - tolerance_s)
    for pc in range(12):
        out[:, pc] = overlap[:, pitch % 12 == pc].any(axis=1)
    return out


def harmonic_agreement(
    output: Iterable[Sequence[float]],
    score: Iterable[Sequence[float]],
    *,
    tolerance_s: float = AGREEMENT_TOLERANCE_S,
) -> float | None:
    """Share of output onsets ``(pitch, t_on_s)`` whose pitch class sounds in ``score`` within ±``tolerance_s``
    (None without output notes).

    >>> score = [(60, 0.0, 1.0), (64, 0.0, 1.0), (67, 1.0, 1.0)]
    >>> harmonic_agreement([(72, 0.1), (62, 0.5), (55, 0.9)], score)
    0.6666666666666666
    """
    rows = [(int(p), float(t)) for p, t in output]
    if not rows:
        return None
    sounding = sounding_classes(score, [t for _, t in rows], tolerance_s=tolerance_s)
    return float(np.mean([sounding[i, p % 12] for i, (p, _) in enumerate(rows)]))


def key_only_agreement(
    times_s: Sequence[float], score: Iterable[Sequence[float]], *, tolerance_s: float = AGREEMENT_TOLERANCE_S
) -> float | None:
    """The expected :func:`harmonic_agreement` of a player that knows only the key: at each of ``times_s`` it plays a
    pitch class drawn from the score's whole duration-weighted histogram (no timing). None without times."""
    times = list(times_s)
    if not times:
        return None
    score = list(score)
    hist = pc_histogram(score)
    if hist.sum() <= 0:
        return 0.0
    p = hist / hist.sum()
    return float(np.mean(sounding_classes(score, times, tolerance_s=tolerance_s) @ p))


def late_parrot_agreement(
    score: Iterable[Sequence[float]], *, delay_s: float = PARROT_DELAY_S, tolerance_s: float = AGREEMENT_TOLERANCE_S
) -> float | None:
    """:func:`harmonic_agreement` of the score's own notes played ``delay_s`` late."""
    score = list(score)
    return harmonic_agreement([(n[0], float(n[1]) + delay_s) for n in score], score, tolerance_s=tolerance_s)


def copy_share(melody: Sequence[int], line: Sequence[int], *, n: int = 4) -> float | None:
    """Share of the melody's ``n``-grams of pitch classes found verbatim (same classes, same order) in ``line``
    (None when the melody has fewer than ``n`` notes).

    >>> copy_share([60, 62, 64, 65, 67], [72, 74, 76, 77, 79, 81])
    1.0
    >>> copy_share([60, 62, 64, 65, 60], [60, 62, 64, 65, 67])
    0.5
    """
    if n < 1:
        raise ParameterError(f"n must be >= 1, got {n}")
    m = [int(p) % 12 for p in melody]
    if len(m) < n:
        return None
    known = {tuple(int(p) % 12 for p in line[i : i + n]) for i in range(len(line) - n + 1)}
    grams = [tuple(m[i : i + n]) for i in range(len(m) - n + 1)]
    return float(np.mean([g in known for g in grams]))
