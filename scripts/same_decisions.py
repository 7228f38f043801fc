"""The audio view's decisions at a commit, to compare two commits: chord percepts (slice notes, chroma, f0) of two
chorales heard by LiveOracle on a simulated clock, learning live, in every mode; writes every note decided as JSON.

    git worktree add /tmp/a A; git worktree add /tmp/b B
    (cd /tmp/a && PYTHONPATH=. python /path/to/same_decisions.py /tmp/a.json)   # likewise for B, then compare the files

Used to show that the symbolic-input work left audio decisions unchanged (issue 28: 9688f69^1 against 9688f69, the
same 1,184 notes in six piece/mode runs). Imports what both sides have (OracleMemory, or OracleStage before the
memory/player split)."""

import json
import sys

import numpy as np

from services.oracle.player.live import LiveOracle
from shared.config import MusicHalConfig
from shared.messages import EventDescriptors, Percept
from testkit.audio import chorale_notes

try:
    from services.oracle.memory.store import OracleMemory
except ImportError:
    from services.oracle.stage import OracleStage as OracleMemory
out = {}
for piece in ["bach/bwv66.6", "bach/bwv269"]:
    notes = chorale_notes(piece, bpm=100, seconds=30)
    onsets = sorted({round(s, 6) for _, s, _, _ in notes})
    for mode in ["imitate", "contrast", "lead"]:
        config = MusicHalConfig().with_overrides({"generation.mode": mode})
        live = LiveOracle(config, OracleMemory(config, background=False))
        played = []
        t = 0.0
        for i, on in enumerate(onsets):
            chord = sorted(p for p, s, d, v in notes if abs(s - on) < 1e-6)
            top = max(chord)
            pcs = tuple(dict.fromkeys(p % 12 for p in sorted(chord, reverse=True)))[:4]
            desc = EventDescriptors(
                onset_s=on,
                duration_s=0.4,
                rms=0.1,
                velocity=80,
                f0_hz=440.0 * 2 ** ((top - 69) / 12),
                f0_confidence=0.9,
                chroma_peaks=pcs,
                notes=tuple((p, 0.0, 0.35, 80, 0.0, 0.0) for p in chord),
            )
            rng = np.random.default_rng(i)
            feats = np.zeros(22, dtype=np.float32)
            for p in chord:
                feats[p % 12] += 1.0
            feats[12:] = rng.random(10).astype(np.float32) * 0.1
            percept = Percept(event_id=i, token=pcs[0], features=feats, descriptors=desc)
            while t < on:
                played += live.tick(t)
                t += 0.01
            played += live.on_percept(percept, on, gated=False)
            live.learn_queued()
        out[f"{piece}-{mode}"] = [(n.pitch, round(n.t_on, 9), n.voice) for n in played]
json.dump(out, open(sys.argv[1], "w"))
print({k: len(v) for k, v in out.items()})
