"""Fixtures for the comparison tests: a rendered chromatic scale with its MIDI, a pure tone, one shared result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from testkit.audio import fluidsynth_available, render_midi_notes, sine_tone, write_midi_notes

#: Three chromatic octaves from C3, one note every 0.6 s (longer than the 500 ms analysis window).
SCALE_NOTES = [(48 + i, 0.1 + 0.6 * i, 0.5, 100) for i in range(36)]


@pytest.fixture(scope="session")
def chromatic_scale(tmp_path_factory) -> tuple[Path, Path]:
    """``(wav, reference.mid)`` of a piano chromatic scale rendered with fluidsynth."""
    if not fluidsynth_available():
        pytest.fail("fluidsynth and FluidR3_GM are needed (installed by scripts/setup.sh)")
    directory = tmp_path_factory.mktemp("compare_scale")
    wav = render_midi_notes(SCALE_NOTES, directory / "scale.wav")
    reference = write_midi_notes(SCALE_NOTES, directory / "reference.mid")
    return wav, reference


@pytest.fixture(scope="session")
def pure_tone(tmp_path_factory) -> Path:
    """3 s of a steady 440 Hz sine at 48 kHz."""
    path = tmp_path_factory.mktemp("compare_tone") / "tone.wav"
    sf.write(str(path), sine_tone(440.0, 3.0, 48000, amplitude=0.4), 48000, subtype="FLOAT")
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_wav2vec_dir):
    from services.encoder.wav2vec import Wav2VecMusicEncoder

    return Wav2VecMusicEncoder(str(tiny_wav2vec_dir))


@pytest.fixture(scope="session")
def scale_results(chromatic_scale, tiny_encoder):
    """One comparison of the scale against its reference with a 12-token vocabulary."""
    from services.compare.comparison import run_comparison

    wav, reference = chromatic_scale
    return run_comparison(wav, encoder=tiny_encoder, reference=reference, vocabulary_size=12, seed=0)


def silence_check(path: Path) -> float:
    """Standard deviation of a PNG's pixels (0 for a blank image)."""
    import matplotlib.image

    return float(np.asarray(matplotlib.image.imread(str(path)), dtype=float).std())
