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
    """Named latency series (seconds in, milliseconds out), each keeping its last ``max_samples`` values."""

    def __init__(self, *, max_samples: int = 20_000) -> None:
        self._series: dict[str, deque[float]] = {}
        self._max = max_samples
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self._max)
            series.append(float(seconds))

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snapshot = {name: list(values) for name, values in self._series.items()}
        return {name: percentiles_ms(values) for name, values in sorted(snapshot.items())}

    def values(self, name: str) -> list[float]:
        with self._lock:
            return list(self._series.get(name, ()))
