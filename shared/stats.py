"""Latency percentiles and counters every actor keeps (bounded memory).

Each named series keeps two fixed-size structures: a :class:`LogHistogram` of every sample of the run (its
percentiles are within 0.5 % of the exact ones, in constant memory however long the set) and a circular buffer of
the most recent samples with their event keys (:meth:`LatencyRecorder.values`, :meth:`LatencyRecorder.keyed`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

import numpy as np

__all__ = ["LatencyRecorder", "LogHistogram", "percentiles_ms"]


def percentiles_ms(values_s: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of durations given in seconds (empty → count 0 only)."""
    data = np.asarray(values_s if isinstance(values_s, np.ndarray) else list(values_s), dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(data * 1e3, [50, 95, 99])
    return {
        "count": int(data.size),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(data.max() * 1e3), 3),
    }


class LogHistogram:
    """Counts of values in logarithmic buckets: fixed memory, percentiles within ``relative_error`` of the exact ones.

    A value ``v`` with ``|v| >= min_abs`` goes to bucket ``i = ceil(log_g(|v| / min_abs))`` of its sign, with
    ``g = (1 + e) / (1 - e)``; the bucket stands for ``min_abs * 2 g**i / (g + 1)``, within ``e`` of every value in it
    (the DDSketch bound). Values nearer zero than ``min_abs`` count as 0, those beyond ``max_abs`` in the last bucket
    (the exact minimum and maximum are kept apart). :meth:`percentile` interpolates between order statistics as
    :func:`numpy.percentile` does, so with every value within ``e`` the result is too.

    >>> h = LogHistogram()
    >>> for v in (0.001, 0.002, 0.003, 0.004):
    ...     h.add(v)
    >>> abs(h.percentile(50) - 0.0025) < 0.0025 * 0.005
    True
    """

    __slots__ = ("relative_error", "min_abs", "_log_gamma", "_buckets", "counts", "count", "min", "max")

    def __init__(self, *, relative_error: float = 0.005, min_abs: float = 1e-7, max_abs: float = 1e4) -> None:
        if not 0.0 < relative_error < 0.5 or not 0.0 < min_abs < max_abs:
            raise ValueError("need 0 < relative_error < 0.5 and 0 < min_abs < max_abs")
        self.relative_error = float(relative_error)
        self.min_abs = float(min_abs)
        self._log_gamma = math.log((1.0 + relative_error) / (1.0 - relative_error))
        self._buckets = int(math.ceil(math.log(max_abs / min_abs) / self._log_gamma)) + 1
        self.counts = np.zeros(2 * self._buckets + 1, dtype=np.int64)  # [negative, descending | zero | positive]
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        value = float(value)
        if value != value:
            return  # NaN: not a duration
        magnitude = abs(value)
        if magnitude < self.min_abs:
            slot = self._buckets
        else:
            index = min(self._buckets - 1, max(0, math.ceil(math.log(magnitude / self.min_abs) / self._log_gamma)))
            slot = self._buckets + 1 + index if value > 0 else self._buckets - 1 - index
        self.counts[slot] += 1
        self.count += 1
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def _values(self, slots: np.ndarray) -> np.ndarray:
        offset = slots.astype(np.float64) - self._buckets
        index = np.abs(offset) - 1.0
        gamma = math.exp(self._log_gamma)
        magnitude = self.min_abs * 2.0 * np.exp(index * self._log_gamma) / (gamma + 1.0)
        return np.where(offset == 0, 0.0, np.sign(offset) * magnitude)

    def percentiles(self, qs: Iterable[float]) -> list[float]:
        """The ``q``-th percentiles (0..100, linear interpolation as numpy's default); empty → NaN."""
        qs = list(qs)
        if self.count == 0:
            return [math.nan] * len(qs)
        cumulative = np.cumsum(self.counts)
        out = []
        for q in qs:
            rank = (self.count - 1) * float(q) / 100.0
            low = int(math.floor(rank))
            high = min(low + 1, self.count - 1)
            slots = np.searchsorted(cumulative, np.array([low + 1, high + 1]), side="left")
            v_low, v_high = np.clip(self._values(slots), self.min, self.max)
            out.append(float(v_low + (rank - low) * (v_high - v_low)))
        return out

    def percentile(self, q: float) -> float:
        return self.percentiles([q])[0]


def _histogram_ms(histogram: LogHistogram) -> dict[str, float]:
    if histogram.count == 0:
        return {"count": 0}
    p50, p95, p99 = histogram.percentiles([50, 95, 99])
    return {
        "count": histogram.count,
        "p50": round(p50 * 1e3, 3),
        "p95": round(p95 * 1e3, 3),
        "p99": round(p99 * 1e3, 3),
        "max": round(histogram.max * 1e3, 3),
    }


class _Series:
    """A fixed-size circular buffer of (seconds, key) samples in two preallocated numpy arrays (no per-sample
    Python objects: an actor that records every event for hours keeps a constant footprint).

    Both arrays are written once when created, so their pages are resident from the start: ``np.zeros`` of this
    size maps untouched zero pages, and the process would grow by 160 KB per series while the ring first fills
    (20,000 samples: an hour or more of a set), a slope no leak has."""

    __slots__ = ("values", "keys", "count")
    NO_KEY = np.iinfo(np.int64).min

    def __init__(self, size: int) -> None:
        self.values = np.full(size, 0.0, dtype=np.float64)
        self.keys = np.full(size, self.NO_KEY, dtype=np.int64)
        self.count = 0

    def add(self, seconds: float, key: int | None) -> None:
        slot = self.count % self.values.shape[0]
        self.values[slot] = seconds
        self.keys[slot] = self.NO_KEY if key is None else key
        self.count += 1

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        size = self.values.shape[0]
        if self.count <= size:
            return self.values[: self.count].copy(), self.keys[: self.count].copy()
        start = self.count % size
        return np.roll(self.values, -start), np.roll(self.keys, -start)


class LatencyRecorder:
    """Named latency series (seconds in, milliseconds out): the whole run's percentiles (:meth:`summary`, from a
    :class:`LogHistogram`) and the last ``max_samples`` values (:meth:`values`, :meth:`keyed`).

    A sample may carry a ``key`` (the input event's id) so that series recorded in different actors can be joined
    per event (:meth:`keyed`). Memory per series is fixed (a histogram and two preallocated arrays of ``max_samples``).
    """

    def __init__(self, *, max_samples: int = 20_000) -> None:
        self._series: dict[str, _Series] = {}
        self._histograms: dict[str, LogHistogram] = {}
        self._max = int(max_samples)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, *, key: int | None = None) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series(self._max)
                self._histograms[name] = LogHistogram()
            series.add(float(seconds), key)
            self._histograms[name].add(seconds)

    def keyed(self, name: str) -> dict[int, float]:
        """``{key: seconds}`` of the samples recorded with a key (the first sample per key)."""
        with self._lock:
            series = self._series.get(name)
            values, keys = series.ordered() if series is not None else (np.zeros(0), np.zeros(0, np.int64))
        out: dict[int, float] = {}
        for key, value in zip(keys.tolist(), values.tolist()):
            if key != _Series.NO_KEY and key not in out:
                out[key] = value
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """p50/p95/p99/max (ms) and count of every sample of the run, per series (within 0.5 % of exact)."""
        with self._lock:
            return {name: _histogram_ms(histogram) for name, histogram in sorted(self._histograms.items())}

    def count(self, name: str) -> int:
        """How many samples ``name`` has had (the run's, not only the ones :meth:`values` still holds)."""
        with self._lock:
            series = self._series.get(name)
            return series.count if series is not None else 0

    def values(self, name: str) -> list[float]:
        with self._lock:
            series = self._series.get(name)
            return series.ordered()[0].tolist() if series is not None else []
