"""Listening while playing, through the real stack: echo-aware gate beside the time gate, same material, one run.

The whole live stack (``LiveStack``: capture from a JACK audio input, encoder, oracle, midi_out to a JACK MIDI port)
runs on a JACK dummy server. A musician's line in C2..B2 (rendered with fluidsynth, onsets known) is played into the
capture's input by a JACK client; MusicHal (imitate, melody C4..C6, bass C3..C4) plays along, and its MIDI out drives
a live ``fluidsynth -a jack -m jack`` whose audio goes back into the same capture input: the echo is MusicHal's own
notes as they sound. Every input onset the stack detected (the oracle's session log) is named musician / echo / both
/ other by time against ground truth (musician: its known onsets; echo: MusicHal's note-ons as received on JACK; each
source's constant latency measured from the data), and counted learned when its full-window percept was not gated
(see ``tests/echo_loop.py``). Both gate modes (``control.gate_mode`` ``content`` = echo-aware, the default, and
``time`` = the old blanket gate) hear the same musician, one after the other in this run.

Run: ``python benchmarks/echo_stack.py`` (``--quick``: one 20 s take per mode instead of two 30 s takes).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["JACK_DEFAULT_SERVER"] = f"musichal-echo-bench-{os.getpid()}"  # our own server, never a running one
os.environ["JACK_NO_START_SERVER"] = "1"

from _common import emit, goal, strip_no_save  # noqa: E402


def _sum_counts(takes: list[dict], key: str) -> dict:
    onsets = sum(t["counts"].get(key, {}).get("onsets", 0) for t in takes)
    learned = sum(t["counts"].get(key, {}).get("learned", 0) for t in takes)
    return {"onsets": onsets, "learned": learned, "share": round(learned / onsets, 4) if onsets else None}


def main(argv=None) -> int:
    args = strip_no_save(argv)
    quick = "--quick" in args
    import ray

    from services.trainer.pipeline import train
    from shared.config import MusicHalConfig
    from shared.jack_server import start_dummy_jack, stop_jack
    from tests.audio_fixtures import render_midi_notes
    from tests.echo_loop import learned_shares, musician_line, run_loop, training_line

    seeds = (11,) if quick else (11, 12)
    seconds = 20.0 if quick else 30.0
    jack = start_dummy_jack(sync=True)
    takes: dict[str, list[dict]] = {"content": [], "time": []}
    try:
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _node_ip_address="127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="musichal_echo_stack_") as tmp:
            root = Path(tmp)
            model = root / "model.json"
            train([render_midi_notes(training_line(21), root / "train.wav")],
                  config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 16}), output=model,
                  cache_dir=root / "cache")
            for seed in seeds:
                notes = musician_line(seed, seconds)
                wav = render_midi_notes(notes, root / f"musician{seed}.wav")
                for mode in ("content", "time"):
                    run = run_loop(model=model, musician_wav=wav, mode=mode, workdir=root)
                    figures = learned_shares(run, notes)
                    figures.update({"seed": seed, "oracle": {k: run["final"].get("oracle", {}).get(k)
                                                             for k in ("events", "percepts", "gated", "learned")}})
                    print(f"{mode} seed {seed}: {figures}", file=sys.stderr)
                    takes[mode].append(figures)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop_jack(jack)

    summary = {mode: {who: _sum_counts(t, who) for who in ("musician", "echo", "both", "other",
                                                           "musician_while_playing")}
               for mode, t in takes.items()}
    figures = {"takes": takes, "summary": summary, "seconds_per_take": seconds, "seeds": list(seeds)}
    c, t = summary["content"], summary["time"]
    goals = [
        goal("musician onsets learned, echo-aware gate (content)", c["musician"]["share"], ">=", 0.9),
        goal("echo onsets learned, echo-aware gate (content)", c["echo"]["share"], "<=", 0.1),
        goal("musician onsets learned while MusicHal plays, echo-aware", c["musician_while_playing"]["share"], "report"),
        goal("musician onsets learned, time gate (same musician)", t["musician"]["share"], "report"),
        goal("echo onsets learned, time gate", t["echo"]["share"], "report"),
        goal("musician onsets detected (content / time takes)",
             f"{c['musician']['onsets']} / {t['musician']['onsets']}", "report"),
        goal("echo onsets detected (content / time takes)", f"{c['echo']['onsets']} / {t['echo']['onsets']}", "report"),
    ]
    return emit("echo_stack", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
