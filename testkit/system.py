"""Facts about the machine the tests run on."""

from __future__ import annotations

import threading

from services.midi_out.scheduler import raise_thread_priority


def fifo_allowed() -> bool:
    """Whether this system lets a thread take SCHED_FIFO (asked in a thread of its own, then dropped)."""
    answer = []
    thread = threading.Thread(target=lambda: answer.append(raise_thread_priority(1)))
    thread.start()
    thread.join()
    return answer[0]
