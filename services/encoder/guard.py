"""The too-slow guard: notice when the encoder cannot keep up in real time, switch to the traditional view once.

Each encoded event is *overloaded* when its encode time exceeds its budget (the inter-onset interval to the
previous event, capped by the encoder deadline) or when it was already late (lag beyond the deadline). When
every one of the last ``window_events`` events was overloaded the guard says ``"degrade"`` (once, with one
warning); the caller then encodes with its traditional stage. It says ``"recover"`` only after
``recover_events`` events in a row whose budget would have fitted the slow encoder's typical time (the median
encode time of the window that tripped it) with a 25 % margin. Pure logic; :class:`GuardedEncoder` applies it.

Clock domains: ``encode_s`` is a duration on the encoder's clock, ``budget_s`` comes from the events' own sample
positions (no clock at all), and ``lag_s`` — how old the event already was — must be measured on the clock that
stamped the event: locally ``now - event.t_detected`` (one node, one clock); for a remote encoder the head passes
the event's age when it sent it (its own clock) as ``lag_s``, because the encoder's clock is unrelated to the head's.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.errors import ParameterError

__all__ = ["OverloadGuard", "GuardedEncoder"]

log = logging.getLogger("musichal.encoder.guard")


class OverloadGuard:
    """Sustained-overload detector with hysteresis (see module docstring)."""

    def __init__(self, *, window_events: int = 8, recover_events: int = 16, margin: float = 1.25) -> None:
        if window_events < 1 or recover_events < 1:
            raise ParameterError("window_events and recover_events must be >= 1")
        if margin < 1.0:
            raise ParameterError(f"margin must be >= 1, got {margin}")
        self.window_events = int(window_events)
        self.recover_events = int(recover_events)
        self.margin = float(margin)
        self.degraded = False
        self.slow_encode_s = 0.0
        self._recent: deque[tuple[bool, float]] = deque(maxlen=self.window_events)
        self._ok_run = 0
        self.counters = {"observed": 0, "overloaded": 0, "degrades": 0, "recovers": 0, "warnings": 0}
        #: the oldest an event already was when it was observed (seconds): plausible only when every lag was
        #: measured on the clock that stamped its event (another node's clock would make it ~ their offset)
        self.max_lag_s = 0.0

    def observe(
        self, *, encode_s: float, budget_s: float, lag_s: float = 0.0, deadline_s: float = float("inf")
    ) -> str | None:
        """Record one event; returns ``"degrade"``, ``"recover"`` or ``None``."""
        if encode_s < 0 or budget_s < 0:
            raise ParameterError("encode_s and budget_s must be >= 0")
        self.counters["observed"] += 1
        self.max_lag_s = max(self.max_lag_s, float(lag_s))
        budget = min(budget_s, deadline_s)
        if not self.degraded:
            overloaded = encode_s > budget or lag_s > deadline_s
            self.counters["overloaded"] += int(overloaded)
            self._recent.append((overloaded, encode_s))
            if len(self._recent) == self.window_events and all(flag for flag, _ in self._recent):
                self.degraded = True
                self.slow_encode_s = float(np.median([t for _, t in self._recent]))
                self.counters["degrades"] += 1
                self._ok_run = 0
                return "degrade"
            return None
        fits = budget >= self.slow_encode_s * self.margin and lag_s <= deadline_s
        self._ok_run = self._ok_run + 1 if fits else 0
        if self._ok_run >= self.recover_events:
            self.degraded = False
            self._recent.clear()
            self._ok_run = 0
            self.counters["recovers"] += 1
            return "recover"
        return None


class GuardedEncoder:
    """Encode with ``primary`` until the guard trips, then with ``fallback`` (the traditional view) until it recovers.

    Parameters
    ----------
    primary, fallback : objects with ``process((event, window)) -> Percept``
        ``fallback`` may be None (the guard then only reports).
    guard : OverloadGuard
    deadline_s : float
        The encoder deadline (``cluster.encoder_deadline_ms``).
    delay_s : float
        Test-only extra time per primary encode (``control.test_encoder_delay_ms``).
    clock : callable
        Monotonic seconds.
    warn : callable
        Called with one line, once per degrade (default: ``logging.warning``).
    """

    def __init__(
        self,
        primary: Any,
        fallback: Any,
        guard: OverloadGuard,
        *,
        deadline_s: float,
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if deadline_s <= 0 or delay_s < 0:
            raise ParameterError("deadline_s must be > 0 and delay_s >= 0")
        self.primary, self.fallback, self.guard = primary, fallback, guard
        self.deadline_s, self.delay_s, self.clock = float(deadline_s), float(delay_s), clock
        self.warn = warn or log.warning
        self.warnings: list[str] = []
        self._previous_onset_s: float | None = None
        self.counters = {"primary": 0, "fallback": 0}

    @property
    def using_fallback(self) -> bool:
        return self.guard.degraded and self.fallback is not None

    def process(
        self, item: tuple[Any, np.ndarray], *, lag_s: float | None = None, window_rate_hz: int | None = None
    ) -> Any:
        """Encode one ``(event, window)``. ``lag_s``: the event's age measured on the clock that stamped it (the
        head's, for a remote encoder); None = same node, computed here from ``event.t_detected``."""
        event, _ = item
        t0 = self.clock()
        if lag_s is None:
            lag_s = event.age_s(t0)
        extra = {} if window_rate_hz is None else {"window_rate_hz": window_rate_hz}
        if self.using_fallback:
            percept = self.fallback.process(item, **extra)
            self.counters["fallback"] += 1
        else:
            if self.delay_s:
                time.sleep(self.delay_s)  # test-only: an encoder that is too slow
            percept = self.primary.process(item, **extra)
            self.counters["primary"] += 1
        encode_s = self.clock() - t0
        onset_s = event.onset_s
        budget_s = self.deadline_s if self._previous_onset_s is None else max(0.0, onset_s - self._previous_onset_s)
        self._previous_onset_s = onset_s
        verdict = self.guard.observe(encode_s=encode_s, budget_s=budget_s, lag_s=lag_s, deadline_s=self.deadline_s)
        if verdict == "degrade":
            line = (
                f"encoder too slow: {self.guard.slow_encode_s * 1000:.0f} ms per event over the last "
                f"{self.guard.window_events} events, more than the time between onsets; "
                + (
                    "switching to the traditional view"
                    if self.fallback is not None
                    else "no traditional view to switch to"
                )
            )
            if not self.warnings:
                self.guard.counters["warnings"] += 1
                self.warn(line)
            self.warnings.append(line)
        elif verdict == "recover":
            log.info("encoder keeps up again; back to the primary view")
        return percept
