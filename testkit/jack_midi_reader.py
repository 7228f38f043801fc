"""A JACK MIDI input in its own process, for tests: prints every message it receives as a JSON line.

Usage: python -m testkit.jack_midi_reader CLIENT virtual PORT   (expose an input port CLIENT:PORT)
       python -m testkit.jack_midi_reader CLIENT connect SOURCE (connect to an existing output port)

Why a process: RtMidi's JACK input unregisters its port while JACK's process thread may still be using it
(``MidiInJack::closePort`` has no synchronisation), which crashed pytest now and then. The test kills this process
instead of closing the port; the JACK server cleans up after a dead client. The input is the product's own
:func:`services.midi_out.ports.open_input` (RtMidi's queue drained on a thread, never a Python callback on JACK's
process thread: that garbled messages under load).
"""
from __future__ import annotations

import json
import sys
import threading
import time


def main() -> int:
    from services.midi_out.ports import open_input
    from shared.errors import MidiPortError

    client, mode, port = sys.argv[1:4]
    out = sys.stdout
    ready = threading.Event()

    def on_message(message: list[int]) -> None:  # only ever called from the input's one drain thread
        line = json.dumps([time.monotonic(), message])
        ready.wait()  # a connected source may send before READY is out: READY stays the first line
        out.write(line + "\n")
        out.flush()

    virtual = mode == "virtual"
    try:
        midi_input = open_input(on_message, "jack", None if virtual else port, virtual_name=port if virtual else "in",
                                client_name=client, ignore_sysex=False, queue_size=65536)
    except MidiPortError as error:
        print(f"ERROR {error}", flush=True)
        return 1
    print(f"READY {midi_input.port_name}", flush=True)
    ready.set()
    threading.Event().wait()  # until the test kills us
    return 0


if __name__ == "__main__":
    sys.exit(main())
