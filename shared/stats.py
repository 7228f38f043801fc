"""Latency percentiles and counters every actor keeps (bounded memory)."""
from __future__ import annotations

import threading
from typing import Iterable

import numpy as np

__all__ = ["LatencyRecorder", "percentiles_ms"]


def percentiles_ms(values_s: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of durations given in seconds (empty → count 0 only)."""
    data = np.asarray(values_s if isinstance(values_s, np.ndarray) else list(values_s), dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(data * 1e3, [50, 95, 99])
    return {"count": int(data.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "max": round(float(data.max() * 1e3), 3)}


class _Series:
    """A fixed-size circular buffer of (seconds, key) samples in two preallocated numpy arrays (no per-sample
    Python objects: an actor that records every event for hours keeps a constant footprint)."""

    __slots__ = ("values", "keys", "count")
    NO_KEY = np.iinfo(np.int64).min

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size, dtype=np.float64)
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
            return self.values[:self.count].copy(), self.keys[:self.count].copy()
        start = self.count % size
        return np.roll(self.values, -start), np.roll(self.keys, -start)


class LatencyRecorder:
    """Named latency series (seconds in, milliseconds out), each keeping its last ``max_samples`` values.

    A sample may carry a ``key`` (the input event's id) so that series recorded in different actors can be joined
    per event (:meth:`keyed`). Memory per series is fixed (two preallocated arrays of ``max_samples``).
    """

    def __init__(self, *, max_samples: int = 20_000) -> None:
        self._series: dict[str, _Series] = {}
        self._max = int(max_samples)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, *, key: int | None = None) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series(self._max)
            series.add(float(seconds), key)

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
        with self._lock:
            snapshot = {name: series.ordered()[0] for name, series in self._series.items()}
        return {name: percentiles_ms(values) for name, values in sorted(snapshot.items())}

    def values(self, name: str) -> list[float]:
        with self._lock:
            series = self._series.get(name)
            return series.ordered()[0].tolist() if series is not None else []
