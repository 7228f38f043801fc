"""Facts about the machine the tests run on."""

from __future__ import annotations

import os
import threading


def fifo_allowed() -> bool:
    """Whether this system lets a thread take SCHED_FIFO (asked in a thread of its own, then dropped)."""
    answer = []

    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return answer[0]
