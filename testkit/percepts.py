"""Percepts built by hand for the decision path's tests: one pitched event, as the encoder would describe it."""

from __future__ import annotations

import numpy as np

from shared.messages import EventDescriptors, Percept
from shared.pitch import midi_to_hz

__all__ = ["pitched_percept"]


def pitched_percept(
    i: int,
    pitch: int,
    onset_s: float,
    *,
    duration_s: float = 0.5,
    dim: int = 8,
    velocity: int = 70,
    expression_frames: int = 0,
    chroma_peaks: tuple[int, ...] | None = None,
) -> Percept:
    """Event ``i``: MIDI ``pitch`` at ``onset_s`` (features seeded by the pitch, f0 at the pitch, confidence 0.9);
    its chroma peaks are the pitch's class unless ``chroma_peaks`` says, its token the strongest peak; with
    ``expression_frames`` also a flat pressure curve at ``velocity`` and 0-cent f0."""
    rng = np.random.default_rng(pitch)
    peaks = (pitch % 12,) if chroma_peaks is None else tuple(chroma_peaks)
    expression = (
        {"pressure": (velocity,) * expression_frames, "f0_cents": (0.0,) * expression_frames}
        if expression_frames
        else {}
    )
    return Percept(
        event_id=i,
        token=peaks[0],
        features=(rng.normal(size=dim) + pitch / 10).astype(np.float32),
        descriptors=EventDescriptors(
            onset_s=onset_s,
            duration_s=duration_s,
            rms=0.1,
            velocity=velocity,
            f0_hz=midi_to_hz(pitch),
            f0_confidence=0.9,
            chroma_peaks=peaks,
            **expression,
        ),
    )
