"""A JACK MIDI input in its own process, for tests: prints every message it receives as a JSON line.

Usage: python -m testkit.jack_midi_reader CLIENT virtual PORT   (expose an input port CLIENT:PORT)
       python -m testkit.jack_midi_reader CLIENT connect SOURCE (connect to an existing output port)

It stops when its standard input closes: it deactivates and closes its JACK client and exits 0.

Why a process, and why not RtMidi: the measuring instrument must be able to leave the JACK graph cleanly. The test
servers run in ``--sync`` mode (see :mod:`shared.jack_server`), where a client that dies without closing stalls
the whole server until JACK's client timeout drops it — measured 5.0 s with the dummy server in ``--no-realtime``
mode (``jackd`` logs "XRun = 5000125 usec"; a watching client saw 1 process cycle in the 4 s after the kill instead
of ~750). RtMidi's JACK input cannot close cleanly (``MidiInJack::closePort`` unregisters the port while JACK's
process thread may still use it, which crashed pytest now and then), so the previous reader was killed, and every
kill stalled the server: an output that sent and closed within RtMidi's own 1 s close wait during such a stall
lost its bytes (the exit-path panic test, ``play_events``). This reader uses the JACK-Client package (a dev
dependency): ``deactivate()`` stops the process callback before ``close()`` leaves the graph, so nothing stalls.

The process callback only copies each event's bytes with its receive time (``time.monotonic`` in the callback,
i.e. when JACK delivered it) into a queue; a writer thread prints them. The server's ``--sync`` mode waits for
this callback each cycle, so a late callback delays the cycle but loses nothing.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time


def main() -> int:
    import jack

    client_name, mode, port = sys.argv[1:4]
    sys.setswitchinterval(1e-4)  # the process callback waits for the GIL at most this long behind the writer
    events: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
    try:
        client = jack.Client(client_name, no_start_server=True)
    except jack.JackError as error:
        print(f"ERROR cannot open JACK client {client_name}: {error}", flush=True)
        return 1
    inport = client.midi_inports.register(port if mode == "virtual" else "in")

    @client.set_process_callback
    def process(frames: int) -> None:
        now = time.monotonic()
        for _offset, data in inport.incoming_midi_events():
            events.put((now, bytes(data)))

    def write() -> None:
        out = sys.stdout
        while True:
            item = events.get()
            if item is None:
                return
            out.write(json.dumps([item[0], list(item[1])]) + "\n")
            out.flush()

    writer = threading.Thread(target=write, name="jack-reader-writer", daemon=True)
    try:
        client.activate()
        if mode == "connect":
            client.connect(port, inport)
    except jack.JackError as error:
        print(f"ERROR cannot open JACK MIDI input {client_name}: {error}", flush=True)
        client.close()
        return 1
    print(f"READY {inport.name}", flush=True)  # before any message line: the writer starts after it
    writer.start()
    try:
        sys.stdin.read()  # until the test closes our standard input
    finally:
        client.deactivate()  # no process callback runs after this returns
        client.close()  # leaves the graph cleanly: the server does not wait for us
        events.put(None)
        writer.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
