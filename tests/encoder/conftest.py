"""Encoder test fixtures: fluidsynth renders cached once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.audio import fluidsynth_available, render_midi_notes

SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory):
    """``render(name, notes, sample_rate_hz=48000) -> Path``, rendering each name once per session."""
    if not fluidsynth_available():
        pytest.fail("fluidsynth and FluidR3_GM.sf2 are required (run `make test` to install them)")
    directory = tmp_path_factory.mktemp("renders")
    cache: dict[str, Path] = {}

    def render(name: str, notes, sample_rate_hz: int = 48000) -> Path:
        if name not in cache:
            cache[name] = render_midi_notes(notes, directory / f"{name}.wav", sample_rate_hz)
        return cache[name]

    return render


@pytest.fixture(scope="session")
def scale_wav(render_cache) -> Path:
    """An 8-note C-major piano scale, one note every 0.5 s starting at 0.3 s."""
    return render_cache("scale", [(pitch, 0.3 + 0.5 * i, 0.45, 90) for i, pitch in enumerate(SCALE)])
