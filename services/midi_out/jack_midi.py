"""JACK MIDI through JACK-Client: an output that loses nothing (messages are written by our own process callback,
and "delivered" means a JACK cycle has run with them), an input, the port listing and the server probe.

Why not python-rtmidi on JACK: its output copies a ring buffer into the port once per process cycle, drops what does
not fit in the port's buffer, and ``closePort`` does not wait for the copy. A process that sends and exits (an exit's
all-notes-off, ``musichal --panic``, ``musichal replay``) lost its last messages on a loaded machine (measured: 1,248
of 1,280 messages of 40 ``--panic`` runs beside a busy process). Nothing outside the library can tell when its copy ran.

Here the port belongs to a JACK-Client client whose process callback owns the queue:

- :meth:`JackMidiOutput.send` appends the message with the JACK frame time of the call; the callback of the next
  cycle writes it at that frame offset plus one period (a constant one-period latency without jitter; a late cycle
  writes at offset 0, in order). What does not fit in a cycle's port buffer waits for the next cycle, never dropped.
- A message counts as *delivered* once the cycle that wrote it has ended, i.e. when the next cycle's callback
  starts: in JACK every client reading our port ran its part of that cycle (in ``--sync`` mode, before the next
  cycle starts at all).
- :meth:`JackMidiOutput.flush` waits (bounded, on a condition the callback signals) until everything sent so far is
  delivered; :meth:`close` flushes first, then deactivates and closes the client. When no JACK cycle can run (server
  stalled or gone) it says so on stderr with the count of messages not delivered — never silently.
- Synchronous vs asynchronous servers (``jackd -S`` or not): a synchronous server waits for every client before the
  next cycle, so nothing written is ever lost. An asynchronous one does not wait: when our callback is late (it
  needs the GIL) JACK runs the next cycle without us, wakes us twice in a row and our readers once, and the
  events of one of those calls are never read, or read twice (measured: a GIL-bound thread beside the sender,
  C reader ``jack_midi_dump``: 324 of 12,000 lost; 218 lost and 27 repeated of 9,000; with no such thread 0 of
  24,000). We cannot see our readers, but we can see late calls: a new cycle began while we wrote, or cycles
  passed between two calls. Messages written in or next to a late call are counted *at risk* (every loss measured
  was among them); the first time, and again at ``close``, their count goes to stderr with the advice to run
  ``jackd -S`` — never silently. The process's GIL switch interval is shortened (:func:`_shorten_gil_switch`),
  which made late calls rare (0 lost of 12,000 with the GIL-bound thread).
- A new connection to a destination takes effect at a cycle boundary: after ``jack_connect`` returns, the first
  messages are held until two more cycles have started, so the first bytes are not written into a cycle whose graph
  did not have the connection yet.

Why all of JACK goes through JACK-Client, inputs, listing and probe included: our callbacks are Python, so they need
the GIL. JACK-Client (cffi) releases the GIL in every libjack call; python-rtmidi (Cython) does not. An RtMidi JACK
client opened in a process whose JACK-Client callback was running held the GIL inside ``jack_client_open`` while the
``--sync`` server waited for our callback, which waited for the GIL: the open failed ("JACK server not running?") and
the output lost the messages of those cycles (measured: 2 of 6 runs). With one binding for JACK no process can mix
them. python-rtmidi stays for ALSA, CoreMIDI and Windows MM.

Every call into libjack runs inside :func:`shared.signals.library_threads_without_signals`, so libjack's threads
never take SIGINT/SIGTERM away from the main thread.

The callback takes the GIL each period (5.3 ms at 256 frames / 48 kHz): it does a bounded amount of work (the
queue) and never raises (an exception would stop JACK calling it; it is kept in :attr:`JackMidiOutput.error`).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable

from shared.errors import MidiPortError
from shared.signals import library_threads_without_signals

__all__ = [
    "JackMidiOutput",
    "JackMidiInput",
    "open_jack_output",
    "open_jack_input",
    "jack_midi_ports",
    "jack_server_answers",
    "CLOSE_FLUSH_S",
    "CONNECT_HOLD_CYCLES",
]

CLOSE_FLUSH_S = 5.0  # the longest close() waits for JACK cycles before it reports what was not delivered
CONNECT_HOLD_CYCLES = 2  # cycles started after jack_connect returned before the first write
GIL_SWITCH_S = 0.0005  # sys.setswitchinterval in a process with a JACK port (see _shorten_gil_switch)
MAX_EVENTS_PER_CYCLE = 256  # bounds the callback's work; more wait for the next cycle
_FRAME_MASK = (1 << 32) - 1  # jack_nframes_t wraps (about 24.9 h at 48 kHz)


def _jack():
    try:
        import jack
    except (ImportError, OSError) as error:  # OSError: the JACK library itself is missing
        raise MidiPortError(f"JACK MIDI needs the JACK-Client package and libjack: {error}") from None
    return jack


class JackMidiOutput:
    """One JACK MIDI output port of a client of its own: ``send(list[int])``, ``flush()``, idempotent ``close()``.

    Same surface as :class:`~services.midi_out.ports.RtMidiOutput` (``api``, ``port_name``, ``is_virtual``,
    ``destinations()``, context manager), plus delivery counters: :attr:`sent`, :attr:`delivered`.
    """

    api = "jack"

    def __init__(self, client, port, *, port_name: str, is_virtual: bool) -> None:
        self._client = client
        self._port = port
        self.port_name = port_name
        self.is_virtual = is_virtual
        jack = _jack()
        self._lib, self._ffi = jack._lib, jack._ffi  # the C functions JACK-Client wraps: one call per event
        self._port_ptr = port._ptr
        self._queue: collections.deque[tuple[object, int]] = collections.deque()
        self._lock = threading.Lock()  # send/close against each other (the callback never takes it)
        self._condition = threading.Condition()
        self._waiting = 0
        self._closed = False
        self._server_gone: str | None = None
        self.sent = 0
        self.written = 0  # written into a cycle's port buffer (callback thread only)
        self.delivered = 0  # written in a cycle that has ended (callback thread only)
        self.cycles = 0  # process callbacks started
        # late callbacks (see _process): on an asynchronous server the messages they wrote may never be read
        self.late_cycles = 0
        self.at_risk = 0  # messages written in or next to a late callback
        self._risk_reported = False
        self._prev_start = -1
        self._prev_written = 0
        self._prev_late = False
        self._prev_at_risk = False
        self._hold_until = 0
        self.error: str | None = None

    # ------------------------------------------------------------------ JACK threads
    def _process(self, frames: int) -> None:
        try:
            start = self._client.last_frame_time  # the engine's current cycle (set before it wakes us)
            # cycles that began and ended without a callback of ours: the previous callback was late
            gap = self._prev_start >= 0 and ((start - self._prev_start) & _FRAME_MASK) != frames
            if gap and not self._prev_at_risk:
                self.at_risk += self._prev_written
            self.delivered = self.written  # the cycles that wrote them have ended
            self.cycles += 1
            queue = self._queue
            plan: list[tuple[object, int, int]] = []
            if queue and self.cycles >= self._hold_until:
                floor = 0
                for data, stamp in list(queue)[:MAX_EVENTS_PER_CYCLE]:
                    offset = ((stamp - start + (1 << 31)) & _FRAME_MASK) - (1 << 31) + frames
                    floor = floor if offset < floor else (frames - 1 if offset >= frames else offset)
                    plan.append((data, floor, len(data)))
            # the buffer is cleared and written in one tight loop: a reader that JACK runs beside us while the graph
            # changes (a client joining or leaving) sees a half-written buffer for the shortest time
            lib = self._lib
            buffer = lib.jack_port_get_buffer(self._port_ptr, frames)
            lib.jack_midi_clear_buffer(buffer)
            written = 0
            for data, offset, size in plan:
                if lib.jack_midi_event_write(buffer, offset, data, size):
                    break  # this cycle's port buffer is full: the rest goes out in the next cycle
                written += 1
            for _ in range(written):
                queue.popleft()
            self.written += written
            late = self._client.last_frame_time != start  # the next cycle began while we were still writing
            risky = gap or late or self._prev_late
            if risky:
                self.at_risk += written
            if gap or late:
                self.late_cycles += 1
            self._prev_start, self._prev_written, self._prev_late, self._prev_at_risk = start, written, late, risky
            if self._waiting:
                with self._condition:
                    self._condition.notify_all()
        except BaseException as error:  # never raise into JACK: it would stop calling us
            if self.error is None:
                self.error = f"{type(error).__name__}: {error}"

    def _shutdown(self, status, reason: str) -> None:
        self._server_gone = reason or "the JACK server shut the client down"
        with self._condition:
            self._condition.notify_all()

    # ------------------------------------------------------------------ our threads
    def send(self, message: list[int]) -> None:
        data = bytes(message)
        if not data:
            raise MidiPortError("cannot send an empty MIDI message")
        with self._lock:
            if self._closed:
                raise MidiPortError(f"MIDI output {self.port_name!r} is closed")
            self._queue.append((self._ffi.from_buffer(data), self._client.frame_time & _FRAME_MASK))
            self.sent += 1
        if self.at_risk and not self._risk_reported:
            self._risk_reported = True
            self._report_at_risk("so far ")

    def flush(self, timeout_s: float = CLOSE_FLUSH_S) -> bool:
        """Wait until every message sent so far is delivered (a JACK cycle ran with it and ended); bounded.

        Returns False when the timeout passed (no JACK cycle ran: server stalled) or the server is gone."""
        target = self.sent
        deadline = time.monotonic() + timeout_s
        with self._condition:
            self._waiting += 1
            try:
                while self.delivered < target and self._server_gone is None and self.error is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._condition.wait(min(left, 0.1))
            finally:
                self._waiting -= 1
        return self.delivered >= target

    def destinations(self) -> list[str]:
        """The JACK MIDI inputs this client could send to now (a named destination vanishing and returning)."""
        with self._lock:
            if self._closed:
                return []
            with library_threads_without_signals():
                return [port.name for port in self._client.get_ports(is_midi=True, is_input=True)]

    def close(self, timeout_s: float = CLOSE_FLUSH_S) -> None:
        """Deliver what was sent (bounded: a stalled server is reported on stderr), then leave the graph."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not self.flush(timeout_s):
            self._report_undelivered(timeout_s)  # before leaving the graph, which needs the (stalled) server
        if self.at_risk:
            self._report_at_risk()
        with library_threads_without_signals():
            self._client.deactivate(ignore_errors=True)
            self._client.close()

    def _report_at_risk(self, when: str = "") -> None:
        print(
            f"MusicHal: {self.at_risk} of {self.sent} MIDI messages to {self.port_name!r} {when}went out in JACK "
            f"cycles our process reached late ({self.late_cycles} late cycles): an asynchronous JACK server may "
            "have dropped or repeated them; run jackd with -S (synchronous mode)",
            file=sys.stderr,
            flush=True,
        )

    def _report_undelivered(self, timeout_s: float) -> None:
        lost = self.sent - self.delivered
        why = (
            (self._server_gone and f"JACK server gone: {self._server_gone}")
            or (self.error and f"process callback failed: {self.error}")
            or "no JACK cycle ran: the server stalled"
        )
        print(
            f"MusicHal: {lost} of {self.sent} MIDI messages not delivered to {self.port_name!r} within "
            f"{timeout_s:g} s ({why})",
            file=sys.stderr,
            flush=True,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> JackMidiOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual" if self.is_virtual else "port"
        return (
            f"JackMidiOutput({kind} {self.port_name!r}, sent {self.sent}, delivered {self.delivered}"
            f"{', closed' if self._closed else ''})"
        )


def open_jack_output(
    port: str | int | None,
    *,
    virtual_name: str,
    client_name: str,
    choose: Callable[[list[str], str | int], int],
    connect_port_name: str,
) -> JackMidiOutput:
    """Open a JACK client with one MIDI output: virtual (``port`` None: readers connect to ``client:virtual_name``)
    or connected to the destination ``choose(destinations, port)`` picks, through our port ``connect_port_name``.

    Raises MidiPortError (no server, no such destination: the message lists them) in one line.
    """
    jack = _jack()
    _shorten_gil_switch()
    client = _open_client(jack, client_name)
    with _closed_on_failure(jack, client, "output"):
        with library_threads_without_signals():
            if port is None:
                own = client.midi_outports.register(virtual_name)
                destination = None
            else:
                names = [p.name for p in client.get_ports(is_midi=True, is_input=True)]
                destination = names[choose(names, port)]
                own = client.midi_outports.register(connect_port_name)
        output = JackMidiOutput(client, own, port_name=destination or virtual_name, is_virtual=destination is None)
        client.set_process_callback(output._process)
        client.set_shutdown_callback(output._shutdown)
        with library_threads_without_signals():
            client.activate()
            if destination is not None:
                client.connect(own, destination)
                output._hold_until = output.cycles + CONNECT_HOLD_CYCLES
        return output


@contextlib.contextmanager
def _closed_on_failure(jack, client, what: str):
    """While a new client is being set up: any failure closes it; JACK's own errors become one line."""
    try:
        yield
    except jack.JackError as error:
        with library_threads_without_signals():
            client.close()
        raise MidiPortError(f"cannot open MIDI {what} on jack: {error}") from None
    except BaseException:
        with library_threads_without_signals():
            client.close()
        raise


def _shorten_gil_switch() -> None:
    """Our process callbacks are Python: a JACK thread waits for the GIL while another thread of the process runs,
    by default up to 5 ms (``sys.getswitchinterval``) — a whole period at 256 frames / 48 kHz. A late callback costs
    timing everywhere and, on an asynchronous server, messages (measured with a GIL-bound thread beside the sender
    and a C reader: 324 of 12,000 lost at 5 ms, 0 at 0.5 ms). The process's switch interval drops to
    :data:`GIL_SWITCH_S` once it opens a JACK port."""
    if sys.getswitchinterval() > GIL_SWITCH_S:
        sys.setswitchinterval(GIL_SWITCH_S)


def _open_client(jack, client_name: str):
    with library_threads_without_signals():
        try:
            return jack.Client(client_name, no_start_server=True)
        except jack.JackError as error:
            raise MidiPortError(f"cannot open the MIDI API 'jack' (is the JACK server running?): {error}") from None


def jack_server_answers() -> bool:
    """True when a JACK client can be opened (never starts a server)."""
    try:
        jack = _jack()
        client = _open_client(jack, "musichal-probe")
    except MidiPortError:
        return False
    with library_threads_without_signals():
        client.close()
    return True


def jack_midi_ports(*, outputs: bool) -> list[str]:
    """Full names of the JACK MIDI ports we could send to (``outputs=True``: other clients' inputs) or receive
    from (``outputs=False``: other clients' outputs)."""
    jack = _jack()
    client = _open_client(jack, "musichal-list")
    try:
        with library_threads_without_signals():
            return [p.name for p in client.get_ports(is_midi=True, is_input=outputs, is_output=not outputs)]
    finally:
        with library_threads_without_signals():
            client.close()


_IGNORED = {0xF8, 0xFE}  # timing clock, active sensing


class JackMidiInput:
    """A JACK MIDI input whose messages are handed to ``on_message(list[int])`` on a thread of our own.

    The process callback only copies each event's bytes into a queue (no user code on JACK's thread); the delivery
    thread calls ``on_message``. ``close()`` deactivates the client first (no callback runs after that), delivers
    what was received and leaves the graph. Same surface as :class:`~services.midi_out.ports.RtMidiInput`."""

    api = "jack"

    def __init__(self, client, port, *, port_name: str, is_virtual: bool, on_message, ignore_sysex: bool) -> None:
        import queue

        self._client = client
        self._port = port
        self.port_name = port_name
        self.is_virtual = is_virtual
        self.messages = 0
        self._on_message = on_message
        self._ignore_sysex = ignore_sysex
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._deliver, name=f"midi-in-{port_name}", daemon=True)

    def _process(self, frames: int) -> None:
        try:
            put = self._queue.put
            for _offset, data in self._port.incoming_midi_events():
                message = bytes(data)
                if message and message[0] not in _IGNORED and not (self._ignore_sysex and message[0] == 0xF0):
                    put(message)
        except BaseException as error:  # never raise into JACK
            if self.error is None:
                self.error = f"{type(error).__name__}: {error}"

    def _deliver(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            self.messages += 1
            try:
                self._on_message(list(message))
            except BaseException as error:  # a failing handler must not stop the input
                if self.error is None:
                    self.error = f"on_message: {type(error).__name__}: {error}"

    def close(self) -> None:
        """Leave the graph, deliver what arrived before, stop the delivery thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with library_threads_without_signals():
            self._client.deactivate(ignore_errors=True)
            self._client.close()
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> JackMidiInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JackMidiInput({'virtual' if self.is_virtual else 'port'} {self.port_name!r})"


def open_jack_input(
    on_message,
    port: str | int | None,
    *,
    virtual_name: str,
    client_name: str,
    choose: Callable[..., int],
    ignore_sysex: bool = True,
) -> JackMidiInput:
    """A virtual JACK MIDI input ``client:virtual_name`` (``port`` None) or one connected from the source
    ``choose(sources, port, "input")`` picks. Raises MidiPortError in one line."""
    jack = _jack()
    _shorten_gil_switch()
    client = _open_client(jack, client_name)
    with _closed_on_failure(jack, client, "input"):
        with library_threads_without_signals():
            own = client.midi_inports.register(virtual_name)
            source = None
            if port is not None:
                names = [p.name for p in client.get_ports(is_midi=True, is_output=True)]
                source = names[choose(names, port, "input")]
        midi_input = JackMidiInput(
            client,
            own,
            port_name=source or f"{client.name}:{virtual_name}",
            is_virtual=source is None,
            on_message=on_message,
            ignore_sysex=ignore_sysex,
        )
        client.set_process_callback(midi_input._process)
        with library_threads_without_signals():
            midi_input._thread.start()
            client.activate()
            if source is not None:
                client.connect(source, own)
        return midi_input
