"""The trainer's work scheduler, pure logic (no Ray): bounded units in flight, per-unit deadlines, retries.

:func:`run_units` keeps at most ``slots`` units running, waits for the next to finish but never past the
earliest deadline, and treats a unit that runs past ``timeout_s`` (a hung decoder, a stalled disk) or whose
worker was lost (:class:`Retry` raised by ``result``: a dead actor, a lost node) as a failed attempt: it is
restarted (``restart`` cancels and resubmits) up to ``max_attempts`` times, then the run fails naming the unit.
Results are handed to ``on_result`` as they finish; callers restore corpus order themselves. The clock is
injected so the timing logic is tested with a fake clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from shared.errors import ParameterError

__all__ = ["Retry", "run_units"]


class Retry(Exception):
    """Raised by ``result`` when a unit's worker was lost (the unit is run again)."""


def run_units(
    units: Sequence[Any],
    *,
    slots: int | Mapping[str, int],
    submit: Callable[[Any], Hashable],
    ready: Callable[[list[Hashable], float], list[Hashable]],
    result: Callable[[Hashable], Any],
    restart: Callable[[Hashable, Any], Hashable],
    on_result: Callable[[int, Any], Sequence[Any] | None],
    clock: Callable[[], float],
    timeout_s: float,
    max_attempts: int,
    describe: Callable[[Any], str] = str,
    pool: Callable[[Any], str] = lambda unit: "",
    total: int | None = None,
) -> dict[str, int]:
    """Run every unit to completion; returns counters ``{"timeouts", "lost", "attempts"}``.

    ``submit(unit)`` → handle; ``ready(handles, wait_s)`` → the handles finished within ``wait_s``;
    ``result(handle)`` → the unit's value (raises :class:`Retry` when its worker was lost);
    ``restart(handle, unit)`` → a handle for the unit's next attempt (a new one, or the same one when the
    runtime reruns it itself). ``on_result(index, value)`` may return new units (a next stage), which run too.
    ``slots`` bounds the units in flight: one number, or one per ``pool(unit)`` name (stages that use
    different workers, e.g. CPU tasks and encoder actors, each with its own bound); ``total`` bounds the units
    in flight over all pools together (stages that share the same CPUs: N workers = N busy cores). Follow-up
    units run before queued first-stage units, so the work handed from one stage to the next stays bounded.

    Raises
    ------
    ParameterError
        A unit failed ``max_attempts`` times (timed out or lost its worker each time).
    """
    limits = dict(slots) if isinstance(slots, Mapping) else {"": int(slots)}
    total = sum(limits.values()) if total is None else int(total)
    if any(n < 1 for n in limits.values()) or total < 1 or max_attempts < 1 or not timeout_s > 0:
        raise ParameterError("slots and max_attempts must be >= 1 and timeout_s > 0")
    units = units if isinstance(units, list) else list(units)  # new units are appended to the caller's list
    queue = deque(range(len(units)))
    running: dict[Hashable, list[Any]] = {}  # handle -> [unit index, deadline, attempts, pool]
    busy = {name: 0 for name in limits}
    counters = {"timeouts": 0, "lost": 0, "attempts": 0}

    def retry(handle: Hashable, why: str) -> None:
        index, _, attempts, name = running.pop(handle)
        if attempts >= max_attempts:
            raise ParameterError(
                f"{describe(units[index])}: {why} {attempts} time(s); giving up (trainer.max_attempts = {max_attempts})"
            )
        new = restart(handle, units[index])
        counters["attempts"] += 1
        running[new] = [index, clock() + timeout_s, attempts + 1, name]

    while queue or running:
        for index in list(queue):
            if len(running) >= total:
                break
            name = pool(units[index])
            if busy[name] < limits[name]:
                queue.remove(index)
                busy[name] += 1
                counters["attempts"] += 1
                running[submit(units[index])] = [index, clock() + timeout_s, 1, name]
        if not running:
            raise ParameterError("no worker pool can take the queued work")
        wait_s = max(0.0, min(entry[1] for entry in running.values()) - clock())
        for handle in ready(list(running), wait_s):
            index = running[handle][0]
            try:
                value = result(handle)
            except Retry:
                counters["lost"] += 1
                retry(handle, "lost its worker")
                continue
            busy[running.pop(handle)[3]] -= 1
            follow = list(on_result(index, value) or ())
            first = len(units)
            units.extend(follow)
            queue.extendleft(reversed(range(first, len(units))))  # ahead of the queue, in their own order
        now = clock()
        for handle in [h for h, entry in running.items() if entry[1] <= now]:
            counters["timeouts"] += 1
            retry(handle, f"ran past trainer.task_timeout_s ({timeout_s:g} s)")
    return counters
