"""Live-stack latency benchmark: a generated clip through capture → encoder → oracle → midi_out (traditional features).

Renders ``--seconds`` of short piano notes every ``--ioi-ms`` with fluidsynth, plays it through
:class:`services.stack.LiveStack`
at real-time pace on one node (local rings), and prints ONE JSON object:

Every series is recorded per event, keyed by the input event's id, and joined by that id (never by drawing from
independent series):

- ``pipeline``: last sample of the analysis window written to the ring (``Event.t_detected``) → note-on sent, for
  every event that started a response (the player answers only some onsets, so there are fewer of these than
  events), measured directly in the MIDI-out actor; ``pipeline_paired`` is the same
  path as the sum of its two parts recorded in different actors for the same event id (detected → decision in
  the oracle, decision → note-on in MIDI out), a check of the direct figure;
- ``detected_to_decision``: for EVERY event, ring → segmenter → encoder → oracle decision (play or not);
- ``transport``: the Ray-free ring hops — events ring (``events_ring``: sent → encoder), percepts ring
  (``encoder_to_oracle``), notes ring (``oracle_to_midi_out``, the response's first note) — summed per event id:
  the two hops every event takes, and the three hops of events that started a response;
- ``onset_to_note``: the musical reaction time (onset → note-on, the analysis window included).

Goals: pipeline p99 ≤ 15 ms (direct, and every event's detected → decision), transport p99 ≤ 3 ms (three ring
hops per event), ≥ 500 events.

    .venv/bin/python benchmarks/latency.py [--seconds 80] [--ioi-ms 120] [--window-ms 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, goal, strip_no_save  # noqa: E402
from fixtures import random_piano_clip  # noqa: E402

from shared.config import MusicHalConfig  # noqa: E402
from shared.stats import percentiles_ms  # noqa: E402


def render_clip(path: Path, *, seconds: float, ioi_ms: float, seed: int = 0) -> int:
    """Short piano notes every ``ioi_ms`` over a pentatonic set; returns the number of notes written."""
    step_s = ioi_ms / 1000.0
    count = int(seconds / step_s)
    random_piano_clip(
        path,
        seed=seed,
        count=count,
        pitches=[57, 60, 62, 64, 67, 69, 72, 74],
        start_s=0.2,
        step_s=step_s,
        duration_s=step_s * 0.7,
    )
    return count


def paired_sum(*series: dict[int, float]) -> list[float]:
    """Per event: the sum of the series' values for every event id present in all of them."""
    if not series:
        return []
    common = set(series[0]).intersection(*series[1:])
    return [sum(s[k] for s in series) for k in sorted(common)]


def run(*, seconds: float, ioi_ms: float, window_ms: float, density: float, api: str) -> dict:
    import ray

    from services.stack import LiveStack

    with tempfile.TemporaryDirectory(prefix="musichal_latency_") as folder:
        clip = Path(folder) / "clip.wav"
        notes_in = render_clip(clip, seconds=seconds, ioi_ms=ioi_ms)
        config = MusicHalConfig().with_overrides(
            {
                "features.kind": "traditional",
                "features.hybrid": False,
                "segmenter.window_ms": window_ms,
                "midi.api": api,
                "midi.profile": "gm-safe",
                "generation.density": density,
                "generation.seed": 1,
            }
        )
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
            series, keyed = {}, {}
            for actor, names in (
                ("encoder", ("detected_to_encoder", "events_ring", "encode")),
                ("oracle", ("encoder_to_oracle", "detected_to_oracle", "detected_to_decision", "oracle")),
                (
                    "midi_out",
                    ("pipeline", "onset_to_note", "decision_to_note_on", "oracle_to_midi_out", "schedule_error"),
                ),
            ):
                for name in names:
                    series[name], keyed[name] = ray.get(
                        stack.actors[actor].__ray_call__.remote(
                            lambda self, n=name: (self.latency.values(n), self.latency.keyed(n))
                        ),
                        timeout=10,
                    )
            stats = stack.stats(timeout_s=5.0)
        finally:
            stack.stop(graceful=True)
            if ray.is_initialized():
                ray.shutdown()

    def counter(stage: str, key: str):
        return stats.get(stage, {}).get("counters", {}).get(key)

    events = series["detected_to_decision"]
    two_hops = paired_sum(keyed["events_ring"], keyed["encoder_to_oracle"])
    three_hops = paired_sum(keyed["events_ring"], keyed["encoder_to_oracle"], keyed["oracle_to_midi_out"])
    paired_pipeline = paired_sum(keyed["detected_to_decision"], keyed["decision_to_note_on"])
    figures = {
        "benchmark": "live stack latency (single node, local rings, traditional features)",
        "input": {
            "seconds": seconds,
            "ioi_ms": ioi_ms,
            "notes": notes_in,
            "window_ms": window_ms,
            "generation_density": density,
            "midi_api": api,
        },
        "startup_s": round(startup_s, 2),
        "events": counter("capture", "events"),
        "percepts": counter("oracle", "percepts"),
        "responses_measured": len(series["pipeline"]),
        "notes_sent": counter("midi_out", "notes_received"),
        "drops": {
            "encoder_backlog": counter("encoder", "dropped_backlog"),
            "encoder_misses": counter("oracle", "encoder_misses"),
            "capture_samples_lost": counter("capture", "samples_lost"),
        },
        "pipeline_ms": percentiles_ms(series["pipeline"]),
        "pipeline_paired_ms": percentiles_ms(paired_pipeline),
        "detected_to_decision_ms": percentiles_ms(events),
        "decision_to_note_on_ms": percentiles_ms(series["decision_to_note_on"]),
        "transport_ms": {
            "events_ring_sent_to_encoder": percentiles_ms(series["events_ring"]),
            "segmenter_and_events_ring_detected_to_encoder": percentiles_ms(series["detected_to_encoder"]),
            "percepts_ring_encoder_to_oracle": percentiles_ms(series["encoder_to_oracle"]),
            "notes_ring_oracle_to_midi_out": percentiles_ms(series["oracle_to_midi_out"]),
            "per_event_events_and_percepts_rings": percentiles_ms(two_hops),
            "per_event_three_rings": percentiles_ms(three_hops),
        },
        "pairing_note": "per-event figures join the actors' series by input event id; counts are the events present "
        "in every joined series",
        "compute_ms": {"encode": percentiles_ms(series["encode"]), "oracle": percentiles_ms(series["oracle"])},
        "onset_to_note_ms": percentiles_ms(series["onset_to_note"]),
        "schedule_error_ms": percentiles_ms(series["schedule_error"]),
    }
    goals = [
        goal("pipeline p99, detected -> note-on (responses)", figures["pipeline_ms"].get("p99"), "<=", 15.0, unit="ms"),
        goal(
            "pipeline p99, detected -> decision (every event)",
            figures["detected_to_decision_ms"].get("p99"),
            "<=",
            15.0,
            unit="ms",
        ),
        goal(
            "transport p99, three ring hops per event",
            figures["transport_ms"]["per_event_three_rings"].get("p99"),
            "<=",
            3.0,
            unit="ms",
        ),
        goal("events measured", len(events), ">=", 500),
        goal(
            "onset -> note-on p50 (analysis window included)",
            figures["onset_to_note_ms"].get("p50"),
            "report",
            unit="ms",
        ),
    ]
    return figures, goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=80.0, help="clip length (default %(default)s)")
    parser.add_argument("--ioi-ms", type=float, default=120.0, help="time between input notes (default %(default)s)")
    parser.add_argument("--window-ms", type=float, default=500.0, help="analysis window (default %(default)s)")
    parser.add_argument("--density", type=float, default=4.0, help="generation.density (default %(default)s)")
    parser.add_argument(
        "--midi-api", default=None, help="MIDI API (default: jack; a dummy JACK server is started if none runs)"
    )
    args = parser.parse_args(strip_no_save())
    from shared.jack_server import dummy_jack_server

    with dummy_jack_server():  # a running JACK server, or a dummy one for the run
        figures, goals = run(
            seconds=args.seconds,
            ioi_ms=args.ioi_ms,
            window_ms=args.window_ms,
            density=args.density,
            api=args.midi_api or "jack",
        )
    return emit("latency", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
