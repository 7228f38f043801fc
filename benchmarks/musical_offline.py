"""The musical measures without the stack: the live decision object driven on a simulated clock from a rendered piece.

A development aid beside ``benchmarks/musical.py`` (which runs the whole live stack and is what the goals are judged
on): the same piece, rendered with fluidsynth, goes through the live segmenter (early and full events), the early
view's analysis (:func:`services.encoder.fallback.early_view`) and the encoder stage (slice notes as configured), and
:class:`services.oracle.player.live.LiveOracle` receives each view when the live stack would: an early view
``segmenter.early_ms`` after its onset (+ ``--early-lag-ms``), a full percept when its window has been written (+
``--full-lag-ms`` of encoding), learning each full percept after its notes, ticking every 5 ms. No Ray, no JACK, no
scheduling noise: the figures say what the player decides, quickly and reproducibly (reaction latency is not
measured here). Measures as ``benchmarks/musical.py``'s (:mod:`services.compare.musical`), per mode.

    .venv/bin/python benchmarks/musical_offline.py [--pieces 2 | --names a,b] [--seconds 20] [--modes imitate,contrast]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from musical import PIECES  # noqa: E402

from services.compare.musical import (  # noqa: E402
    copy_share,
    correlation,
    harmonic_agreement,
    key_only_agreement,
    pc_histogram,
    repeat_share,
    top_line,
)


def views(wav: Path, config) -> list[tuple[float, str, object, object]]:
    """``(available_at_s, kind, event, percept)`` of every early and full view of the piece, in time order."""
    import soundfile as sf

    from services.capture.segmenter import OnsetSegmenter
    from services.encoder.fallback import early_view
    from services.encoder.stage import EncoderStage
    from services.encoder.views import HybridPerceptionModule

    audio, sr = sf.read(wav, dtype="float32")
    mono = audio.mean(axis=1) if audio.ndim > 1 else audio
    segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=sr, clock=None, early_ms=config.segmenter.early_ms)
    events = []
    for begin in range(0, mono.size, 256):
        events += segmenter.process(mono[begin : begin + 256])
    events += segmenter.finish()
    stage = EncoderStage(HybridPerceptionModule.from_config(config), None)
    out = []
    for event in events:
        window = mono[event.window_start : event.window_end]
        ready = event.window_end / sr
        if event.early:
            out.append((ready, "early", event, early_view(event, window)))
        else:
            out.append((ready, "full", event, stage.process((event, window))))
    return sorted(out, key=lambda v: v[0])


def play(config, timeline, *, seconds: float, early_lag_s: float, full_lag_s: float) -> list:
    from services.oracle.memory.store import OracleMemory
    from services.oracle.player.live import LiveOracle

    live = LiveOracle(config, OracleMemory(config, background=False))
    pending = [(at + (early_lag_s if kind == "early" else full_lag_s), kind, e, p) for at, kind, e, p in timeline]
    pending.sort(key=lambda v: v[0])
    notes, k, t = [], 0, 0.0
    while t < seconds:
        while k < len(pending) and pending[k][0] <= t:
            _, kind, event, percept = pending[k]
            notes += live.on_percept(percept, t, early=kind == "early", onset_t=event.onset_s, gated=False)
            if kind == "full":
                live.learn_queued()
            k += 1
        notes += live.tick(t)
        t = round(t + 0.005, 6)
    return notes


def measure(notes, score, other, *, seconds: float) -> dict:
    heard = sorted((n.t_on, n.pitch, n.voice) for n in notes if n.t_on < seconds)
    melody = [p for _, p, v in heard if v == "melody"]
    hist = np.bincount([p % 12 for p in melody], minlength=12)
    line = top_line(score)
    return {
        "notes": {v: sum(1 for h in heard if h[2] == v) for v in ("melody", "bass", "comping")},
        "agreement": {
            v: harmonic_agreement([(p, t) for t, p, w in heard if v in ("all", w)], score)
            for v in ("all", "melody", "bass", "comping")
        },
        "key_only": key_only_agreement([t for t, _, _ in heard], score),
        "copy_share": copy_share(melody, line),
        "repeat_share": repeat_share(melody),
        "input_repeat_share": repeat_share(line),
        "own_corr": correlation(hist, pc_histogram(score)),
        "other_corr": correlation(hist, pc_histogram(other)),
    }


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(float(value), 3) if isinstance(value, (float, np.floating)) else value


def main(argv=None) -> int:
    from shared.config import MusicHalConfig
    from testkit.audio import chorale_notes, render_midi_notes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=2)
    parser.add_argument("--names", help="comma-separated corpus names instead of the first --pieces")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bpm", type=float, default=100.0)
    parser.add_argument("--modes", default="imitate,contrast")
    parser.add_argument("--early-lag-ms", type=float, default=5.0)
    parser.add_argument("--full-lag-ms", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--early-ms", type=float, help="segmenter.early_ms (default: the config's)")
    args = parser.parse_args(argv)
    segmenter = {} if args.early_ms is None else {"segmenter.early_ms": args.early_ms}
    names = args.names.split(",") if args.names else PIECES[: max(2, args.pieces)]
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="musichal_offline_") as tmp:
        scores = {n: chorale_notes(n, bpm=args.bpm, seconds=args.seconds) for n in names}
        for index, name in enumerate(names):
            other = scores[names[(index + 1) % len(names)]]
            wav = render_midi_notes(scores[name], Path(tmp) / f"{index}.wav")
            timeline = views(wav, MusicHalConfig().with_overrides(segmenter))
            for mode in args.modes.split(","):
                config = MusicHalConfig().with_overrides(
                    {"generation.mode": mode, "generation.seed": args.seed, "control.input_gate": False, **segmenter}
                )
                notes = play(
                    config,
                    timeline,
                    seconds=args.seconds,
                    early_lag_s=args.early_lag_ms / 1000,
                    full_lag_s=args.full_lag_ms / 1000,
                )
                figures = measure(notes, scores[name], other, seconds=args.seconds)
                out.setdefault(name, {})[mode] = figures
                print(json.dumps({name: {mode: _rounded(figures)}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
