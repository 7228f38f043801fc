"""Feedback protection: an input gate over the times MusicHal's own notes sound.

The agent hears its own synth through the microphone. Every note it sends is registered with
:meth:`FeedbackGate.note_sent`; an input event whose onset falls inside ``[t_on - pre_ms, t_off + release_ms]``
of a registered note is *gated*: the oracle neither learns nor imitates it (it keeps playing). Times are
seconds on one clock (the stack uses ``time.monotonic`` on the driver node for both).

>>> gate = FeedbackGate(pre_ms=20, release_ms=250)
>>> gate.note_sent(10.0, 10.5)
>>> gate.blocks(10.6), gate.blocks(10.8), gate.blocks(9.0)
(True, False, False)
"""
from __future__ import annotations

from collections import deque

from shared.errors import ParameterError

__all__ = ["FeedbackGate"]


class FeedbackGate:
    """Remembers the last ``max_notes`` sent notes' sounding intervals and answers whether an onset is an echo.

    Parameters
    ----------
    pre_ms, release_ms : float
        The gate opens ``pre_ms`` before each note-on and closes ``release_ms`` after its note-off.
    enabled : bool
        When off, :meth:`blocks` is always False (notes are still registered, so switching on works at once).
    max_notes : int
        How many recent notes are kept.
    """

    def __init__(self, *, pre_ms: float = 20.0, release_ms: float = 250.0, enabled: bool = True,
                 max_notes: int = 4096) -> None:
        if pre_ms < 0 or release_ms < 0:
            raise ParameterError(f"pre_ms and release_ms must be >= 0, got {pre_ms}, {release_ms}")
        if max_notes < 1:
            raise ParameterError(f"max_notes must be >= 1, got {max_notes}")
        self.pre_s = pre_ms / 1000.0
        self.release_s = release_ms / 1000.0
        self.enabled = bool(enabled)
        self._intervals: deque[tuple[float, float]] = deque(maxlen=max_notes)
        self.counters = {"registered": 0, "checked": 0, "blocked": 0}

    def note_sent(self, t_on_s: float, t_off_s: float) -> None:
        """Register one note that will sound from ``t_on_s`` to ``t_off_s``."""
        if not t_off_s >= t_on_s:
            raise ParameterError(f"t_off_s must be >= t_on_s, got {t_on_s}..{t_off_s}")
        self._intervals.append((float(t_on_s) - self.pre_s, float(t_off_s) + self.release_s))
        self.counters["registered"] += 1

    def blocks(self, onset_s: float) -> bool:
        """True when the gate is on and ``onset_s`` falls while one of our notes (plus margins) sounds."""
        self.counters["checked"] += 1
        if not self.enabled:
            return False
        for start, end in reversed(self._intervals):
            if start <= onset_s <= end:
                self.counters["blocked"] += 1
                return True
        return False

    def clear(self) -> None:
        self._intervals.clear()
