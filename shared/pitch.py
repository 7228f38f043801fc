"""Pitch conversion, once: frequency (Hz) ↔ MIDI note number, equal temperament, A4 = 440 Hz = note 69.

:func:`hz_to_midi` is the scalar form (``math.log2``), :func:`hz_to_midi_array` the numpy form (arrays and numpy
scalars); :func:`midi_to_hz` takes either.

>>> hz_to_midi(440.0), hz_to_midi(261.6255653005986)
(69.0, 60.0)
>>> hz_to_midi_array([220.0, 880.0]).tolist()
[57.0, 81.0]
>>> midi_to_hz(81)
880.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["A4_HZ", "A4_MIDI", "hz_to_midi", "hz_to_midi_array", "midi_to_hz"]

A4_HZ = 440.0
A4_MIDI = 69.0


def hz_to_midi(hz: float) -> float:
    """The (fractional) MIDI note of a frequency > 0 (``69 + 12 log2(hz / 440)``)."""
    return A4_MIDI + 12.0 * math.log2(hz / A4_HZ)


def hz_to_midi_array(hz: Any) -> np.ndarray:
    """:func:`hz_to_midi` over an array (or a numpy scalar); zeros and negatives give -inf / nan as ``np.log2``."""
    return A4_MIDI + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / A4_HZ)


def midi_to_hz(pitch: Any) -> Any:
    """The frequency of a MIDI note (a number or an array): ``440 * 2 ** ((pitch - 69) / 12)``."""
    if isinstance(pitch, (list, tuple, np.ndarray)):
        return A4_HZ * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - A4_MIDI) / 12.0)
    return A4_HZ * 2.0 ** ((pitch - A4_MIDI) / 12.0)
