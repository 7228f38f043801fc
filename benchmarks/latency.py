"""Live-stack latency benchmark: a generated clip through capture → encoder → oracle → midi_out (traditional features).

Renders ``--seconds`` of short piano notes every ``--ioi-ms`` with fluidsynth, plays it through :class:`launch.LiveStack`
at real-time pace on one node (local rings), and prints ONE JSON object:

- ``pipeline``: last sample of the analysis window written to the ring (``Event.t_detected``) → note-on sent, measured
  directly on the first note of every response (the improviser starts a phrase only when the previous one has
  ended, so there are fewer of these than events);
- ``pipeline_per_event``: the same path for EVERY event, as the per-event series ``detected_to_decision`` (ring →
  segmenter → encoder → oracle decision, measured in the oracle for each event) plus the decision → note-on hop
  (``decision_to_note_on``, sampled from the measured responses; Monte-Carlo sum of independent draws);
- ``transport``: the Ray-free ring hops — events ring (``detected_to_encoder``, includes the segmenter),
  percepts ring (``encoder_to_oracle``), notes ring (``oracle_to_midi_out``) — and their per-event sum;
- ``onset_to_note``: the musical reaction time (onset → note-on, the analysis window included).

Goals (DESIGN.md): pipeline p99 ≤ 15 ms, transport p99 ≤ 3 ms.

    .venv/bin/python benchmarks/latency.py [--seconds 80] [--ioi-ms 120] [--window-ms 500]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config import MusicHalConfig  # noqa: E402
from shared.stats import percentiles_ms  # noqa: E402


def render_clip(path: Path, *, seconds: float, ioi_ms: float, seed: int = 0) -> int:
    """Short piano notes every ``ioi_ms`` over a pentatonic set; returns the number of notes written."""
    from tests.audio_fixtures import render_midi_notes

    rng = np.random.default_rng(seed)
    step_s = ioi_ms / 1000.0
    count = int(seconds / step_s)
    notes = [(int(rng.choice([57, 60, 62, 64, 67, 69, 72, 74])), 0.2 + i * step_s, step_s * 0.7, int(rng.integers(70, 110)))
             for i in range(count)]
    render_midi_notes(notes, path)
    return count


def sum_percentiles(a_s: list[float], b_s: list[float], *, draws: int = 100_000, seed: int = 0) -> dict[str, float]:
    """Percentiles of A + B for independent draws of the two measured series."""
    if not a_s or not b_s:
        return {"count": 0}
    rng = np.random.default_rng(seed)
    a = rng.choice(np.asarray(a_s), size=draws)
    b = rng.choice(np.asarray(b_s), size=draws)
    figures = percentiles_ms(a + b)
    figures["count"] = len(a_s)
    return figures


def run(*, seconds: float, ioi_ms: float, window_ms: float, density: float, api: str) -> dict:
    import ray

    from launch import LiveStack

    with tempfile.TemporaryDirectory(prefix="musichal_latency_") as folder:
        clip = Path(folder) / "clip.wav"
        notes_in = render_clip(clip, seconds=seconds, ioi_ms=ioi_ms)
        config = MusicHalConfig().with_overrides({
            "features.kind": "traditional", "features.hybrid": False, "segmenter.window_ms": window_ms,
            "midi.api": api, "midi.profile": "gm-safe", "generation.density": density, "generation.seed": 1})
        stack = LiveStack(config, input_file=str(clip))
        t0 = time.monotonic()
        stack.start()
        startup_s = time.monotonic() - t0
        try:
            deadline = time.monotonic() + seconds + 60
            pause = threading.Event()
            while not stack.finished() and time.monotonic() < deadline:
                pause.wait(0.5)
            ray.get(stack.actors["midi_out"].wait_idle.remote(5.0), timeout=10)
            series = {}
            for actor, names in (("encoder", ("detected_to_encoder", "events_ring", "encode")),
                                 ("oracle", ("encoder_to_oracle", "detected_to_oracle", "detected_to_decision", "oracle")),
                                 ("midi_out", ("pipeline", "onset_to_note", "decision_to_note_on", "oracle_to_midi_out",
                                               "schedule_error"))):
                for name in names:
                    series[name] = ray.get(stack.actors[actor].__ray_call__.remote(
                        lambda self, n=name: self.latency.values(n)), timeout=10)
            stats = stack.stats(timeout_s=5.0)
        finally:
            stack.stop(graceful=True)
            if ray.is_initialized():
                ray.shutdown()

    def counter(stage: str, key: str):
        return stats.get(stage, {}).get("counters", {}).get(key)

    events = series["detected_to_decision"]
    hops = [series["events_ring"], series["encoder_to_oracle"]]
    n = min(len(h) for h in hops)
    # per-event transport: the two ring hops every event takes (same order in both series: one encoder, FIFO rings),
    # plus the notes-ring hop drawn from the measured notes
    per_event_rings = list(np.asarray(hops[0][-n:]) + np.asarray(hops[1][-n:])) if n else []
    result = {
        "benchmark": "live stack latency (single node, local rings, traditional features)",
        "input": {"seconds": seconds, "ioi_ms": ioi_ms, "notes": notes_in, "window_ms": window_ms,
                  "generation_density": density, "midi_api": api},
        "startup_s": round(startup_s, 2),
        "events": counter("capture", "events"), "percepts": counter("oracle", "percepts"),
        "responses_measured": len(series["pipeline"]), "notes_sent": counter("midi_out", "notes_received"),
        "drops": {"encoder_backlog": counter("encoder", "dropped_backlog"),
                  "encoder_misses": counter("oracle", "encoder_misses"),
                  "capture_samples_lost": counter("capture", "samples_lost")},
        "pipeline_ms": percentiles_ms(series["pipeline"]),
        "pipeline_per_event_ms": sum_percentiles(events, series["decision_to_note_on"]),
        "detected_to_decision_ms": percentiles_ms(events),
        "decision_to_note_on_ms": percentiles_ms(series["decision_to_note_on"]),
        "transport_ms": {
            "events_ring_sent_to_encoder": percentiles_ms(series["events_ring"]),
            "segmenter_and_events_ring_detected_to_encoder": percentiles_ms(series["detected_to_encoder"]),
            "percepts_ring_encoder_to_oracle": percentiles_ms(series["encoder_to_oracle"]),
            "notes_ring_oracle_to_midi_out": percentiles_ms(series["oracle_to_midi_out"]),
            "per_event_total": sum_percentiles(per_event_rings, series["oracle_to_midi_out"]),
        },
        "compute_ms": {"encode": percentiles_ms(series["encode"]), "oracle": percentiles_ms(series["oracle"])},
        "onset_to_note_ms": percentiles_ms(series["onset_to_note"]),
        "schedule_error_ms": percentiles_ms(series["schedule_error"]),
    }
    result["goals"] = {
        "pipeline_p99_le_15ms": bool(result["pipeline_per_event_ms"].get("p99", 1e9) <= 15.0
                                     and result["pipeline_ms"].get("p99", 1e9) <= 15.0),
        "transport_p99_le_3ms": bool(result["transport_ms"]["per_event_total"].get("p99", 1e9) <= 3.0),
        "events_ge_500": bool(len(events) >= 500),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=80.0, help="clip length (default %(default)s)")
    parser.add_argument("--ioi-ms", type=float, default=120.0, help="time between input notes (default %(default)s)")
    parser.add_argument("--window-ms", type=float, default=500.0, help="analysis window (default %(default)s)")
    parser.add_argument("--density", type=float, default=4.0, help="generation.density (default %(default)s)")
    parser.add_argument("--midi-api", default=None, help="MIDI API (default: jack; a dummy JACK server is started if none runs)")
    args = parser.parse_args()
    from shared.jack_server import dummy_jack_server

    with dummy_jack_server():  # a running JACK server, or a dummy one for the run
        print(json.dumps(run(seconds=args.seconds, ioi_ms=args.ioi_ms, window_ms=args.window_ms, density=args.density,
                             api=args.midi_api or "jack"), indent=2))


if __name__ == "__main__":
    main()
