"""Soak: the live stack on a looping input for N minutes; prints JSON per minute and over the run.

    .venv/bin/python benchmarks/soak.py --minutes 60 [--input-file take.wav] [--sample-s 10] [--baseline-minutes 10]

Reports RSS over time per actor process (psutil on each actor's pid) and in total, dropped blocks (capture samples
lost, encoder backlog drops, oracle in-flight drops), overruns (ring reader overruns, segmenter overruns, input
overflows, late file blocks), late MIDI events (scheduler late sends and late arrivals) and the pipeline latency p99
(onset detected → note-on) per minute.

Memory: every actor's RSS is sampled every ``--sample-s``; growth and slope are measured from the first sample at or
after ``--baseline-minutes`` (default 10, at most a third of the run: start-up allocations, JIT caches, the first
arena growth and the bounded statistics' rings are full by then) to the last. The oracle actor
learns live, so its memory grows with the oracle's own arrays (states × (frames + links + metadata), allocated
capacity, sampled with the RSS); its goal applies to the growth *not* explained by that data:
``(ΔRSS − Δoracle_arrays) / RSS at the baseline``. The raw growth, the data growth and each actor's RSS slope
(least-squares MB/hour over the samples after the baseline: a leak shows in a 5-minute run too) are printed beside it.

Goals: every actor's RSS slope after the baseline ≤ 5 MB/h (the oracle's net of its own arrays' slope), every
actor's (non-data) RSS growth < 5 %, total < 5 %, zero dropped audio.
Needs a JACK server for the MIDI output (a dummy one is started when none runs). Timing goals live here, never in
CI tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402
from fixtures import random_piano_clip  # noqa: E402

from shared.config import MusicHalConfig  # noqa: E402
from shared.jack_server import start_dummy_jack, stop_jack  # noqa: E402
from testkit.waiting import stage_counter  # noqa: E402

DROP_KEYS = (("capture", "samples_lost"), ("encoder", "dropped_backlog"), ("oracle", "dropped_in_flight"))
OVERRUN_KEYS = (
    ("capture", "segmenter_overruns"),
    ("capture", "late_blocks"),
    ("capture", "input_overflows"),
    ("encoder", "message_overruns"),
    ("encoder", "window_overruns"),
    ("oracle", "message_overruns"),
    ("midi_out", "message_overruns"),
)
LATE_KEYS = (("midi_out", "scheduler_late"), ("midi_out", "scheduler_late_on_arrival"))


def _sum(stats: dict, keys) -> int:
    return sum(stage_counter(stats, stage, key) for stage, key in keys)


def _render_default(folder: Path) -> Path:
    return random_piano_clip(
        folder / "soak.wav",
        seed=3,
        count=150,
        pitches=[55, 57, 60, 62, 64, 67, 69, 72],
        start_s=0.1,
        step_s=0.2,
        duration_s=0.17,
    )  # 30 s, looped


def _rss_parts_mb(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """RssAnon / RssFile / RssShmem per process (Linux): shared-memory ring pages count in RSS as they are first
    touched, up to the rings' capacity; anonymous memory is the heap."""
    out = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if line.startswith("Rss"))
            out[name] = {
                k[3:].lower(): round(int(fields[k].split()[0]) / 1024, 1) for k in ("RssAnon", "RssFile", "RssShmem")
            }
        except (OSError, KeyError, ValueError):
            continue
    return out


def _rss_mb(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            out[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            out[name] = float("nan")
    return out


def _oracle_data_mb(actor) -> float | None:
    """The oracle actor's own data (oracle arrays + a rebuild in flight), MB; None if the actor cannot say."""
    import ray

    def probe(self):
        stage = getattr(self, "stage", None)
        return stage.memory_bytes() if hasattr(stage, "memory_bytes") else None

    try:
        parts = ray.get(actor.__ray_call__.remote(probe), timeout=10)
    except Exception:  # noqa: BLE001 - a busy or restarting actor: skip this sample
        return None
    return None if parts is None else round(sum(parts.values()) / 2**20, 2)


def slope_mb_per_hour(t_s: list[float], mb: list[float]) -> float | None:
    """Least-squares slope of ``mb`` over ``t_s`` in MB/hour (None with fewer than 3 finite points)."""
    points = [(t, v) for t, v in zip(t_s, mb) if v is not None and v == v]
    if len(points) < 3:
        return None
    t = np.asarray([p[0] for p in points]) / 3600.0
    v = np.asarray([p[1] for p in points])
    return round(float(np.polyfit(t, v, 1)[0]), 1)


def memory_report(samples: list[dict], *, baseline_s: float = 60.0) -> dict:
    """Per-actor RSS growth and slope after the baseline sample; the oracle's growth net of its own data."""
    base_index = next((i for i, s in enumerate(samples) if s["t_s"] >= baseline_s), None)
    if base_index is None or base_index >= len(samples) - 1:
        base_index = min(1, len(samples) - 1)  # short runs: after one sample
    base, last = samples[base_index], samples[-1]
    after = samples[base_index:]
    actors = {}
    for name, first in base["rss_mb"].items():
        end = last["rss_mb"].get(name)
        if first != first or end is None or end != end:
            continue
        actors[name] = {
            "rss_mb_baseline": first,
            "rss_mb_end": end,
            "rss_growth_percent": round(100.0 * (end / first - 1.0), 2),
            "rss_slope_mb_per_hour": slope_mb_per_hour(
                [s["t_s"] for s in after], [s["rss_mb"].get(name) for s in after]
            ),
        }
        parts0, parts1 = base.get("rss_parts_mb", {}).get(name), last.get("rss_parts_mb", {}).get(name)
        if parts0 and parts1:  # where the growth is: heap (anon), mapped files, shared-memory ring pages
            actors[name]["growth_mb_by_kind"] = {k: round(parts1[k] - parts0[k], 1) for k in parts0 if k in parts1}
    oracle = actors.get("oracle")
    data = [s.get("oracle_data_mb") for s in after]
    if oracle is not None and data[0] is not None and data[-1] is not None:
        data_growth = round(data[-1] - data[0], 2)
        oracle["oracle_data_mb_baseline"], oracle["oracle_data_mb_end"] = data[0], data[-1]
        oracle["oracle_data_growth_mb"] = data_growth
        oracle["oracle_data_slope_mb_per_hour"] = slope_mb_per_hour([s["t_s"] for s in after], data)
        oracle["non_data_growth_mb"] = round(oracle["rss_mb_end"] - oracle["rss_mb_baseline"] - data_growth, 2)
        oracle["non_data_growth_percent"] = round(100.0 * oracle["non_data_growth_mb"] / oracle["rss_mb_baseline"], 2)
    total_base = sum(a["rss_mb_baseline"] for a in actors.values())
    total_end = sum(a["rss_mb_end"] for a in actors.values())
    return {
        "baseline_t_s": base["t_s"],
        "end_t_s": last["t_s"],
        "actors": actors,
        "total": {
            "rss_mb_baseline": round(total_base, 1),
            "rss_mb_end": round(total_end, 1),
            "rss_growth_percent": round(100.0 * (total_end / total_base - 1.0), 2) if total_base else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--input-file", help="audio looped into the stack (default: a rendered 30 s piano clip)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument(
        "--baseline-minutes",
        type=float,
        default=10.0,
        help="memory growth and slopes are measured after this (at most a third of the run)",
    )
    args = parser.parse_args(strip_no_save(argv))
    if args.minutes <= 0 or args.sample_s <= 0 or args.baseline_minutes < 0:
        parser.error("--minutes and --sample-s must be > 0, --baseline-minutes >= 0")
    baseline_s = min(args.baseline_minutes, args.minutes / 3.0) * 60.0
    import ray

    from services.stack import LiveStack

    jack = start_dummy_jack()
    tmp = Path(tempfile.mkdtemp(prefix="musichal_soak_"))
    clip = Path(args.input_file) if args.input_file else _render_default(tmp)
    config = MusicHalConfig().with_overrides({"midi.api": "jack", "midi.profile": "gm-safe", "generation.seed": 1})
    stack = LiveStack(config, input_file=str(clip), loop=True, checkpoint_path=str(tmp / "learned.json"))
    samples, minutes = [], []
    pause = threading.Event()
    try:
        stack.start()
        pids = {
            name: int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
            for name, actor in stack.actors.items()
        }
        pids["driver"] = os.getpid()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60.0
        next_minute = t0 + 60.0
        previous = stack.stats(timeout_s=5.0)
        latency_seen = 0  # pipeline samples counted so far (the actor keeps the last 20,000 values)
        load = []
        while time.monotonic() < end:
            pause.wait(min(args.sample_s, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            samples.append(
                {
                    "t_s": round(now - t0, 1),
                    "rss_mb": _rss_mb(pids),
                    "rss_parts_mb": _rss_parts_mb(pids),
                    "oracle_data_mb": _oracle_data_mb(stack.actors["oracle"]),
                }
            )
            if now >= next_minute - 0.5 or now >= end:
                stats = stack.stats(timeout_s=5.0)
                try:  # a loaded machine may delay the answer: this minute's latency is then not measured
                    values, seen = ray.get(
                        stack.actors["midi_out"].__ray_call__.remote(
                            lambda self: (self.latency.values("pipeline"), self.latency.count("pipeline"))
                        ),
                        timeout=60,
                    )
                except ray.exceptions.GetTimeoutError:
                    values, seen = [], latency_seen
                new = max(0, min(len(values), seen - latency_seen))
                window = np.asarray(values[len(values) - new :], dtype=float) * 1000.0
                latency_seen = seen
                load.append(os.getloadavg()[0])
                minutes.append(
                    {
                        "minute": len(minutes) + 1,
                        "events": stage_counter(stats, "capture", "events")
                        - stage_counter(previous, "capture", "events"),
                        "notes": stage_counter(stats, "midi_out", "notes_received")
                        - stage_counter(previous, "midi_out", "notes_received"),
                        "dropped": _sum(stats, DROP_KEYS) - _sum(previous, DROP_KEYS),
                        "overruns": _sum(stats, OVERRUN_KEYS) - _sum(previous, OVERRUN_KEYS),
                        "late_midi": _sum(stats, LATE_KEYS) - _sum(previous, LATE_KEYS),
                        "latency_p99_ms": round(float(np.percentile(window, 99)), 2) if window.size else None,
                        "errors": [
                            stats[s].get("error") for s in stats if isinstance(stats[s], dict) and stats[s].get("error")
                        ],
                    }
                )
                previous = stats
                next_minute += 60.0
                so_far = memory_report(samples, baseline_s=baseline_s)["actors"]
                print(
                    f"soak minute {len(minutes)}: "
                    + ", ".join(
                        f"{name} {a['rss_mb_end']:.0f} MB "
                        f"({a['rss_slope_mb_per_hour'] if a['rss_slope_mb_per_hour'] is not None else '-'} MB/h)"
                        for name, a in so_far.items()
                    )
                    + f", oracle arrays {samples[-1]['oracle_data_mb']} MB, "
                    f"dropped {minutes[-1]['dropped']}",
                    file=sys.stderr,
                    flush=True,
                )
        final = stack.stop(graceful=True, drain_s=3.0)
    finally:
        stack.stop(graceful=False)
        stop_jack(jack)
        shutil.rmtree(tmp, ignore_errors=True)
    memory = memory_report(samples, baseline_s=baseline_s)
    dropped = sum(m["dropped"] for m in minutes)
    figures = {
        "minutes": args.minutes,
        "input": str(clip.name),
        "sample_s": args.sample_s,
        "memory": memory,
        "baseline_s": baseline_s,
        "loadavg_1min_per_minute": [round(x, 2) for x in load],
        "memory_note": f"growth from the first sample at/after {baseline_s:.0f} s to the last; the oracle's goal is "
        "on its "
        "non-data growth = (RSS growth - growth of its own arrays) / baseline RSS; slopes are "
        "least-squares MB/hour",
        "dropped_total": dropped,
        "overruns_total": sum(m["overruns"] for m in minutes),
        "late_midi_total": sum(m["late_midi"] for m in minutes),
        "states_learned": final.get("oracle", {}).get("counters", {}).get("stage_states"),
        "rebuilds": final.get("oracle", {}).get("counters", {}).get("stage_rebuilds"),
        "per_minute": minutes,
        "rss_samples": samples,
        "final_counters": {
            stage: final.get(stage, {}).get("counters", {}) for stage in ("capture", "encoder", "oracle", "midi_out")
        },
    }
    goals = []
    for name, actor in sorted(memory["actors"].items()):
        if name == "oracle" and "non_data_growth_percent" in actor:
            goals.append(
                goal(
                    "oracle actor RSS growth net of its oracle arrays",
                    actor["non_data_growth_percent"],
                    "<",
                    5.0,
                    unit="%",
                    note=f"raw {actor['rss_growth_percent']} %, oracle arrays +{actor['oracle_data_growth_mb']} MB",
                )
            )
        else:
            goals.append(goal(f"{name} RSS growth", actor["rss_growth_percent"], "<", 5.0, unit="%"))
        slope = actor["rss_slope_mb_per_hour"]
        if name == "oracle" and slope is not None and actor.get("oracle_data_slope_mb_per_hour") is not None:
            goals.append(
                goal(
                    "oracle RSS slope net of its oracle arrays' slope",
                    round(slope - actor["oracle_data_slope_mb_per_hour"], 1),
                    "<=",
                    5.0,
                    unit="MB/h",
                    note=f"raw {slope} MB/h, arrays {actor['oracle_data_slope_mb_per_hour']} MB/h",
                )
            )
        elif name != "driver":
            goals.append(goal(f"{name} RSS slope after {baseline_s / 60:g} min", slope, "<=", 5.0, unit="MB/h"))
        else:
            goals.append(goal(f"{name} RSS slope", slope, "report", unit="MB/h"))
    goals.append(goal("all actors RSS growth (raw)", memory["total"]["rss_growth_percent"], "<", 5.0, unit="%"))
    goals.append(goal("dropped audio", dropped, "==", 0, unit="blocks"))
    latencies = [m["latency_p99_ms"] for m in minutes if m["latency_p99_ms"] is not None]
    goals.append(goal("pipeline latency p99, worst minute", max(latencies) if latencies else None, "report", unit="ms"))
    notes = (
        f"RSS growth and slopes are measured from the first sample at or after {baseline_s:.0f} s (start-up, JIT "
        "compilation, the first arena growth and the statistics' fixed rings are done by then) to the end. The oracle "
        "actor's goal is on its growth net of its own "
        "arrays (oracle frames, links and per-state metadata at their allocated capacity, which grow with the "
        "states it learns): (ΔRSS − Δarrays) / RSS at the baseline; its raw growth and the arrays' growth are "
        "in the goal's note. Slopes are least-squares MB/hour over the samples after the baseline."
    )
    return emit("soak", figures, goals, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
