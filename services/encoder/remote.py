"""Flow control for the hop to a remote encoder: pure logic, driven by the oracle actor (no Ray here).

Clock domains
-------------
Every time in this module is on the **caller's (head's) clock**: ``sent``, ``finished``, deadlines, probes.
The only figure that comes from the encoder's node is ``encode_s``, a *duration* it measured on its own clock
(never a timestamp): a round trip minus that duration is the transport time. Nothing here compares a head
timestamp with an encoder timestamp, so the two nodes' monotonic clocks may be unrelated (another machine,
another time namespace).

What it decides
---------------
* **In-flight bound**: a call counts as in flight from ``sent`` until its result (or its error) has come back —
  an expired, cancelled call still counts until Ray says it is over. ``can_send()`` is false at the cap, so
  ``calls sent - calls finished <= max_in_flight`` always.
* **Adaptive deadline**: ``deadline_s()`` is ``factor`` × the p90 of the recent round trips plus ``margin_s``,
  kept between ``floor_s`` and ``ceiling_s`` (``ceiling_s`` until ``min_samples`` round trips were measured).
* **Down / probe / resume**: the link goes *down* at once when a call fails because the encoder died, or after
  ``miss_limit`` deadline misses in a row. While down the caller answers every event locally at once (no
  waiting on a dead encoder) and sends nothing but a cheap probe every ``probe_interval_s``; the first answer
  (a probe reply or any late result) brings it back *up*.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from shared.errors import ParameterError

__all__ = ["PayloadCount", "RemoteEncoderLink"]


class RemoteEncoderLink:
    """State of the head's link to one remote encoder (see module docstring).

    Parameters
    ----------
    max_in_flight : int
        At most this many unfinished encode calls.
    floor_s, ceiling_s : float
        Bounds of the adaptive deadline.
    factor, margin_s : float
        Deadline = ``factor`` × p90 round trip + ``margin_s`` (then clamped).
    miss_limit : int
        Consecutive deadline misses that mark the encoder down.
    probe_interval_s : float
        While down, at most one probe per interval (and never two in flight).
    window : int
        Round trips kept for the p90.
    clock : callable
        Monotonic seconds on the caller's node.
    """

    def __init__(
        self,
        *,
        max_in_flight: int = 4,
        floor_s: float = 0.05,
        ceiling_s: float = 0.25,
        factor: float = 2.0,
        margin_s: float = 0.01,
        miss_limit: int = 1,
        probe_interval_s: float = 0.5,
        window: int = 64,
        min_samples: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ParameterError("max_in_flight must be >= 1")
        if not 0 < floor_s <= ceiling_s:
            raise ParameterError(f"need 0 < floor_s <= ceiling_s, got {floor_s} and {ceiling_s}")
        if factor < 1 or margin_s < 0 or miss_limit < 1 or probe_interval_s <= 0 or window < 1 or min_samples < 1:
            raise ParameterError(
                "factor >= 1, margin_s >= 0, miss_limit >= 1, probe_interval_s > 0, window/min_samples >= 1"
            )
        self.max_in_flight = int(max_in_flight)
        self.floor_s, self.ceiling_s = float(floor_s), float(ceiling_s)
        self.factor, self.margin_s = float(factor), float(margin_s)
        self.miss_limit = int(miss_limit)
        self.probe_interval_s = float(probe_interval_s)
        self.min_samples = int(min_samples)
        self.clock = clock
        self.up = True
        self.down_since: float | None = None
        self.in_flight: dict[Hashable, float] = {}
        self.round_trips: deque[float] = deque(maxlen=int(window))
        self.encode_times: deque[float] = deque(maxlen=int(window))
        self._misses = 0
        self._probe_sent: float | None = None
        self._probe_in_flight = False
        self.counters = {
            "sent": 0,
            "finished": 0,
            "failed": 0,
            "expired": 0,
            "refused_full": 0,
            "downs": 0,
            "ups": 0,
            "probes": 0,
            "probe_failures": 0,
        }

    # ------------------------------------------------------------------ sending
    def can_send(self) -> bool:
        """True when an encode call may go out now (link up and below the in-flight cap)."""
        if not self.up:
            return False
        if len(self.in_flight) >= self.max_in_flight:
            self.counters["refused_full"] += 1
            return False
        return True

    def sent(self, call: Hashable, now: float | None = None) -> None:
        if call in self.in_flight:
            raise ParameterError(f"call {call!r} is already in flight")
        if len(self.in_flight) >= self.max_in_flight:
            raise ParameterError("in-flight cap reached: ask can_send() first")
        self.in_flight[call] = self.clock() if now is None else float(now)
        self.counters["sent"] += 1

    @property
    def unfinished(self) -> int:
        return len(self.in_flight)

    # ------------------------------------------------------------------ outcomes
    def finished(
        self, call: Hashable, *, encode_s: float | None = None, in_time: bool = True, now: float | None = None
    ) -> float | None:
        """A call's result came back: returns its round trip (head clock), or None for an unknown call.

        ``in_time`` false (the event was already answered by the fallback) still proves the encoder alive.
        """
        sent_at = self.in_flight.pop(call, None)
        if sent_at is None:
            return None
        now = self.clock() if now is None else float(now)
        self.counters["finished"] += 1
        rtt = max(0.0, now - sent_at)
        self.round_trips.append(rtt)
        if encode_s is not None and encode_s >= 0:
            self.encode_times.append(float(encode_s))
        if in_time:
            self._misses = 0
        self._mark_up()
        return rtt

    def failed(self, call: Hashable, *, encoder_dead: bool = True, now: float | None = None) -> None:
        """A call ended with an error (actor died, node lost, cancelled). Dead → down at once."""
        if self.in_flight.pop(call, None) is None:
            return
        self.counters["failed"] += 1
        if encoder_dead:
            self._mark_down(now)

    def expired(self, now: float | None = None) -> None:
        """An event's deadline passed before its result: the caller answers it and cancels the call (which stays
        in flight until Ray reports it over). ``miss_limit`` misses in a row → down."""
        self.counters["expired"] += 1
        self._misses += 1
        if self._misses >= self.miss_limit:
            self._mark_down(now)

    def _mark_down(self, now: float | None) -> None:
        if self.up:
            self.up = False
            self.down_since = self.clock() if now is None else float(now)
            self._probe_sent = None
            self.counters["downs"] += 1

    def _mark_up(self) -> None:
        self._probe_in_flight = False
        if not self.up:
            self.up = True
            self.down_since = None
            self._misses = 0
            self.counters["ups"] += 1

    # ------------------------------------------------------------------ probing while down
    def should_probe(self, now: float | None = None) -> bool:
        """True when a probe should go out now (down, none in flight, interval passed)."""
        if self.up or self._probe_in_flight:
            return False
        now = self.clock() if now is None else float(now)
        return self._probe_sent is None or now - self._probe_sent >= self.probe_interval_s

    def probe_sent(self, now: float | None = None) -> None:
        self._probe_sent = self.clock() if now is None else float(now)
        self._probe_in_flight = True
        self.counters["probes"] += 1

    def probe_answered(self) -> None:
        self._mark_up()

    def probe_failed(self) -> None:
        self._probe_in_flight = False
        self.counters["probe_failures"] += 1

    # ------------------------------------------------------------------ deadline
    def deadline_s(self) -> float:
        """The time to wait for the next call's result (see module docstring)."""
        if len(self.round_trips) < self.min_samples:
            return self.ceiling_s
        p90 = float(np.percentile(np.fromiter(self.round_trips, dtype=np.float64), 90))
        return float(min(self.ceiling_s, max(self.floor_s, self.factor * p90 + self.margin_s)))

    def summary(self) -> dict[str, Any]:
        def ms(values: deque) -> dict[str, float]:
            if not values:
                return {}
            a = np.fromiter(values, dtype=np.float64) * 1000.0
            return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3)}

        return {
            "up": self.up,
            "unfinished": self.unfinished,
            "deadline_ms": round(self.deadline_s() * 1000.0, 2),
            "round_trip_ms": ms(self.round_trips),
            "encode_ms": ms(self.encode_times),
            **self.counters,
        }


class PayloadCount:
    """The windows and bytes the head has sent to its remote encoder, kept as one pair: one thread adds (the
    oracle's receive loop), any thread reads (``stats``) and always sees a pair from the same moment, so
    ``bytes_per_event`` is exact. Two counters updated and read one after the other could be read between a
    window's two increments (N windows, N + 1 windows' bytes)."""

    def __init__(self) -> None:
        self._state = (0, 0)  # replaced whole: a reader takes one reference, never half an update

    def add(self, nbytes: int) -> None:
        windows, total = self._state
        self._state = (windows + 1, total + int(nbytes))

    def summary(self) -> dict[str, Any]:
        windows, total = self._state
        return {
            "windows_sent": windows,
            "bytes_sent": total,
            "bytes_per_event": round(total / windows, 1) if windows else None,
        }
