"""Capture test fixtures: the encoder tests' fluidsynth renders (the same fixture functions)."""

from __future__ import annotations

from tests.encoder.conftest import render_cache, scale_wav  # noqa: F401  (pytest fixtures)
