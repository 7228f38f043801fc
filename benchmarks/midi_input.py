"""A keyboard as the musician through the whole live stack and real JACK MIDI in and out: prints ONE JSON object
(``benchmarks/_common.emit``) and saves it to benchmarks/results/midi_input.json.

For each of ``--pieces`` chorales a fresh stack (``--input-midi virtual``, learning live, ``--mode imitate``, gm-safe,
the audio input a silent file) hears a test player (``testkit.keyboard``) play the chorale's score for ``--seconds``
into "MusicHal in"; a JACK reader records what comes out. Figures per piece and over all:

* onset → influenced note: midi_out's ``onset_to_note`` (the MIDI message's arrival in the launcher → the
  reaction's note-on written to the port) and, through JACK both ways, the player's send → the reader's receipt of
  the first note-on after it (``through_jack``); p50/p95 in ms. Goal: through-JACK p95 <= 20 ms.
* the oracle's ``midi_onset_to_decision`` (arrival → the early percept's decision) p95.
* pitch-class correlation of the output with the score (goal >= 0.85) and with the next chorale transposed a
  tritone (goal: own - other >= 0.3).

Run: ``.venv/bin/python benchmarks/midi_input.py [--pieces 2 --seconds 20]`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

GOAL_P95_MS = 20.0


def run_piece(name: str, other: str, *, seconds: float, folder: Path) -> dict:
    import soundfile as sf

    from services.stack import LiveStack
    from shared.config import MusicHalConfig
    from testkit.audio import chorale_notes
    from testkit.keyboard import (
        chord_send_times,
        correlation,
        first_note_latencies_ms,
        open_keyboard,
        pc_histogram,
        play_score,
    )
    from testkit.midi import TimedJackReader

    score = chorale_notes(name, bpm=100, seconds=seconds, velocity=80)
    silence = folder / "silence.wav"
    sf.write(silence, np.zeros(48000, dtype=np.float32), 48000)
    reader = TimedJackReader()
    port = reader.open_virtual("in")
    config = MusicHalConfig().with_overrides(
        {"midi.api": "jack", "midi.port": port, "midi.profile": "gm-safe", "generation.mode": "imitate"}
    )
    stack = LiveStack(config, input_file=str(silence), loop=True, input_midi="virtual")
    output = None
    try:
        stack.start()
        output = open_keyboard("MusicHal in")
        sent = play_score(output, score)
        final = stack.stop(graceful=True, drain_s=2.0)
    finally:
        if output is not None:
            output.close()
        stack.stop(graceful=False)
        reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()
    played = [m[1] for _, m in timed if (m[0] & 0xF0) == 0x90 and m[2] > 0]
    through = first_note_latencies_ms(sorted(chord_send_times(sent).values()), timed)
    own = correlation(pc_histogram(played), pc_histogram([n[0] for n in score]))
    other_score = chorale_notes(other, bpm=100, seconds=seconds, transpose=6)
    other_corr = correlation(pc_histogram(played), pc_histogram([n[0] for n in other_score]))
    onset_to_note = final.get("midi_out", {}).get("latency_ms", {}).get("onset_to_note", {})
    decision = final.get("oracle", {}).get("latency_ms", {}).get("midi_onset_to_decision", {})
    midi_out_latency = final.get("midi_out", {}).get("latency_ms", {})
    hops = {  # where the time after the decision goes (midi_out's series, ms)
        name: {k: midi_out_latency.get(name, {}).get(k) for k in ("p50", "p95")}
        for name in ("oracle_to_midi_out", "decision_to_note_on", "schedule_error_reaction")
    }
    counters = final.get("oracle", {}).get("counters", {})
    return {
        "chords": len(chord_send_times(sent)),
        "midi_events": counters.get("midi_events"),
        "learned": counters.get("stage_learned"),
        "notes_out": len(played),
        "onset_to_note_p50_ms": onset_to_note.get("p50"),
        "onset_to_note_p95_ms": onset_to_note.get("p95"),
        "through_jack_ms": through,
        "through_jack_p50_ms": round(float(np.percentile(through, 50)), 2) if through else None,
        "through_jack_p95_ms": round(float(np.percentile(through, 95)), 2) if through else None,
        "midi_onset_to_decision_p95_ms": decision.get("p95"),
        "after_decision_ms": hops,
        "own_corr": round(own, 3),
        "other_corr": round(other_corr, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(strip_no_save(argv))

    from shared.jack_server import dummy_jack_server
    from testkit.audio import CHORALES

    names = list(CHORALES[: max(1, args.pieces)])
    pieces = {}
    with tempfile.TemporaryDirectory(prefix="musichal_midi_input_") as tmp, dummy_jack_server():
        for index, name in enumerate(names):
            other = CHORALES[(index + 1) % len(CHORALES)]
            pieces[name] = run_piece(name, other, seconds=args.seconds, folder=Path(tmp))
    through = [x for piece in pieces.values() for x in piece.pop("through_jack_ms")]
    figures = {
        "pieces": pieces,
        "through_jack_p50_ms": round(float(np.percentile(through, 50)), 2) if through else None,
        "through_jack_p95_ms": round(float(np.percentile(through, 95)), 2) if through else None,
        "own_corr_min": min(p["own_corr"] for p in pieces.values()),
        "own_minus_other_min": min(p["own_corr"] - p["other_corr"] for p in pieces.values()),
    }
    goals = [
        goal(
            "onset -> influenced note p95, through JACK MIDI in and out",
            figures["through_jack_p95_ms"],
            "<=",
            GOAL_P95_MS,
            unit="ms",
        ),
        goal("pitch-class correlation with the score (lowest piece)", figures["own_corr_min"], ">=", 0.85),
        goal("own - other correlation (lowest piece)", figures["own_minus_other_min"], ">=", 0.3),
    ]
    return emit("midi_input", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
