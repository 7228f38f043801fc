"""The control hub: one place where OSC, MIDI and API changes meet, are validated and are applied.

:class:`ControlHub` owns a :class:`ControlState`; :meth:`ControlHub.handle` applies a change and calls
``apply(name, value)`` for each *effective* change (``learn``/``freeze`` become one ``learning`` flag; commands
pass through). The live stack (services/stack.py) passes an ``apply`` that makes the table's calls
(:func:`shared.controls.calls`). Thread-safe: the OSC server's threads and the MIDI callback may call it at once.
Errors in a message are counted and kept with their reason (the state's ``refusals``, in :meth:`ControlHub.snapshot`),
never raised into a server.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from services.control.state import ControlChange, ControlState, midi_to_change, osc_to_change
from shared.config import MusicHalConfig
from shared.errors import MusicHalError, ParameterError

__all__ = ["ControlHub"]


class ControlHub:
    """Validated control changes → ``apply(name, value)`` calls, with a history and error counters.

    Parameters
    ----------
    config : MusicHalConfig
        Initial state and the MIDI map overrides (``[control]``).
    apply : callable, optional
        ``apply(name, value)`` for each effective change: a control of the table (``learn``/``freeze`` arrive as
        ``learning``).
    """

    HISTORY = 1000  # changes kept in :attr:`history` (an automated controller sends many per second for hours)

    def __init__(self, config: MusicHalConfig, apply: Callable[[str, Any], Any] | None = None) -> None:
        self.config = config
        self.state = ControlState(config)
        self.apply = apply or (lambda name, value: None)
        self.history: deque[dict[str, Any]] = deque(maxlen=self.HISTORY)  # the last changes (fixed memory)
        self.changes = 0
        self.errors = 0
        self.last_error: str | None = None
        self.ignored = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)

    def handle(self, change: ControlChange) -> dict[str, Any]:
        """Apply one change; returns the effective changes (``{}`` when nothing changed). A refused change raises
        ParameterError and is kept in the state's refusals."""
        with self._lock:
            learning_before = self.state.learning
            try:
                changed = self.state.apply(change)
            except ParameterError as error:
                self.state.refuse(change.name, change.value, change.source, str(error))
                self._changed.notify_all()
                raise
            effective: dict[str, Any] = {}
            for name, value in changed.items():
                if name in ("learn", "freeze"):
                    if self.state.learning != learning_before:
                        effective["learning"] = self.state.learning
                else:
                    effective[name] = value
            for name, value in effective.items():
                self.apply(name, value)
            self.history.append(
                {
                    "t": time.monotonic(),
                    "name": change.name,
                    "value": change.value,
                    "source": change.source,
                    "effective": effective,
                }
            )
            self.changes += 1
            self._changed.notify_all()
            return effective

    def _guarded(self, make: Callable[[], ControlChange | None], what: str, value: Any, source: str) -> dict[str, Any]:
        change = None
        try:
            change = make()
            if change is None:
                with self._lock:
                    self.ignored += 1
                return {}
            return self.handle(change)
        except (MusicHalError, ValueError, TypeError) as error:
            with self._lock:
                self.errors += 1
                self.last_error = f"{type(error).__name__}: {error}"
                if change is None or not isinstance(error, ParameterError):  # else handle() kept it
                    self.state.refuse(what, value, source, str(error))
                self._changed.notify_all()
            return {}

    def handle_named(self, name: Any, value: Any, source: str) -> dict[str, Any]:
        """One change by control name (the console, an HTTP client): like :meth:`handle`, but an unknown name is
        refused too — counted in :attr:`errors` and kept in the refusals — and the ParameterError is raised with
        its one-line reason for the caller to answer."""
        try:
            change = ControlChange(name, value, source=source) if isinstance(name, str) else None
            if change is None:
                raise ParameterError(f"a control name is text, got {name!r}")
        except ParameterError as error:
            with self._lock:
                self.errors += 1
                self.last_error = f"ParameterError: {error}"
                self.state.refuse(str(name), value, source, str(error))
                self._changed.notify_all()
            raise
        try:
            return self.handle(change)
        except ParameterError as error:
            with self._lock:
                self.errors += 1
                self.last_error = f"ParameterError: {error}"
            raise

    def handle_osc(self, address: str, *args: Any) -> dict[str, Any]:
        """One OSC message (bad ones are counted in :attr:`errors` and kept in the refusals)."""
        return self._guarded(lambda: osc_to_change(address, args), address, list(args), "osc")

    def handle_midi(self, message: list[int]) -> dict[str, Any]:
        """One raw MIDI message from the controller input (unmapped ones are counted in :attr:`ignored`)."""
        control = self.config.control
        return self._guarded(
            lambda: midi_to_change(
                message, cc_map=control.cc_map, note_map=control.note_map, channel=control.midi_in_channel
            ),
            "midi",
            list(message),
            "midi",
        )

    def wait_for(self, predicate: Callable[[ControlHub], bool], timeout_s: float) -> bool:
        """Block until ``predicate(hub)`` holds after some change (tests), or the timeout."""
        if timeout_s < 0:
            raise ParameterError("timeout_s must be >= 0")
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout_s)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.state.as_dict(),
                "changes": self.changes,
                "errors": self.errors,
                "summary": self.state.summary(),
            }
