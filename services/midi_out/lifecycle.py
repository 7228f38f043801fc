"""Panic on every exit path: normal exit (atexit), SIGINT and SIGTERM.

``install_exit_panic(stage.close)`` registers an idempotent closer (``MidiOutStage.close`` panics: note-offs
for everything sounding + CC123/CC120 on all channels) to run at interpreter exit and on SIGINT/SIGTERM; the
previous signal handler runs afterwards (SIGINT still raises KeyboardInterrupt, a default SIGTERM still
terminates the process with the signal's status). Ray actors call ``stage.close()`` from their shutdown hook.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable, Iterable

from shared.errors import ParameterError

__all__ = ["install_exit_panic"]


def install_exit_panic(
    close: Callable[[], None], *, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
) -> Callable[[], None]:
    """Run ``close`` (idempotent) at exit and on ``signals``; returns a function that uninstalls it all.

    Signal handlers can only be installed from the main thread; elsewhere only the atexit hook is registered.
    """
    if not callable(close):
        raise ParameterError("close must be callable")
    once = threading.Lock()
    done = [False]

    def run_close() -> None:
        with once:
            if done[0]:
                return
            done[0] = True
        close()

    atexit.register(run_close)
    previous: dict[int, object] = {}

    def handler(signum, frame) -> None:
        try:
            run_close()
        finally:
            old = previous.get(signum, signal.SIG_DFL)
            signal.signal(signum, old)  # type: ignore[arg-type]
            if callable(old):
                old(signum, frame)
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # die of the signal as if we had never been there

    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def uninstall() -> None:
        atexit.unregister(run_close)
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, old)  # type: ignore[arg-type]

    return uninstall
