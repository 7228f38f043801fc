"""The live feed: fills a :class:`~services.console.state.ConsoleState` from a running :class:`LiveStack`, on its own
threads in the driver's process.

It reads the stack's message rings as one more reader (heard events, their percepts, the notes decided — a reader
has its own cursor; the writers neither wait for it nor see it), asks the oracle actor for its
``console_view`` at most ``view_hz`` times a second (one call in flight, never waited for on the feed's thread), and
takes the stack's stats once a second (the status line's, when the command line fetched them recently). So the
console adds no hop to the path from an onset to a note and never holds the decision loop longer than the view's
copy (the oracle's lock).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from services.console.state import ConsoleState
from services.oracle.player.live import onset_time
from shared.errors import MusicHalError
from shared.messages import Event, NoteEvent, Percept, message_from_bytes
from shared.signals import library_threads_without_signals

__all__ = ["LiveFeed"]


class LiveFeed:
    """Feeds ``state`` from ``stack`` until :meth:`close`.

    Parameters
    ----------
    stack : services.stack.LiveStack
        A started stack (its rings, actors and control hub).
    state : ConsoleState
    rate_hz : float
        How often the rings are read and the hub's snapshot taken.
    view_hz : float
        How often the oracle's view is asked for.
    stats_s : float
        How old the stack's stats may get before the feed asks for new ones.
    """

    def __init__(
        self, stack: Any, state: ConsoleState, *, rate_hz: float = 20.0, view_hz: float = 5.0, stats_s: float = 1.0
    ) -> None:
        if not stack.rings:
            raise MusicHalError("the console's feed needs a started stack")
        self.stack, self.state = stack, state
        self.period_s, self.view_period_s, self.stats_s = 1.0 / rate_hz, 1.0 / view_hz, float(stats_s)
        self.readers = {name: stack.rings[name].reader() for name in ("events", "percepts", "notes")}
        self._view_ref: Any = None
        self._view_asked = 0.0
        self._stop = threading.Event()
        self.error: str | None = None
        self._threads = [
            threading.Thread(target=self._loop, name="musichal-console-feed", daemon=True),
            threading.Thread(target=self._stats_loop, name="musichal-console-stats", daemon=True),
        ]
        with library_threads_without_signals():  # Ctrl-C and SIGTERM stay the main thread's
            for thread in self._threads:
                thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except Exception as error:  # shown, never raised into the stack
                self.state.counters["feed_errors"] += 1
                self.error = f"{type(error).__name__}: {error}"
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def poll(self) -> None:
        """Read what is new on the rings, collect the oracle's view when it has answered, copy the controls."""
        state = self.state
        for payload in self.readers["events"].drain():
            event = message_from_bytes(payload)
            if isinstance(event, Event) and not event.early:
                state.add_event(event.event_id, onset_time(event) if event.t_detected else time.monotonic())
        for payload in self.readers["percepts"].drain():
            percept = message_from_bytes(payload)
            if isinstance(percept, Percept):
                state.add_percept(percept.event_id, percept.descriptors)
        for payload in self.readers["notes"].drain():
            note = message_from_bytes(payload)
            if isinstance(note, NoteEvent):
                state.add_note(note)
        self._poll_view()
        control = self.stack.control
        if control is not None:
            state.set_controls(control.snapshot())

    def _poll_view(self) -> None:
        import ray

        oracle = self.stack.actors.get("oracle")
        now = time.monotonic()
        if self._view_ref is not None:
            ready, _ = ray.wait([self._view_ref], timeout=0)
            if not ready:
                if now - self._view_asked < 5.0:
                    return
                self._view_ref = None  # an oracle restarting: ask again
            else:
                ref, self._view_ref = self._view_ref, None
                try:
                    self.state.set_player(ray.get(ref), self._view_asked)
                except Exception as error:
                    self.error = f"oracle view: {type(error).__name__}"
        if oracle is not None and self._view_ref is None and now - self._view_asked >= self.view_period_s:
            self._view_asked = now
            self._view_ref = oracle.console_view.remote()

    def _stats_loop(self) -> None:
        while not self._stop.wait(min(0.25, self.stats_s)):
            at = getattr(self.stack, "last_stats_at", None)
            try:
                if at is None or time.monotonic() - at > self.stats_s * 1.5:
                    self.stack.stats(timeout_s=0.5)  # stores them as last_stats
                stats = getattr(self.stack, "last_stats", None)
                if stats is not None:
                    self.state.set_stats(stats, self.stack.last_stats_at)
            except Exception as error:
                self.error = f"stats: {type(error).__name__}"

    def close(self) -> None:
        """Stop both threads (before the stack closes its rings)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=3.0)
