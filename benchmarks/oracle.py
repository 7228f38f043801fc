"""Oracle benchmark: build µs/event (continuous 22-D and symbolic), 1M symbolic, memory, vs vmo, and the live
decision path's per-event latency (:class:`LiveOracle`: percept in, notes out, then learning) with synchronous vs
background threshold re-estimation.

Prints one JSON object. Features: 22-D frames drawn from 64 cluster centres along a Markov chain plus
noise (music-like repetition), threshold chosen by Information Rate on the first 2,000 frames.
"Before" figures come from the same run: ``reference_python_*`` is the previous dict-based factor oracle
(kept as the test reference, testkit/reference_factor_oracle.py) and ``live_sync_*`` the previous
synchronous rebuild. ``load_average_1min`` is the machine's load when the run started (the CPU is shared).

Goals: ≥ 10× faster than the vmo package with identical tables; symbolic µs/event at 1M ≤ 1.5× that at 10k (batch
build on random and on motif tokens, and the live one-``add()``-per-event path).

    .venv/bin/python benchmarks/oracle.py [--no-save]
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import emit, goal  # noqa: E402

from services.oracle.memory.audio_oracle import AudioOracle  # noqa: E402
from services.oracle.memory.factor_oracle import FactorOracle  # noqa: E402
from services.oracle.memory.information_rate import select_threshold  # noqa: E402
from services.oracle.memory.kernels import hash3  # noqa: E402
from services.oracle.memory.store import OracleMemory  # noqa: E402
from services.oracle.player.live import LiveOracle  # noqa: E402
from shared.config import MusicHalConfig  # noqa: E402
from shared.messages import EventDescriptors, Percept  # noqa: E402
from testkit.reference_factor_oracle import ReferenceFactorOracle  # noqa: E402


def features(n, dim=22, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim)) * 2.0
    motifs = rng.integers(0, 64, size=(16, 8))
    labels = np.concatenate([motifs[rng.integers(0, 16)] for _ in range(n // 8 + 1)])[:n]
    return centres[labels] + rng.normal(scale=0.4, size=(n, dim)), labels


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def build_ao(x, threshold):
    ao = AudioOracle(threshold, x.shape[1])
    ao.extend(x)
    return ao


def build_fo(symbols):
    fo = FactorOracle()
    fo.extend(symbols)
    return fo


def build_reference(symbols):
    fo = ReferenceFactorOracle()
    was = gc.isenabled()
    gc.disable()
    try:
        fo.extend(symbols)
    finally:
        if was:
            gc.enable()
    return fo


@numba.njit(cache=True)
def _mean_probe_length(table, third_key_zero):
    """Mean slots visited to find a stored key (1.0 = every key in its home slot)."""
    mask = table.shape[0] - 1
    total, count = 0, 0
    for slot in range(table.shape[0]):
        if table[slot, 0] != -1:
            home = hash3(table[slot, 0], table[slot, 1], 0 if third_key_zero else table[slot, 2], mask)
            total += ((slot - home) & mask) + 1
            count += 1
    return total / max(count, 1)


def work_per_event(fo, n):
    """What one event costs in operations, independent of caches: the suffix walk makes one jump transition per
    step but its last, and each event stores at most one "find better" entry; probes per hash lookup."""
    return {
        "jump_transitions_per_event": round(int(fo._counters[1]) / n, 4),
        "better_entries_per_event": round(int(fo._counters[2]) / n, 4),
        "jump_table_mean_probe": round(_mean_probe_length(fo._jumps, True), 3),
        "better_table_mean_probe": round(_mean_probe_length(fo._better, False), 3),
    }


@numba.njit(cache=True)
def _chase(successor, steps):
    node = 0
    for _ in range(steps):
        node = successor[node]
    return node


def dependent_read_ns(working_set_bytes, steps=2_000_000, seed=0):
    """ns per dependent random read over ``working_set_bytes`` (one random cycle through an int64 array)."""
    m = max(2, int(working_set_bytes) // 8)
    order = np.random.default_rng(seed).permutation(m)
    successor = np.empty(m, dtype=np.int64)
    successor[order] = np.roll(order, -1)
    _chase(successor, 10)
    t0 = time.perf_counter()
    _chase(successor, steps)
    return (time.perf_counter() - t0) / steps * 1e9


def live_latency(x, labels, *, background, n=3000):
    """Per-event wall time (µs) of the live decision path: :meth:`LiveOracle.on_percept` (the notes now due) and
    :meth:`LiveOracle.learn_queued`, learning live from an empty memory with IR re-estimation every 64 events."""
    config = MusicHalConfig().with_overrides({"oracle.rebuild_every_events": 64})
    stage = OracleMemory(config, background=background)
    live = LiveOracle(config, stage)
    times = np.zeros(n)
    for i in range(n):
        p = Percept(
            event_id=i,
            token=int(labels[i]),
            features=x[i].astype(np.float32),
            descriptors=EventDescriptors(
                onset_s=0.25 * i,
                duration_s=0.25,
                rms=0.1,
                velocity=80,
                f0_hz=220.0,
                f0_confidence=0.9,
                chroma_peaks=(int(labels[i]) % 12,),
            ),
        )
        t0 = time.perf_counter()
        live.on_percept(p, 0.25 * i)
        live.learn_queued()
        times[i] = time.perf_counter() - t0
    stage.join()
    us = times * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "max_us": round(float(us.max()), 1),
        "rebuilds": stage.counters["rebuilds"],
        "rebuilds_skipped": stage.counters["rebuilds_skipped"],
    }


def main() -> int:
    out: dict = {"load_average_1min": round(os.getloadavg()[0], 2)}
    x, labels = features(100_000)
    threshold, _ = select_threshold(x[:2000])
    out["threshold"] = round(threshold, 4)
    build_ao(x[:100], threshold)  # compile / load the numba cache
    for n in (10_000, 100_000):
        seconds, ao = timed(lambda: build_ao(x[:n], threshold), repeat=3 if n == 10_000 else 1)
        out[f"continuous22_build_us_per_event_{n // 1000}k"] = round(seconds / n * 1e6, 3)
        out[f"continuous22_labels_{n // 1000}k"] = ao.n_labels
    t_add, _ = timed(lambda: [a.add(row) for a in [AudioOracle(threshold, 22)] for row in x[:5000]])
    out["continuous22_add_one_us_per_event_5k"] = round(t_add / 5000 * 1e6, 3)

    import vmo

    n_vmo = 10_000
    vmo_seconds, o = timed(lambda: vmo.build_oracle(x[:n_vmo], "a", threshold=threshold, dfunc="euclidean", dim=22))
    ours_seconds, ao = timed(lambda: build_ao(x[:n_vmo], threshold), repeat=3)
    same = (
        [-1 if s is None else s for s in o.sfx] == ao.sfx.tolist()
        and list(o.lrs) == ao.lrs.tolist()
        and [list(t) for t in o.trn] == [ao.transition_targets(s) for s in range(ao.n_states)]
    )
    out["vmo_build_us_per_event_10k"] = round(vmo_seconds / n_vmo * 1e6, 3)
    out["speedup_vs_vmo_10k"] = round(vmo_seconds / ours_seconds, 1)
    out["identical_to_vmo_10k"] = bool(same)

    rng = np.random.default_rng(1)
    symbols_np = rng.integers(0, 64, 1_000_000)
    symbols = symbols_np.tolist()
    build_fo(symbols[:100])  # load the numba cache
    for n in (10_000, 100_000):
        seconds, _ = timed(lambda: build_fo(symbols[:n]), repeat=3)
        out[f"symbolic_build_us_per_event_{n // 1000}k"] = round(seconds / n * 1e6, 3)
    seconds, fo = timed(lambda: build_fo(symbols), repeat=2)
    out["symbolic_build_us_per_event_1M"] = round(seconds / 1e6 * 1e6, 3)
    out["symbolic_1M_over_10k_ratio"] = round(
        out["symbolic_build_us_per_event_1M"] / out["symbolic_build_us_per_event_10k"], 3
    )
    out["symbolic_1M_array_mb"] = round(fo.nbytes / 2**20, 1)
    seconds, _ = timed(lambda: FactorOracle().extend(symbols_np), repeat=2)
    out["symbolic_build_from_ndarray_us_per_event_1M"] = round(seconds / 1e6 * 1e6, 3)
    # music-like token streams (the same motif generator as the continuous data above): the goal
    _, motif_labels = features(1_000_000, dim=1, seed=2)
    motif_labels = motif_labels.astype(np.int64)
    FactorOracle().extend(motif_labels[:100])
    for n in (10_000, 1_000_000):
        seconds, _ = timed(lambda: FactorOracle().extend(motif_labels[:n]), repeat=3 if n == 10_000 else 2)
        out[
            f"symbolic_motif_build_us_per_event_{n // 1000}k" if n < 10**6 else "symbolic_motif_build_us_per_event_1M"
        ] = round(seconds / n * 1e6, 3)
    out["symbolic_motif_1M_over_10k_ratio"] = round(
        out["symbolic_motif_build_us_per_event_1M"] / out["symbolic_motif_build_us_per_event_10k"], 3
    )
    # the work per event does not grow with the oracle; the memory it touches does (the whole ratio above)
    for label, tokens in (("random", symbols_np), ("motif", motif_labels)):
        for n in (10_000, 1_000_000):
            fo_n = FactorOracle()
            fo_n.extend(tokens[:n])
            out[f"symbolic_{label}_work_{n // 1000}k"] = work_per_event(fo_n, n)
            out[f"symbolic_{label}_array_mb_{n // 1000}k"] = round(fo_n.nbytes / 2**20, 1)
            del fo_n
    small_ns = dependent_read_ns(out["symbolic_random_array_mb_10k"] * 2**20)
    large_ns = dependent_read_ns(out["symbolic_random_array_mb_1000k"] * 2**20)
    out["dependent_random_read_ns_10k_footprint"] = round(small_ns, 1)
    out["dependent_random_read_ns_1M_footprint"] = round(large_ns, 1)
    out["dependent_random_read_1M_over_10k_ratio"] = round(large_ns / small_ns, 2)
    out["symbolic_note"] = (
        "symbolic_* uses uniformly random tokens (worst case: suffix links spread over the whole "
        "oracle, so 1M pays cache misses); symbolic_motif_* uses motif-structured tokens like music. "
        "*_work_* counts operations per event (flat from 10k to 1M: the algorithm is amortised O(1)); "
        "dependent_random_read_* is this machine's cost of one random read over the 10k and the 1M "
        "oracle's footprint, the ceiling any pointer-following oracle meets"
    )
    # the live path: one add() per event, as the oracle actor learns (Python call included)
    for n in (10_000, 1_000_000):

        def add_each(n=n):
            one = FactorOracle()
            add = one.add
            for s in symbols[:n]:
                add(s)
            return one

        seconds, one = timed(add_each, repeat=3 if n == 10_000 else 1)
        out[f"symbolic_add_one_us_per_event_{n // 1000}k" if n < 10**6 else "symbolic_add_one_us_per_event_1M"] = round(
            seconds / n * 1e6, 3
        )
    out["symbolic_add_one_1M_over_10k_ratio"] = round(
        out["symbolic_add_one_us_per_event_1M"] / out["symbolic_add_one_us_per_event_10k"], 3
    )
    del fo, one
    for n in (10_000, 1_000_000):
        seconds, ref = timed(lambda: build_reference(symbols[:n]), repeat=3 if n == 10_000 else 1)
        out[
            f"reference_python_symbolic_build_us_per_event_{n // 1000}k"
            if n < 10**6
            else "reference_python_symbolic_build_us_per_event_1M"
        ] = round(seconds / n * 1e6, 3)
        del ref
        gc.collect()
    out["reference_python_1M_over_10k_ratio"] = round(
        out["reference_python_symbolic_build_us_per_event_1M"]
        / out["reference_python_symbolic_build_us_per_event_10k"],
        3,
    )

    ao100 = build_ao(x, threshold)
    ao100_bytes = sum(getattr(ao100, k).nbytes for k in ("_frames", "_st", "_edges", "_better"))
    out["continuous22_100k_array_mb"] = round(ao100_bytes / 2**20, 1)
    for background in (False, True):
        out[f"live_{'background' if background else 'sync'}_process"] = live_latency(x, labels, background=background)
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    goals = [
        goal("speed-up vs the vmo package, 10k continuous 22-D", out["speedup_vs_vmo_10k"], ">=", 10.0, unit="x"),
        goal("identical tables to vmo", out["identical_to_vmo_10k"], "==", True),
        goal(
            "symbolic batch build 1M / 10k µs per event, random tokens",
            out["symbolic_1M_over_10k_ratio"],
            "<=",
            1.5,
            unit="x",
        ),
        goal(
            "symbolic batch build 1M / 10k µs per event, motif tokens",
            out["symbolic_motif_1M_over_10k_ratio"],
            "<=",
            1.5,
            unit="x",
        ),
        goal("live add() per event 1M / 10k", out["symbolic_add_one_1M_over_10k_ratio"], "<=", 1.5, unit="x"),
        goal("continuous 22-D build, 100k", out["continuous22_build_us_per_event_100k"], "report", unit="µs/event"),
        goal(
            "live decision path (LiveOracle percept + learn) p99, background rebuild",
            out["live_background_process"]["p99_us"],
            "report",
            unit="µs",
            note=f"synchronous rebuild: {out['live_sync_process']['p99_us']} µs",
        ),
    ]
    notes = (
        "The operations per event do not grow from 10k to 1M (the `symbolic_*_work_*` figures in the JSON); what "
        "grows is where they land: a 10k oracle's arrays stay in cache, a 1M oracle's do not, and each event "
        "follows suffix links and hash slots to unpredictable places (`dependent_random_read_*` is this machine's "
        "cost of one random read over each footprint). The pure-Python reference oracle shows the same ratio "
        "(`reference_python_1M_over_10k_ratio`). The 10k figure varies a lot from run to run on a shared CPU."
    )
    return emit("oracle", out, goals, notes=notes, indent=None)


if __name__ == "__main__":
    sys.exit(main())
