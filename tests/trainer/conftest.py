"""Trainer fixtures: a small generated corpus (numpy notes at 48 kHz + one fluidsynth file at 44.1 kHz stereo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from testkit.audio import fluidsynth_available, render_midi_notes

SR = 48000


def note_sequence(seed: int, seconds: float, *, sample_rate_hz: int = SR) -> np.ndarray:
    """Plucked two-partial notes at random pitches and irregular onsets (mono float32)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sample_rate_hz), dtype=np.float32)
    onset_s = 0.1
    while onset_s < seconds - 0.4:
        freq = 440.0 * 2.0 ** (int(rng.integers(-12, 12)) / 12.0)
        t = np.arange(int(0.3 * sample_rate_hz)) / sample_rate_hz
        envelope = np.exp(-t * 6.0) * np.minimum(1.0, t * 200.0)
        start = int(onset_s * sample_rate_hz)
        out[start : start + t.size] += (
            0.4 * envelope * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t))
        ).astype(np.float32)
        onset_s += float(rng.uniform(0.25, 0.5))
    return out


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "sub").mkdir()
    for index in range(3):
        sf.write(root / ("sub" if index == 2 else ".") / f"take{index}.wav", note_sequence(index, 3.0), SR)
    if not fluidsynth_available():
        pytest.fail("fluidsynth and FluidR3_GM.sf2 are required (run `make test` to install them)")
    notes = [(p, 0.2 + 0.3 * i, 0.25, 90) for i, p in enumerate([60, 64, 67, 72, 67, 64, 62, 65, 69])]
    render_midi_notes(notes, root / "piano.wav", 44100)  # stereo 44.1 kHz: the front end resamples/down-mixes
    return root
