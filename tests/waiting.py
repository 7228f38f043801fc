"""Bounded waits on the state of other processes (Ray actors, JACK, subprocesses) for the integration tests.

Polling here waits for an external condition with a deadline; it is never used to order threads of the test itself.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["wait_until", "stage_counter"]


def wait_until(predicate: Callable[[], object], timeout_s: float, poll_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; returns its last truth value."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(poll_s)
    return bool(predicate())


def stage_counter(stats: dict, stage: str, key: str) -> int:
    """A counter from ``LiveStack.stats()`` (0 when the actor did not answer or has no such counter)."""
    value = stats.get(stage, {}).get("counters", {}).get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0
