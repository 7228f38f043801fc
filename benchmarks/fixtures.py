"""Benchmark-only fixtures: the random piano clips the live-stack benchmarks play (latency, soak, remote encoder).
Fixtures that tests use too live in ``testkit/`` (rendering, JACK reader, waits, namespaces, tiny wav2vec)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def random_piano_clip(
    path: Path,
    *,
    seed: int,
    count: int,
    pitches: Sequence[int],
    start_s: float,
    step_s: float,
    duration_s: float,
    velocity: int | None = None,
) -> Path:
    """``count`` piano notes, one every ``step_s`` from ``start_s``, each a random pick from ``pitches``; velocity
    fixed or (``None``) random in 70..109; rendered with fluidsynth to ``path``."""
    from testkit.audio import render_midi_notes

    rng = np.random.default_rng(seed)
    notes = [
        (
            int(rng.choice(list(pitches))),
            start_s + i * step_s,
            duration_s,
            int(rng.integers(70, 110)) if velocity is None else velocity,
        )
        for i in range(count)
    ]
    return render_midi_notes(notes, path)
