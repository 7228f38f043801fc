"""The port layer: list outputs, open one by name/substring/index or create a virtual port; open an input the
same way (:func:`open_input`, used for controllers). Outputs on JACK are our own JACK-Client port
(:mod:`services.midi_out.jack_output`: nothing sent is lost at close); everything else is python-rtmidi.
Every call that may make a MIDI library start threads runs with SIGINT/SIGTERM blocked (:mod:`shared.signals`).

API choice: ``jack``, ``alsa``, ``coremidi``, ``winmm`` or ``auto`` = JACK when a JACK server is running on
Linux, else ALSA; CoreMIDI on macOS; Windows MM on Windows. With JACK, a virtual port is a JACK MIDI output
port of this client (connect it with ``jack_connect`` or by opening it from the reader's side).
Every failure is a :class:`~shared.errors.MidiPortError` with one line that lists the available ports.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

from shared.config import MIDI_APIS
from shared.errors import MidiPortError, ParameterError
from shared.signals import library_threads_without_signals

__all__ = [
    "RtMidiOutput",
    "RtMidiInput",
    "compiled_api_names",
    "resolve_api",
    "list_output_ports",
    "choose_port",
    "open_output",
    "open_input",
    "jack_server_running",
]


def _rtmidi():
    try:
        import rtmidi
    except ImportError as error:  # pragma: no cover - installed with the package
        raise MidiPortError(f"python-rtmidi is not installed: {error}") from None
    return rtmidi


def _api_constant(name: str) -> int:
    rtmidi = _rtmidi()
    return {
        "jack": rtmidi.API_UNIX_JACK,
        "alsa": rtmidi.API_LINUX_ALSA,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }[name]


def compiled_api_names() -> list[str]:
    rtmidi = _rtmidi()
    compiled = set(rtmidi.get_compiled_api())
    return [name for name in MIDI_APIS[1:] if _api_constant(name) in compiled]


def jack_server_running() -> bool:
    """True when a JACK client can be opened without starting a server (libjack may print to stderr)."""
    rtmidi = _rtmidi()
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return False
    from services.midi_out.jack_midi import jack_server_answers

    return jack_server_answers()


def resolve_api(api: str = "auto") -> str:
    """The concrete API name for ``api`` on this OS; raises MidiPortError if it is not compiled in."""
    if api not in MIDI_APIS:
        raise ParameterError(f"MIDI api must be one of {', '.join(MIDI_APIS)}, got {api!r}")
    compiled = compiled_api_names()
    if api == "auto":
        if sys.platform.startswith("linux"):
            api = "jack" if "jack" in compiled and jack_server_running() else "alsa"
        elif sys.platform == "darwin":
            api = "coremidi"
        elif sys.platform.startswith("win"):
            api = "winmm"
        else:
            api = compiled[0] if compiled else "alsa"
    if api not in compiled:
        raise MidiPortError(
            f"MIDI API {api!r} is not available in this python-rtmidi build; available: {', '.join(compiled) or 'none'}"
        )
    return api


def _new_midi_out(api: str, client_name: str):
    return _new_rtmidi("MidiOut", api, client_name)


def _new_rtmidi(kind: str, api: str, client_name: str, **options):
    """A python-rtmidi ``MidiOut`` or ``MidiIn`` on ``api``; failure is one MidiPortError line."""
    rtmidi = _rtmidi()
    try:
        with library_threads_without_signals():  # RtMidi's JACK client starts libjack threads
            return getattr(rtmidi, kind)(_api_constant(api), name=client_name, **options)
    except rtmidi.RtMidiError as error:
        hint = " (is the JACK server running?)" if api == "jack" else ""
        raise MidiPortError(f"cannot open the MIDI API {api!r}{hint}: {error}") from None


def list_output_ports(api: str = "auto") -> list[str]:
    """Names of the MIDI output ports (destinations) visible through ``api``."""
    api = resolve_api(api)
    if api == "jack":
        from services.midi_out.jack_midi import jack_midi_ports

        return jack_midi_ports(outputs=True)
    midi_out = _new_midi_out(api, "musichal-list")
    try:
        with library_threads_without_signals():
            return list(midi_out.get_ports())
    finally:
        with library_threads_without_signals():
            midi_out.delete()


def choose_port(ports: list[str], port: str | int, what: str = "output") -> int:
    if isinstance(port, bool):
        raise ParameterError(f"port must be a name, a substring or an index, got {port!r}")
    if isinstance(port, int) or (isinstance(port, str) and port.strip().isdigit() and port not in ports):
        index = int(port)
        if 0 <= index < len(ports):
            return index
        raise MidiPortError(f"MIDI {what} port index {index} out of range; available: {_listing(ports)}")
    if not isinstance(port, str) or not port:
        raise ParameterError(f"port must be a non-empty name, a substring or an index, got {port!r}")
    if port in ports:
        return ports.index(port)
    matches = [i for i, name in enumerate(ports) if port.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MidiPortError(f"MIDI {what} port {port!r} not found; available: {_listing(ports)}")
    raise MidiPortError(
        f"MIDI {what} port {port!r} is ambiguous ({len(matches)} matches); available: {_listing(ports)}"
    )


def _listing(ports: list[str]) -> str:
    return ", ".join(f"[{i}] {name}" for i, name in enumerate(ports)) if ports else "none"


@contextmanager
def _deleted_on_failure(handle, what: str, api: str):
    """While a new RtMidi object is being set up: any failure deletes it; RtMidi's own errors become one line."""
    rtmidi = _rtmidi()
    try:
        yield
    except rtmidi.RtMidiError as error:
        with library_threads_without_signals():
            handle.delete()
        raise MidiPortError(f"cannot open MIDI {what} on {api}: {error}") from None
    except BaseException:
        with library_threads_without_signals():
            handle.delete()
        raise


class _RtMidiPort:
    """What an open python-rtmidi port has, in or out: api, port name, virtual or not; an idempotent ``close()``
    under a lock that closes and deletes the RtMidi object once; context manager."""

    def __init__(self, handle, *, api: str, port_name: str, is_virtual: bool) -> None:
        self._handle = handle
        self.api = api
        self.port_name = port_name
        self.is_virtual = is_virtual
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with library_threads_without_signals():
                try:
                    self._handle.close_port()
                finally:
                    self._handle.delete()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual" if self.is_virtual else "port"
        return f"{type(self).__name__}({self.api}, {kind} {self.port_name!r}{', closed' if self._closed else ''})"


class RtMidiOutput(_RtMidiPort):
    """An open python-rtmidi output: ``send(list[int])`` under a lock, idempotent ``close()``, context manager."""

    def send(self, message: list[int]) -> None:
        with self._lock:
            if self._closed:
                raise MidiPortError(f"MIDI output {self.port_name!r} is closed")
            self._handle.send_message(message)

    def destinations(self) -> list[str]:
        """The ports this API can send to now (used to notice a named destination vanishing and returning)."""
        with self._lock:
            if self._closed:
                return []
            with library_threads_without_signals():
                return list(self._handle.get_ports())


def open_output(
    api: str = "auto",
    port: str | int | None = None,
    *,
    virtual_name: str = "MusicHal",
    client_name: str = "MusicHal",
):
    """Open the output ``port`` (exact name, unique case-insensitive substring, or index) or, when ``port`` is
    None, create a virtual output named ``virtual_name``.

    On JACK the output is a :class:`~services.midi_out.jack_output.JackMidiOutput` (its own process callback writes
    every message and ``close()`` returns once a JACK cycle has delivered them); on ALSA, CoreMIDI and Windows MM an
    :class:`RtMidiOutput`. Both have ``send``, ``destinations``, ``close``, ``port_name``, ``is_virtual``, ``api``.

    Raises
    ------
    MidiPortError
        The API is unavailable, or the port is missing/ambiguous (the message lists the available ports).
    ParameterError
        ``api`` or ``port`` is malformed.
    """
    if not virtual_name or not client_name:
        raise ParameterError("virtual_name and client_name must be non-empty")
    api = resolve_api(api)
    if api == "jack":
        from services.midi_out.jack_midi import open_jack_output

        return open_jack_output(
            port,
            virtual_name=virtual_name,
            client_name=client_name,
            choose=choose_port,
            connect_port_name=f"{client_name}-out-{os.getpid()}",
        )
    midi_out = _new_midi_out(api, client_name)
    with _deleted_on_failure(midi_out, "output", api), library_threads_without_signals():
        if port is None:
            if api == "winmm":
                raise MidiPortError(
                    "Windows MM cannot create virtual MIDI ports; pick an output with --midi-port "
                    f"(available: {_listing(list(midi_out.get_ports()))})"
                )
            midi_out.open_virtual_port(virtual_name)
            return RtMidiOutput(midi_out, api=api, port_name=virtual_name, is_virtual=True)
        ports = list(midi_out.get_ports())
        index = choose_port(ports, port)
        midi_out.open_port(index, name=f"{client_name}-out-{os.getpid()}")
        return RtMidiOutput(midi_out, api=api, port_name=ports[index], is_virtual=False)


class RtMidiInput(_RtMidiPort):
    """A python-rtmidi input whose messages are handed to ``on_message(list[int])`` on a thread of our own.

    RtMidi queues incoming messages in C++ (``queue_size_limit`` of them); the thread drains that queue every
    ``poll_interval_s``. Why not ``MidiIn.set_callback``: a Python callback runs on the driver's thread and must take
    the GIL there; with JACK that thread is the real-time process thread, and a late reader (likely) reads a port
    buffer the sender is already refilling. Measured on this 2-core machine under CPU load, 13,500 numbered messages
    in bursts of 45: callback mode lost or garbled 29 to 11,208 of them per run, this queue-and-drain design none.
    """

    def __init__(
        self, midi_in, *, api: str, port_name: str, is_virtual: bool, on_message, poll_interval_s: float = 0.001
    ) -> None:
        if not callable(on_message):
            raise ParameterError("on_message must be callable")
        if not 0 < poll_interval_s <= 0.1:
            raise ParameterError(f"poll_interval_s must be in (0, 0.1], got {poll_interval_s}")
        super().__init__(midi_in, api=api, port_name=port_name, is_virtual=is_virtual)
        self.messages = 0
        self._on_message = on_message
        self._poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"midi-in-{port_name}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        get_message = self._handle.get_message
        while True:
            with self._lock:
                if self._closed:
                    return
                received = get_message()
            if received is None:
                if self._stop.wait(self._poll_interval_s):
                    return
                continue
            self.messages += 1
            self._on_message(list(received[0]))

    def close(self) -> None:
        """Stop the drain thread, then close the port (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        super().close()


def open_input(
    on_message,
    api: str = "auto",
    port: str | int | None = None,
    *,
    virtual_name: str = "MusicHal-in",
    client_name: str = "MusicHal-in",
    ignore_sysex: bool = True,
    queue_size: int = 4096,
    poll_interval_s: float = 0.001,
) -> RtMidiInput:
    """Open the input ``port`` (a source: exact name, unique case-insensitive substring, or index) or, when ``port``
    is None, create a virtual input named ``virtual_name`` that sources connect to; every message goes to
    ``on_message(list[int])`` on the input's own thread. Timing clock and active sensing are ignored.

    Raises MidiPortError (API unavailable, port missing/ambiguous: the message lists the sources) or ParameterError.
    """
    if not callable(on_message):
        raise ParameterError("on_message must be callable")
    if not virtual_name or not client_name:
        raise ParameterError("virtual_name and client_name must be non-empty")
    if not 1 <= int(queue_size) <= 1 << 20:
        raise ParameterError(f"queue_size must be in 1..{1 << 20}, got {queue_size}")
    api = resolve_api(api)
    if api == "jack":
        from services.midi_out.jack_midi import open_jack_input

        return open_jack_input(
            on_message,
            port,
            virtual_name=virtual_name,
            client_name=client_name,
            choose=choose_port,
            ignore_sysex=ignore_sysex,
        )
    midi_in = _new_rtmidi("MidiIn", api, client_name, queue_size_limit=int(queue_size))
    with _deleted_on_failure(midi_in, "input", api), library_threads_without_signals():
        midi_in.ignore_types(sysex=ignore_sysex, timing=True, active_sense=True)
        if port is None:
            if api == "winmm":
                raise MidiPortError(
                    "Windows MM cannot create virtual MIDI ports; pick an input port "
                    f"(available: {_listing(list(midi_in.get_ports()))})"
                )
            midi_in.open_virtual_port(virtual_name)
            port_name, is_virtual = (f"{client_name}:{virtual_name}" if api == "jack" else virtual_name), True
        else:
            ports = list(midi_in.get_ports())
            index = choose_port(ports, port, "input")
            midi_in.open_port(index, name=virtual_name)
            port_name, is_virtual = ports[index], False
        return RtMidiInput(
            midi_in,
            api=api,
            port_name=port_name,
            is_virtual=is_virtual,
            on_message=on_message,
            poll_interval_s=poll_interval_s,
        )
