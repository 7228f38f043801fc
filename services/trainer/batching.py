"""Trainer units of parallel work: consecutive files grouped by events (:func:`file_groups`) and the mapper that runs
a function over groups (:func:`serial_map` in-process; Ray tasks in :mod:`services.trainer.distributed`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["GROUP_EVENTS", "GROUP_FILES", "Mapper", "serial_map", "file_groups"]

#: A unit of parallel sampling/tokenisation work: consecutive files up to this many events (or files).
GROUP_EVENTS = 50_000
GROUP_FILES = 64


Mapper = Callable[[Callable[..., Any], list[tuple]], list[Any]]


def serial_map(fn: Callable[..., Any], arguments: list[tuple]) -> list[Any]:
    """The in-process mapper: ``[fn(*args) for args in arguments]`` (Ray's runs them as tasks, same order)."""
    return [fn(*args) for args in arguments]


def file_groups(sizes: Sequence[int], *, max_events: int = GROUP_EVENTS, max_files: int = GROUP_FILES) -> list[range]:
    """Consecutive file ranges of at most ``max_events`` events (or ``max_files`` files): units of parallel work."""
    groups, begin, events = [], 0, 0
    for i, n in enumerate(sizes):
        if i > begin and (events + n > max_events or i - begin >= max_files):
            groups.append(range(begin, i))
            begin, events = i, 0
        events += n
    if begin < len(sizes):
        groups.append(range(begin, len(sizes)))
    return groups
