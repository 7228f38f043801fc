"""NoteScheduler: plays NoteEvents at their absolute monotonic times on a dedicated thread.

The thread keeps a heap of ``(due_time, seq, action, note)`` and waits on a ``threading.Condition`` with a
timeout equal to the time left to the next due event (no fixed-interval polling; callers never sleep).
``schedule`` wakes it when a new event becomes the earliest. Events already due go out at once, in due-time
order; an event sent more than ``late_tolerance_ms`` after its due time is counted as late.
Note-ons are also counted by kind (:func:`note_kind`): ``clocked_*`` for steps on the player's own clock (decided
``generation.lookahead_ms`` ahead: they should arrive before they are due) and ``reaction_*`` for the notes of a
reaction to an onset (stamped ``reaction``, due at once: late on arrival by design, their measure is onset → note):
``<kind>_notes``, ``<kind>_late_on_arrival`` (received after its ``t_on``) and ``<kind>_late`` (sent late).
The scheduling error ``actual − due`` is measured just before each event's note message is sent and kept in a
:class:`~shared.stats.LogHistogram` (the run's percentiles within 0.5 %, in constant memory however long the set).

A note's expression automation (``NoteEvent.bend_curve`` / ``pressure_curve``, offsets after ``t_on``) goes through
the same heap when the stage has ``automate(note_id, kind, value)``: each point is due at ``t_on + offset`` and only
points before ``t_off`` are queued, so none is ever sent after the note's note-off; the stage drops a point whose
note no longer sounds (stolen, panicked, muted) and sends them only in the MPE profile. :func:`note_actions` is
the one expansion of a note into timed actions (the session replay's renderer uses it too).

``stop()`` drops pending events and panics the stage (note-offs for everything sounding + CC123/CC120).

With ``realtime_priority`` > 0 the thread asks for ``SCHED_FIFO`` at that priority where the system allows it (Linux:
root, ``CAP_SYS_NICE`` or an ``rtprio`` limit, as for JACK's own threads); elsewhere it keeps the normal policy and
:attr:`NoteScheduler.realtime` says so. A real-time thread wakes at its due time even while every core is busy with
the encoder or the oracle (a normal one waits for a time slice); it only sleeps on its condition or sends, never
spins, so it cannot starve the machine.

>>> from services.midi_out.engine import ListSink, MidiOutStage
>>> from shared.config import MidiConfig
>>> from shared.messages import NoteEvent
>>> stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=4), ListSink())
>>> stage.start()
>>> with NoteScheduler(stage) as scheduler:
...     scheduler.schedule(NoteEvent(note_id=1, pitch=60, velocity=90, t_on=0.0, t_off=0.0))  # long past due
...     scheduler.wait_idle(timeout_s=5.0)
True
>>> scheduler.stats()["late"]
2
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.errors import ParameterError
from shared.messages import NoteEvent
from shared.stats import LogHistogram

__all__ = [
    "NoteScheduler",
    "raise_thread_priority",
    "NOTE_ON",
    "NOTE_OFF",
    "BEND",
    "PRESSURE",
    "NOTE_KINDS",
    "note_actions",
    "note_kind",
]

NOTE_ON = "on"
NOTE_OFF = "off"
BEND = "bend"
PRESSURE = "pressure"
NOTE_KINDS = ("clocked", "reaction")


def raise_thread_priority(priority: int) -> bool:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority``; True if the system allowed it, else False and
    the thread is unchanged (0, no ``sched_setscheduler`` on this platform, or not permitted)."""
    import os

    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))  # 0: the calling thread (Linux)
    except (OSError, ValueError):
        return False
    return True


def note_kind(note: NoteEvent) -> str:
    """``"reaction"`` for a note the player stamped as a reaction to an onset, else ``"clocked"``."""
    return "reaction" if (note.stamps or {}).get("reaction") else "clocked"


def note_actions(note: NoteEvent, *, automation: bool = True) -> list[tuple[float, str, Any]]:
    """``(due, action, value)`` for ``note``: its note-on, its automation points before ``t_off`` (time order
    within each curve), then its note-off. Ties at one due time keep this order.

    >>> n = NoteEvent(note_id=1, pitch=60, velocity=90, t_on=1.0, t_off=1.1, bend_curve=((0.05, 0.5), (0.1, 1.0)))
    >>> note_actions(n)
    [(1.0, 'on', None), (1.05, 'bend', 0.5), (1.1, 'off', None)]
    """
    out: list[tuple[float, str, Any]] = [(note.t_on, NOTE_ON, None)]
    if automation:
        for action, curve in ((BEND, note.bend_curve), (PRESSURE, note.pressure_curve)):
            for offset, value in curve:
                due = note.t_on + offset
                if due < note.t_off:
                    out.append((due, action, value))
    out.append((note.t_off, NOTE_OFF, None))
    return out


class NoteScheduler:
    """Dedicated thread that sends note-ons at ``t_on`` and note-offs at ``t_off`` through ``stage``.

    Parameters
    ----------
    stage : MidiOutStage-like
        Object with ``note_on(NoteEvent)``, ``note_off(note_id)`` and ``panic()``.
    clock : callable
        Monotonic clock the note times refer to (``time.monotonic``).
    late_tolerance_ms : float
        An event sent later than this after its due time counts as late.
    realtime_priority : int
        ``SCHED_FIFO`` priority for the thread (1..99; 0 keeps the normal policy), where allowed.
    """

    def __init__(
        self,
        stage: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        late_tolerance_ms: float = 1.0,
        realtime_priority: int = 0,
    ) -> None:
        for name in ("note_on", "note_off", "panic"):
            if not callable(getattr(stage, name, None)):
                raise ParameterError(f"stage must have a {name}() method")
        if late_tolerance_ms < 0:
            raise ParameterError(f"late_tolerance_ms must be >= 0, got {late_tolerance_ms}")
        if not 0 <= realtime_priority <= 99:
            raise ParameterError(f"realtime_priority must be in 0..99, got {realtime_priority}")
        self.stage = stage
        self.clock = clock
        self.realtime_priority = int(realtime_priority)
        self.realtime = False  # the thread runs SCHED_FIFO (set by the thread itself once it starts)
        self._policy_set = threading.Event()
        self.late_tolerance_s = late_tolerance_ms / 1000.0
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, str, NoteEvent, Any]] = []
        self._seq = 0
        self._running = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._errors_s = LogHistogram()  # actual - due of every event sent (seconds, either sign)
        self.sent_log: list[tuple[float, float, str, int]] | None = None  # (due, actual, action, note_id) if enabled
        self.counters: dict[str, int] = {
            "scheduled": 0,
            "sent": 0,
            "late": 0,
            "late_on_arrival": 0,
            "dropped_on_stop": 0,
            "errors": 0,
            "automation_sent": 0,
            "automation_dropped": 0,
        }
        for kind in NOTE_KINDS:
            self.counters.update({f"{kind}_notes": 0, f"{kind}_late_on_arrival": 0, f"{kind}_late": 0})
        self._automates = callable(getattr(stage, "automate", None))
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> NoteScheduler:
        with self._condition:
            if self._running:
                return self
            self._running = True
            self._thread = threading.Thread(target=self._run, name="musichal-midi-scheduler", daemon=True)
            self._thread.start()
        return self

    def stop(self, *, panic: bool = True) -> None:
        """Stop the thread, drop pending events (counted) and panic the stage. Idempotent."""
        with self._condition:
            thread = self._thread
            self._running = False
            self.counters["dropped_on_stop"] += len(self._heap)
            self._heap.clear()
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._thread = None
        if panic:
            self.stage.panic()

    def __enter__(self) -> NoteScheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------------------------------- input
    def schedule(self, note: NoteEvent) -> None:
        """Queue ``note``'s note-on at ``t_on`` and note-off at ``t_off`` (absolute ``clock`` seconds)."""
        if not isinstance(note, NoteEvent):
            raise ParameterError(f"schedule takes a NoteEvent, got {type(note).__name__}")
        with self._condition:
            if not self._running:
                raise ParameterError("NoteScheduler is not running (call start())")
            now = self.clock()
            earliest = self._heap[0][0] if self._heap else None
            for due, action, value in note_actions(note, automation=self._automates):
                heapq.heappush(self._heap, (due, self._seq, action, note, value))
                self._seq += 1
                if due < now and action in (NOTE_ON, NOTE_OFF):
                    self.counters["late_on_arrival"] += 1
            self.counters["scheduled"] += 1
            kind = note_kind(note)
            self.counters[f"{kind}_notes"] += 1
            if note.t_on < now:
                self.counters[f"{kind}_late_on_arrival"] += 1
            if earliest is None or note.t_on < earliest:
                self._condition.notify_all()  # the scheduler thread re-computes its timeout

    def pending(self) -> int:
        with self._condition:
            return len(self._heap)

    def wait_idle(self, *, timeout_s: float) -> bool:
        """Block until every queued event was sent (True) or ``timeout_s`` passed (False). For tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._heap or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(timeout=left)
            return True

    # ------------------------------------------------------------------------------------------- thread
    def wait_started(self, timeout_s: float = 5.0) -> bool:
        """Wait until the thread has chosen its scheduling policy (:attr:`realtime` is final then)."""
        return self._policy_set.wait(timeout_s)

    def _run(self) -> None:
        self.realtime = raise_thread_priority(self.realtime_priority)
        self._policy_set.set()
        condition = self._condition
        while True:
            with condition:
                while self._running:
                    if not self._heap:
                        condition.notify_all()  # wake wait_idle()
                        condition.wait()
                        continue
                    left = self._heap[0][0] - self.clock()
                    if left <= 0:
                        break
                    condition.wait(timeout=left)
                if not self._running:
                    condition.notify_all()
                    return
                due, _, action, note, value = heapq.heappop(self._heap)
                self._busy = True
            try:
                self._fire(due, action, note, value)
            finally:
                with condition:
                    self._busy = False

    def _fire(self, due: float, action: str, note: NoteEvent, value: Any = None) -> None:
        actual = self.clock()
        try:
            if action in (BEND, PRESSURE):
                sent = self.stage.automate(note.note_id, action, value)
                self.counters["automation_sent" if sent else "automation_dropped"] += 1
                return
            if action == NOTE_ON:
                self.stage.note_on(note)
            else:
                self.stage.note_off(note.note_id)
        except Exception as error:  # a bad note must not kill the thread; counted and kept for the actor
            self.counters["errors"] += 1
            self.last_error = error
            return
        error_s = actual - due
        self._errors_s.add(error_s)
        self.counters["sent"] += 1
        if error_s > self.late_tolerance_s:
            self.counters["late"] += 1
            if action == NOTE_ON:
                self.counters[f"{note_kind(note)}_late"] += 1
        if self.sent_log is not None:
            self.sent_log.append((due, actual, action, note.note_id))

    # ------------------------------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        errors = self._errors_s
        out: dict[str, Any] = dict(self.counters, pending=self.pending())
        out["realtime"] = self.realtime
        if errors.count:
            p50, p95, p99 = errors.percentiles([50, 95, 99])
            out["error_ms"] = {"p50": p50 * 1e3, "p95": p95 * 1e3, "p99": p99 * 1e3, "max": errors.max * 1e3}
        return out
