"""A JACK MIDI input in its own process, for tests: prints every message it receives as a JSON line.

Usage: python -m tests.jack_midi_reader CLIENT virtual PORT   (expose an input port CLIENT:PORT)
       python -m tests.jack_midi_reader CLIENT connect SOURCE (connect to an existing output port)

Why a process: RtMidi's JACK input unregisters its port while JACK's process thread may still be using it
(``MidiInJack::closePort`` has no synchronisation), which crashed pytest now and then. The test kills this process
instead of closing the port; the JACK server cleans up after a dead client.
"""
from __future__ import annotations

import json
import sys
import threading
import time


def main() -> int:
    import rtmidi

    client, mode, port = sys.argv[1:4]
    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client)
    midi_in.ignore_types(sysex=False, timing=True, active_sense=True)
    lock = threading.Lock()
    out = sys.stdout

    def on_message(event, _data=None) -> None:
        line = json.dumps([time.monotonic(), list(event[0])])
        with lock:
            out.write(line + "\n")
            out.flush()

    midi_in.set_callback(on_message)
    if mode == "virtual":
        midi_in.open_virtual_port(port)
        name = f"{client}:{port}"
    else:
        ports = midi_in.get_ports()
        matches = [i for i, candidate in enumerate(ports) if candidate == port]
        if not matches:
            print(f"ERROR JACK source {port!r} not found among {ports}", flush=True)
            return 1
        midi_in.open_port(matches[0], name="in")
        name = port
    with lock:
        out.write(f"READY {name}\n")
        out.flush()
    threading.Event().wait()  # until the test kills us
    return 0


if __name__ == "__main__":
    sys.exit(main())
