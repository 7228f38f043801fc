"""Keep SIGINT and SIGTERM for our own threads: C libraries' threads must not take them.

A signal sent to a process goes to any one of its threads that does not block it. CPython runs its Python-level
handlers only on the main thread: when the kernel hands SIGINT to a thread that libjack (JACK), PortAudio or another
C library created, the C handler sets Python's flag there, but a main thread sleeping in ``Event.wait`` (a lock) is
never woken, so Ctrl-C or SIGTERM is "heard" by nobody (measured: a JACK MIDI child's SIGINT never handled).

The fix is the standard one: a thread inherits the signal mask of the thread that creates it. Every call that can
make a library create threads runs inside :func:`library_threads_without_signals`, which blocks SIGINT and SIGTERM
in the calling thread for the call (so threads created meanwhile block them for good) and then restores the calling
thread's previous mask exactly — which also undoes any mask change the library made in our thread (JACK2's
``JackLibGlobals`` saves and restores the process mask around its own life). :func:`threads_taking` reads the
masks back from ``/proc`` so tests can prove which threads may still take a signal.

The main thread must also never sleep without a timeout: CPython runs a signal's Python handler when the main thread
wakes from a lock wait with EINTR, and a signal that arrives after the interpreter released the GIL but before the
wait began wakes nothing (measured: 1 SIGINT of 200 short-lived senders went unhandled in ``Event().wait()``).
``launch.py`` waits one second at a time, so a signal is handled within a second whatever the timing.

>>> import signal
>>> with library_threads_without_signals():
...     signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
True
>>> signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
False
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "library_threads_without_signals", "threads_taking"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def library_threads_without_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Block ``signals`` in the calling thread while the body runs; restore the thread's mask afterwards.

    Threads created by the body (a C library's) inherit the blocked mask and never take those signals. Where
    ``pthread_sigmask`` does not exist (Windows), the body runs as it is.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def threads_taking(signum: int, pid: int | None = None) -> dict[int, str]:
    """The threads of process ``pid`` (default: this one) that do not block ``signum``: ``{tid: name}``.

    Read from ``/proc/PID/task/*/status`` (Linux); raises OSError elsewhere.
    """
    pid = os.getpid() if pid is None else pid
    bit = 1 << (signum - 1)
    taking: dict[int, str] = {}
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{pid}/task")):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except FileNotFoundError:  # the thread ended while we looked
            continue
        if not int(fields["SigBlk"].strip(), 16) & bit:
            taking[tid] = fields["Name"].strip()
    return taking
