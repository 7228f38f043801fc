"""Latency percentiles and counters every actor keeps (bounded memory)."""
from __future__ import annotations

import threading
from collections import deque
from typing import Iterable

import numpy as np

__all__ = ["LatencyRecorder", "percentiles_ms"]


def percentiles_ms(values_s: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of durations given in seconds (empty → count 0 only)."""
    data = np.asarray(list(values_s), dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(data * 1e3, [50, 95, 99])
    return {"count": int(data.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "max": round(float(data.max() * 1e3), 3)}


class LatencyRecorder:
    """Named latency series (seconds in, milliseconds out), each keeping its last ``max_samples`` values.

    A sample may carry a ``key`` (the input event's id) so that series recorded in different actors can be joined
    per event (:meth:`keyed`); samples without one are keyed ``None``.
    """

    def __init__(self, *, max_samples: int = 20_000) -> None:
        self._series: dict[str, deque[float]] = {}
        self._keys: dict[str, deque] = {}
        self._max = max_samples
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, *, key: int | None = None) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self._max)
                self._keys[name] = deque(maxlen=self._max)
            series.append(float(seconds))
            self._keys[name].append(key)

    def keyed(self, name: str) -> dict[int, float]:
        """``{key: seconds}`` of the samples recorded with a key (the first sample per key)."""
        with self._lock:
            pairs = list(zip(self._keys.get(name, ()), self._series.get(name, ())))
        out: dict[int, float] = {}
        for key, value in pairs:
            if key is not None and key not in out:
                out[key] = value
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snapshot = {name: list(values) for name, values in self._series.items()}
        return {name: percentiles_ms(values) for name, values in sorted(snapshot.items())}

    def values(self, name: str) -> list[float]:
        with self._lock:
            return list(self._series.get(name, ()))
