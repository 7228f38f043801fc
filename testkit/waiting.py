"""Bounded waits on the state of other processes (Ray actors, JACK, subprocesses) for the integration tests.

Polling here waits for an external condition with a deadline; it is never used to order threads of the test itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

__all__ = ["wait_until", "stage_counter", "actor_call", "actor_pid", "restarted_pid"]


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


def actor_call(actor, fn, timeout_s: float = 120.0):
    """``fn(actor_instance)`` on the actor, retried while Ray reports the actor as restarting."""
    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(actor.__ray_call__.remote(fn), timeout=max(1.0, deadline - time.monotonic()))
        except (ActorUnavailableError, RayActorError, GetTimeoutError):
            if time.monotonic() >= deadline:
                raise
            threading.Event().wait(0.1)


def actor_pid(actor, timeout_s: float = 120.0) -> int:
    return int(actor_call(actor, lambda self: os.getpid(), timeout_s))


def restarted_pid(actor, before: int, timeout_s: float = 120.0) -> int:
    """The actor's pid once it runs in a new process (a kill is asynchronous: calls may still reach the old one)."""
    deadline = time.monotonic() + timeout_s
    pid = actor_pid(actor, timeout_s)
    while pid == before and time.monotonic() < deadline:
        threading.Event().wait(0.1)
        pid = actor_pid(actor, max(1.0, deadline - time.monotonic()))
    return pid
