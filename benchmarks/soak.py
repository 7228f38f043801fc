"""Soak: the live stack on a looping input for N minutes; prints JSON per minute and over the run.

    .venv/bin/python benchmarks/soak.py --minutes 30 [--input-file take.wav] [--sample-s 10]

Reports RSS over time per actor process (psutil on each actor's pid) and in total, dropped blocks (capture samples
lost, encoder backlog drops, oracle in-flight drops), overruns (ring reader overruns, segmenter overruns, input
overflows, late file blocks), late MIDI events (scheduler late sends and late arrivals) and the pipeline latency p99
(onset detected → note-on) per minute. Goals: RSS growth < 5 % over 30 min, zero dropped audio. Needs a JACK server
for the MIDI output (a dummy one is started when none runs). Timing goals live here, never in CI tests.
"""
from __future__ import annotations

import argparse
import json
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

from shared.config import MusicHalConfig  # noqa: E402
from shared.jack_server import start_dummy_jack, stop_jack  # noqa: E402

DROP_KEYS = (("capture", "samples_lost"), ("encoder", "dropped_backlog"), ("oracle", "dropped_in_flight"))
OVERRUN_KEYS = (("capture", "segmenter_overruns"), ("capture", "late_blocks"), ("capture", "input_overflows"),
                ("encoder", "message_overruns"), ("encoder", "window_overruns"), ("oracle", "message_overruns"),
                ("midi_out", "message_overruns"))
LATE_KEYS = (("midi_out", "scheduler_late"), ("midi_out", "scheduler_late_on_arrival"))


def _counter(stats: dict, stage: str, key: str) -> int:
    value = stats.get(stage, {}).get("counters", {}).get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0


def _sum(stats: dict, keys) -> int:
    return sum(_counter(stats, stage, key) for stage, key in keys)


def _render_default(folder: Path) -> Path:
    from tests.audio_fixtures import render_midi_notes

    rng = np.random.default_rng(3)
    notes = [(int(rng.choice([55, 57, 60, 62, 64, 67, 69, 72])), 0.1 + i * 0.2, 0.17, int(rng.integers(70, 110)))
             for i in range(150)]  # 30 s, looped
    return render_midi_notes(notes, folder / "soak.wav")


def _rss_mb(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            out[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            out[name] = float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--input-file", help="audio looped into the stack (default: a rendered 30 s piano clip)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_s <= 0:
        parser.error("--minutes and --sample-s must be > 0")
    import ray

    from launch import LiveStack

    jack = start_dummy_jack()
    tmp = Path(tempfile.mkdtemp(prefix="musichal_soak_"))
    clip = Path(args.input_file) if args.input_file else _render_default(tmp)
    config = MusicHalConfig().with_overrides({"midi.api": "jack", "midi.profile": "gm-safe", "generation.seed": 1})
    stack = LiveStack(config, input_file=str(clip), loop=True, checkpoint_path=str(tmp / "learned.json"))
    samples, minutes = [], []
    pause = threading.Event()
    try:
        stack.start()
        pids = {name: int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
                for name, actor in stack.actors.items()}
        pids["driver"] = os.getpid()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60.0
        next_minute = t0 + 60.0
        previous = stack.stats(timeout_s=5.0)
        latency_seen = 0
        while time.monotonic() < end:
            pause.wait(min(args.sample_s, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            samples.append({"t_s": round(now - t0, 1), "rss_mb": _rss_mb(pids)})
            if now >= next_minute - 0.5 or now >= end:
                stats = stack.stats(timeout_s=5.0)
                values = ray.get(stack.actors["midi_out"].latency_values.remote("pipeline"), timeout=10)
                window = np.asarray(values[latency_seen:], dtype=float) * 1000.0
                latency_seen = len(values)
                minutes.append({
                    "minute": len(minutes) + 1,
                    "events": _counter(stats, "capture", "events") - _counter(previous, "capture", "events"),
                    "notes": _counter(stats, "midi_out", "notes_received") - _counter(previous, "midi_out", "notes_received"),
                    "dropped": _sum(stats, DROP_KEYS) - _sum(previous, DROP_KEYS),
                    "overruns": _sum(stats, OVERRUN_KEYS) - _sum(previous, OVERRUN_KEYS),
                    "late_midi": _sum(stats, LATE_KEYS) - _sum(previous, LATE_KEYS),
                    "latency_p99_ms": round(float(np.percentile(window, 99)), 2) if window.size else None,
                    "errors": [stats[s].get("error") for s in stats if isinstance(stats[s], dict) and stats[s].get("error")],
                })
                previous = stats
                next_minute += 60.0
        final = stack.stop(graceful=True, drain_s=3.0)
    finally:
        stack.stop(graceful=False)
        stop_jack(jack)
        shutil.rmtree(tmp, ignore_errors=True)
    total = lambda s: sum(v for v in s["rss_mb"].values() if v == v)  # noqa: E731
    # growth measured after a one-sample warm-up (first allocations, numba/JIT caches)
    base = samples[1] if len(samples) > 2 else samples[0]
    growth = {name: round(100.0 * (samples[-1]["rss_mb"][name] / base["rss_mb"][name] - 1.0), 2)
              for name in base["rss_mb"] if base["rss_mb"][name] == base["rss_mb"][name]}
    report = {
        "minutes": args.minutes, "input": str(clip.name),
        "rss_growth_percent": {**growth, "total": round(100.0 * (total(samples[-1]) / total(base) - 1.0), 2)},
        "rss_growth_baseline_t_s": base["t_s"],
        "dropped_total": sum(m["dropped"] for m in minutes),
        "overruns_total": sum(m["overruns"] for m in minutes),
        "late_midi_total": sum(m["late_midi"] for m in minutes),
        "per_minute": minutes,
        "rss_samples": samples,
        "final_counters": {stage: final.get(stage, {}).get("counters", {}) for stage in ("capture", "encoder", "oracle", "midi_out")},
        "goals": {"rss_growth_below_5_percent": round(100.0 * (total(samples[-1]) / total(base) - 1.0), 2) < 5.0,
                  "zero_dropped_audio": sum(m["dropped"] for m in minutes) == 0},
    }
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
