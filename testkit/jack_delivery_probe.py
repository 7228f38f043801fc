"""Delivery through our JACK MIDI output to a C reader (``jack_midi_dump``) on a server of its own, with a thread that
holds the GIL beside the sender: ``python -m testkit.jack_delivery_probe {sync|async} MESSAGES``.

Prints one JSON line: ``sent``, ``received`` (by the C reader, which is never late for want of a GIL), ``lost``
(messages sent and never read), ``duplicates``, ``at_risk`` and ``late_cycles`` (what the output counted), and
``warned`` (whether stderr carried the at-risk line). The sender's GIL switch interval is put back to Python's 5 ms
after the port opens, so late callbacks happen on an asynchronous server (the shortened interval makes them rare).
Used by tests/midi_out/test_async_jack.py; the server is named after this process and stopped at the end.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

SENTINEL = [0xBF, 119, 127]  # control change 119 on channel 16: never one of the numbered messages
SENTINEL_TEXT = "bf 77 7f"


def numbered(i: int) -> list[int]:
    """Message ``i`` as unique pitch-bend bytes (channel, LSB, MSB carry i)."""
    return [0xE0 | (i % 16), (i // 16) % 128, (i // 2048) % 128]


def main(mode: str, messages: int) -> int:
    os.environ["JACK_DEFAULT_SERVER"] = f"musichal-probe-{os.getpid()}"
    os.environ["JACK_NO_START_SERVER"] = "1"
    from services.midi_out.jack_midi import jack_midi_ports
    from services.midi_out.ports import open_output
    from shared.jack_server import start_dummy_jack, stop_jack

    server = start_dummy_jack(sync=mode == "sync")
    dump = None
    try:
        with tempfile.TemporaryFile("w+") as dumped:
            dump = subprocess.Popen(["jack_midi_dump", "probe-dump"], stdout=dumped, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20.0
            ports: list[str] = []
            while not ports and time.monotonic() < deadline:
                ports = [p for p in jack_midi_ports(outputs=True) if p.startswith("probe-dump:")]
                if not ports:
                    threading.Event().wait(0.05)
            if not ports:
                print(json.dumps({"error": "jack_midi_dump did not register its port"}), flush=True)
                return 1
            output = open_output("jack", ports[0], client_name="probe-out")
            sys.setswitchinterval(0.005)  # Python's default: late callbacks beside the GIL-bound thread below
            stop = threading.Event()

            def hold_the_gil() -> None:
                count = 0
                while not stop.is_set():
                    count += 1

            burner = threading.Thread(target=hold_the_gil, daemon=True)
            burner.start()
            wait = threading.Event().wait
            try:
                for i in range(messages):
                    output.send(numbered(i))
                    if i % 6 == 5:
                        wait(0.005)
            finally:
                stop.set()
                burner.join()
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                output.close()
            # jack_midi_dump prints what its callback read, in order: a sentinel sent after everything else by a
            # fresh output (no GIL-bound thread now) marks the end of what can still arrive
            sys.setswitchinterval(0.0005)
            with open_output("jack", ports[0], client_name="probe-end") as sentinel:
                sentinel.send(SENTINEL)
            deadline = time.monotonic() + 20.0
            text = ""
            while time.monotonic() < deadline:
                dumped.seek(0)
                text = dumped.read()
                if SENTINEL_TEXT in text:
                    break
                wait(0.02)
            lines = [line for line in text.splitlines() if ": e" in line]
        got = collections.Counter(tuple(int(x, 16) for x in line.split(":", 1)[1].split()) for line in lines)
        lost = sum(1 for i in range(messages) if got[tuple(numbered(i))] == 0)
        print(
            json.dumps(
                {
                    "sent": output.sent,
                    "received": len(lines),
                    "lost": lost,
                    "duplicates": sum(n - 1 for n in got.values() if n > 1),
                    "at_risk": output.at_risk,
                    "late_cycles": output.late_cycles,
                    "warned": "cycles our process reached late" in stderr.getvalue(),
                    "stderr": stderr.getvalue(),
                }
            ),
            flush=True,
        )
        return 0
    finally:
        if dump is not None:
            dump.terminate()
            dump.wait(timeout=10)
        stop_jack(server)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
