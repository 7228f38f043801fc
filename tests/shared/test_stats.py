"""shared.stats: latency series, keyed per event so actors' series can be joined."""

from __future__ import annotations

import numpy as np
import pytest

from shared.stats import LatencyRecorder, LogHistogram, percentiles_ms


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


def _exact(values, qs=(50, 95, 99)):
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)]


@pytest.mark.parametrize(
    "name, values",
    [
        ("lognormal latencies", np.random.default_rng(1).lognormal(mean=np.log(0.004), sigma=0.8, size=50_000)),
        ("uniform 0.1-300 ms", np.random.default_rng(2).uniform(1e-4, 0.3, size=20_000)),
        (
            "heavy tail",
            np.concatenate(
                [
                    np.random.default_rng(3).normal(0.003, 0.0003, 9_900),
                    np.random.default_rng(4).uniform(0.05, 0.4, 100),
                ]
            ),
        ),
        ("late schedule errors", np.random.default_rng(5).exponential(0.0005, 30_000) + 2e-5),
        ("few samples", [0.0031, 0.0042, 0.0105, 0.0007, 0.0219]),
    ],
)
def test_histogram_percentiles_within_one_percent_of_exact(name, values) -> None:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    exact = _exact(values)
    approx = histogram.percentiles([50, 95, 99])
    for q, e, a in zip((50, 95, 99), exact, approx):
        assert abs(a - e) <= 0.01 * abs(e), f"{name} p{q}: {a} vs exact {e}"
    assert histogram.count == len(values) and histogram.max == max(values) and histogram.min == min(values)


def test_histogram_signed_values_and_zero() -> None:
    rng = np.random.default_rng(6)  # schedule errors: mostly late, some early, some exactly on time
    values = np.concatenate(
        [rng.normal(-0.002, 0.0005, 3_000), np.zeros(500), rng.lognormal(np.log(0.001), 1.0, 6_000)]
    )
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    for q, e, a in zip(
        (1, 10, 50, 95, 99), _exact(values, (1, 10, 50, 95, 99)), histogram.percentiles([1, 10, 50, 95, 99])
    ):
        assert abs(a - e) <= 0.01 * abs(e) + 1e-7, f"p{q}: {a} vs exact {e}"


def test_histogram_memory_is_fixed() -> None:
    histogram = LogHistogram()
    size = histogram.counts.nbytes
    for value in np.random.default_rng(7).lognormal(np.log(0.01), 2.0, 100_000):
        histogram.add(value)
    histogram.add(1e9)  # beyond max_abs: counted in the last bucket, the exact max kept
    assert histogram.counts.nbytes == size and size < 100_000
    assert histogram.max == 1e9 and histogram.count == 100_001


def test_recorder_summary_covers_the_whole_run_in_bounded_memory() -> None:
    rec = LatencyRecorder(max_samples=1_000)
    early = np.full(9_000, 0.002)  # the first 90 % of a long set …
    late = np.full(1_000, 0.050)  # … and its last samples, all the ring still holds
    for value in np.concatenate([early, late]):
        rec.add("pipeline", value)
    figures = rec.summary()["pipeline"]
    assert figures["count"] == 10_000 and rec.count("pipeline") == 10_000
    assert abs(figures["p50"] - 2.0) <= 0.02 and abs(figures["p95"] - 50.0) <= 0.5 and figures["max"] == 50.0
    assert len(rec.values("pipeline")) == 1_000  # the recent-sample ring stays bounded


def test_a_series_is_resident_from_its_first_sample() -> None:
    """A long set must not look like a leak: a series' recent-sample ring takes its memory when the series starts,
    not page by page while it first fills (np.zeros maps untouched pages: RSS would grow 1.6 MB here)."""
    import psutil

    rec = LatencyRecorder(max_samples=200_000)  # 2 x 1.6 MB arrays
    rec.add("hop", 0.001)
    process = psutil.Process()
    before = process.memory_info().rss
    for i in range(200_000):
        rec.add("hop", 0.001 + 1e-9 * i, key=i)
    grown = process.memory_info().rss - before
    assert grown < 600_000, f"RSS grew {grown} bytes while the ring filled"
    assert len(rec.values("hop")) == 200_000
