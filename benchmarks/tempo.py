"""Tempo tracking on rendered MIDI: the live segmenter's onsets into :class:`services.oracle.player.tempo.TempoTracker`.

Each piece (music21 corpus chorales, ``--pieces``) is rendered with fluidsynth at each of six tempi from 60 to 180
quarter notes per minute (first ``--seconds``), cut into events by the live segmenter, and its onsets are added to a
tracker one by one. Figures per piece and tempo: the median and the worst relative error of the estimates over the
second half of the onsets (the tracker has settled by then), and whether an octave error (half or double) occurred.
Goal: every settled estimate within ±2 % at every tempo on every piece.

    .venv/bin/python benchmarks/tempo.py [--pieces 4] [--seconds 20] [--no-save]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, goal  # noqa: E402

TEMPI = (60, 84, 110, 140, 160, 180)
CHORALES = ("bach/bwv269", "bach/bwv66.6", "bach/bwv153.1", "bach/bwv253", "bach/bwv40.8", "bach/bwv86.6")


def track(name: str, bpm: float, folder: Path, *, seconds: float) -> dict:
    import soundfile as sf

    from services.capture.segmenter import segment_signal
    from services.oracle.player.tempo import TempoTracker
    from shared.config import MusicHalConfig
    from testkit.audio import chorale_notes, render_midi_notes

    wav = render_midi_notes(chorale_notes(name, bpm=bpm, seconds=seconds), folder / "t.wav")
    audio, sr = sf.read(wav, dtype="float32")
    events = segment_signal(
        audio.mean(axis=1) if audio.ndim > 1 else audio, MusicHalConfig().segmenter, sample_rate_hz=sr
    )
    tracker = TempoTracker()
    estimates = [tracker.add(e.onset_s) for e in events]
    settled = np.array([b for b in estimates[len(estimates) // 2 :] if b is not None])
    if settled.size == 0:
        return {"onsets": len(events), "median_bpm": None, "worst_error": None, "octave_error": None}
    errors = np.abs(settled - bpm) / bpm
    return {
        "onsets": len(events),
        "median_bpm": round(float(np.median(settled)), 2),
        "worst_error": round(float(errors.max()), 4),
        "octave_error": bool(np.any(np.abs(np.log2(settled / bpm)) > 0.5)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=4, help=f"how many of {len(CHORALES)} chorales (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-save", action="store_true", help="print the JSON only")
    args = parser.parse_args(argv)
    figures: dict = {"tempi": list(TEMPI), "seconds": args.seconds, "pieces": {}}
    with tempfile.TemporaryDirectory(prefix="musichal_tempo_") as tmp:
        for name in CHORALES[: max(1, args.pieces)]:
            figures["pieces"][name] = {str(bpm): track(name, bpm, Path(tmp), seconds=args.seconds) for bpm in TEMPI}
    runs = [r for piece in figures["pieces"].values() for r in piece.values()]
    worst = None if any(r["worst_error"] is None for r in runs) else max(r["worst_error"] for r in runs)
    figures["octave_errors"] = sum(bool(r["octave_error"]) for r in runs)
    figures["runs"] = len(runs)
    goals = [
        goal(
            "settled tempo error, worst piece and tempo (60-180 BPM)",
            None if worst is None else 100 * worst,
            "<=",
            2.0,
            unit="%",
        ),
        goal("runs with an octave error (half or double)", figures["octave_errors"], "==", 0),
    ]
    return emit("tempo", figures, goals, save=not args.no_save)


if __name__ == "__main__":
    raise SystemExit(main())
