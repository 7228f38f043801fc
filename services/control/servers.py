"""Control inputs: an OSC UDP server (python-osc) and a MIDI controller input (python-rtmidi).

Both only translate and forward to a :class:`~services.control.hub.ControlHub`; they run in the launcher's
process (their own threads) and never block the audio path.
"""

from __future__ import annotations

import threading
from typing import Any

from services.control.hub import ControlHub
from services.control.state import OSC_PREFIX
from shared.errors import ParameterError

__all__ = ["OscControlServer", "MidiControlInput", "open_controls"]


class OscControlServer:
    """``ThreadingOSCUDPServer`` on ``host:port`` (127.0.0.1 by default; port 0 picks a free one: see :attr:`port`)."""

    def __init__(self, hub: ControlHub, *, host: str = "127.0.0.1", port: int = 9000) -> None:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer

        if not 0 <= int(port) <= 65535:
            raise ParameterError(f"OSC port must be in 0..65535, got {port}")
        self.hub = hub
        dispatcher = Dispatcher()
        dispatcher.map(OSC_PREFIX + "*", self._on_message)
        dispatcher.set_default_handler(self._on_message)
        try:
            self.server = ThreadingOSCUDPServer((host, int(port)), dispatcher)
        except OSError as error:
            raise ParameterError(f"cannot listen for OSC on {host}:{port}: {error}") from None
        self.host, self.port = self.server.server_address[:2]
        self.messages = 0
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="musichal-osc", daemon=True
        )
        self._thread.start()

    def _on_message(self, address: str, *args: Any) -> None:
        self.messages += 1
        self.hub.handle_osc(address, *args)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2.0)


class MidiControlInput:
    """A MIDI input for a controller: ``port`` = a source port by name/substring/index, or ``"virtual"`` for a
    port of our own named ``virtual_name`` that controllers connect to. Messages reach the hub from the input's
    own drain thread (:func:`services.midi_out.ports.open_input`), never from the MIDI driver's thread."""

    def __init__(
        self,
        hub: ControlHub,
        *,
        api: str = "auto",
        port: str = "virtual",
        client_name: str = "MusicHal-control",
        virtual_name: str = "control",
    ) -> None:
        from services.midi_out.ports import open_input

        self.hub = hub
        self.midi_input = open_input(
            self._on_message,
            api,
            None if port == "virtual" else port,
            virtual_name=virtual_name,
            client_name=client_name,
        )
        self.port_name = self.midi_input.port_name

    @property
    def messages(self) -> int:
        return self.midi_input.messages

    def _on_message(self, message: list[int]) -> None:
        self.hub.handle_midi(message)

    def close(self) -> None:
        self.midi_input.close()


def open_controls(hub: ControlHub) -> list[Any]:
    """Start the inputs the hub's ``[control]`` config asks for (OSC port, MIDI input port); returns them."""
    control = hub.config.control
    opened: list[Any] = []
    try:
        if control.osc_port is not None:
            opened.append(OscControlServer(hub, host=control.osc_host, port=control.osc_port))
        if control.midi_in_port:
            opened.append(MidiControlInput(hub, api=control.midi_in_api, port=control.midi_in_port))
    except BaseException:
        for server in opened:
            server.close()
        raise
    return opened
