"""shared.stats: latency series, keyed per event so actors' series can be joined."""
from __future__ import annotations

from shared.stats import LatencyRecorder, percentiles_ms


def test_keyed_samples_join_per_event() -> None:
    rec = LatencyRecorder(max_samples=4)
    rec.add("hop", 0.001, key=7)
    rec.add("hop", 0.002)  # no key: kept in values(), not in keyed()
    rec.add("hop", 0.003, key=9)
    rec.add("hop", 0.004, key=7)  # a second sample for event 7: the first one stays
    assert rec.values("hop") == [0.001, 0.002, 0.003, 0.004]
    assert rec.keyed("hop") == {7: 0.001, 9: 0.003}
    rec.add("hop", 0.005, key=11)  # bounded: the oldest sample and its key go together
    assert rec.values("hop") == [0.002, 0.003, 0.004, 0.005]
    assert rec.keyed("hop") == {9: 0.003, 7: 0.004, 11: 0.005}
    assert rec.keyed("missing") == {}


def test_percentiles_ms() -> None:
    assert percentiles_ms([]) == {"count": 0}
    figures = percentiles_ms([0.001] * 99 + [0.1])
    assert figures["count"] == 100 and figures["p50"] == 1.0 and figures["max"] == 100.0
