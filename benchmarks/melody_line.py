"""The melody's pitch rule, measured: which pitch of a slice is the input's top line?

For each piece (``benchmarks/musical.py``'s corpus pieces, rendered with fluidsynth at ``--bpm``, first ``--seconds``),
the trainer's own analysis (:func:`services.encoder.analysis.analyze_file`, slice notes on: the code the live encoder
runs) gives every event's descriptors. Each rule names a pitch per event, compared with the score's top line at that
onset (the highest note starting within 50 ms of it, as the musical benchmark's top line):

- ``top_struck`` — :func:`services.oracle.player.walk.melody_pitch`: the highest transcribed note newly struck at
  the slice's onset, a note held from the previous slice not counted (the player's rule when notes are known);
- ``nearest_struck`` — the struck note nearest the previous event's choice (a voice tracked by continuity);
- ``chroma`` — the slice's strongest chroma class (the player's rule without notes);
- ``f0`` — the slice's f0.

Figures per rule: share of events whose pitch class is the top line's (``pc_match``) and, for note rules, whose pitch
is (``pitch_match``), and the repeat share of the rule's line against the top line's. Goal: ``top_struck`` matches
the top line's pitch class on ≥ 0.8 of the events, above the chroma rule.

    .venv/bin/python benchmarks/melody_line.py [--pieces 4] [--seconds 30] [--bpm 100] [--no-save]
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
from musical import PIECES  # noqa: E402

from services.compare.musical import repeat_share  # noqa: E402
from shared.pitch import hz_to_midi  # noqa: E402

RULES = ("top_struck", "nearest_struck", "chroma", "f0")


def top_at(score, t: float) -> int | None:
    """The highest score pitch starting within 50 ms of ``t`` (the input's top line at that onset, as
    :func:`services.compare.musical.top_line` takes it: the highest note struck there)."""
    struck = [p for p, s, _, _ in score if abs(s - t) <= 0.05]
    return max(struck) if struck else None


def choices(descriptors) -> dict[str, list[int | None]]:
    """Each rule's pitch per event (None: the rule has nothing)."""
    from services.oracle.player.walk import MELODY_START_S, held_pitches, melody_pitch

    out: dict[str, list[int | None]] = {rule: [] for rule in RULES}
    previous: int | None = None
    for k, d in enumerate(descriptors):
        held = held_pitches(descriptors[k - 1].notes, d.onset_s - descriptors[k - 1].onset_s) if k else frozenset()
        out["top_struck"].append(melody_pitch(d.notes, held=held))
        struck = [int(n[0]) for n in d.notes if n[1] <= MELODY_START_S] or [int(n[0]) for n in d.notes]
        if struck:
            ref = previous if previous is not None else max(struck)
            previous = min(struck, key=lambda p: (abs(p - ref), -p))
        out["nearest_struck"].append(previous if struck else None)
        out["chroma"].append(int(d.chroma_peaks[0]) if d.chroma_peaks else None)
        out["f0"].append(int(round(hz_to_midi(d.f0_hz))) if d.f0_hz > 0 else None)
    return out


def measure_piece(name: str, folder: Path, *, bpm: float, seconds: float) -> dict:
    from services.encoder.analysis import analyze_file
    from services.encoder.views import HybridPerceptionModule
    from shared.config import MusicHalConfig
    from testkit.audio import chorale_notes, render_midi_notes

    score = chorale_notes(name, bpm=bpm, seconds=seconds)
    wav = render_midi_notes(score, folder / f"{name.replace('/', '_')}.wav")
    events, analyses = analyze_file(wav, MusicHalConfig(), HybridPerceptionModule(slice_notes=True))
    tops = [top_at(score, e.onset_s) for e in events]
    picked = choices([d for d, _ in analyses])
    line = [t for t in tops if t is not None]
    out: dict = {"events": len(events), "top_line_repeat_share": round(repeat_share(line), 3)}
    for rule, pitches in picked.items():
        pairs = [(p, t) for p, t in zip(pitches, tops) if p is not None and t is not None]
        out[rule] = {
            "events": len(pairs),
            "pc_match": round(float(np.mean([p % 12 == t % 12 for p, t in pairs])), 3) if pairs else None,
            "pitch_match": round(float(np.mean([p == t for p, t in pairs])), 3) if pairs and rule != "chroma" else None,
            "repeat_share": round(repeat_share(p for p in pitches if p is not None), 3),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=4, help=f"how many of {len(PIECES)} corpus pieces (default 4)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bpm", type=float, default=100.0)
    parser.add_argument("--no-save", action="store_true", help="print the JSON only")
    args = parser.parse_args(argv)
    figures: dict = {"pieces": {}, "bpm": args.bpm, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="musichal_melody_") as tmp:
        for name in PIECES[: max(1, args.pieces)]:
            figures["pieces"][name] = measure_piece(name, Path(tmp), bpm=args.bpm, seconds=args.seconds)
    pieces = list(figures["pieces"].values())
    figures["mean"] = {
        rule: round(float(np.mean([p[rule]["pc_match"] for p in pieces if p[rule]["pc_match"] is not None])), 3)
        for rule in RULES
    }
    goals = [
        goal("top_struck: events whose pitch class is the top line's, mean", figures["mean"]["top_struck"], ">=", 0.8),
        goal(
            "top_struck minus the chroma rule, mean pitch-class match",
            round(figures["mean"]["top_struck"] - figures["mean"]["chroma"], 3),
            ">",
            0.0,
        ),
    ]
    return emit("melody_line", figures, goals, save=not args.no_save)


if __name__ == "__main__":
    raise SystemExit(main())
