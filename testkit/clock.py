"""A hand-moved clock for tests: timings without sleeping and without the machine's load in them."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """``clock()`` returns :attr:`t` (seconds); a test sets ``clock.t`` or calls :meth:`advance`.

    >>> clock = FakeClock(100.0)
    >>> clock.advance(0.25)
    >>> clock()
    100.25
    """

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += float(seconds)
