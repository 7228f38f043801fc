"""Helpers behind ``musichal --list-midi``, ``musichal --panic`` and ``musichal replay --midi-port`` (called from
launch.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from services.midi_out import protocol
from services.midi_out.ports import compiled_api_names, list_output_ports, open_output, resolve_api
from shared.config import MIDI_APIS
from shared.errors import MidiPortError

__all__ = ["list_midi_ports_text", "panic_port", "play_events"]


def list_midi_ports_text(api: str = "auto") -> str:
    """Human-readable list of MIDI outputs: for ``auto`` every available API, else the one asked for."""
    apis = compiled_api_names() if api == "auto" else [resolve_api(api)]
    default = None
    try:
        default = resolve_api("auto")
    except MidiPortError:
        pass
    lines: list[str] = []
    for name in apis:
        marker = " (default)" if name == default else ""
        try:
            ports = list_output_ports(name)
        except MidiPortError as error:
            lines.append(f"{name}{marker}: unavailable ({error})")
            continue
        lines.append(f"{name}{marker}: {len(ports)} output port(s)")
        lines += [f"  [{index}] {port}" for index, port in enumerate(ports)]
    if not lines:
        lines.append(f"no MIDI API available (known: {', '.join(MIDI_APIS[1:])})")
    lines.append("without --midi-port MusicHal creates a virtual output named 'MusicHal'")
    return "\n".join(lines)


def _check_delivered(output, what: str) -> None:
    """After ``output.close()``: a JACK output knows what a JACK cycle delivered; anything missing is an error."""
    lost = getattr(output, "sent", 0) - getattr(output, "delivered", getattr(output, "sent", 0))
    if lost:
        raise MidiPortError(f"{what}: {lost} of {output.sent} MIDI messages did not reach {output.port_name!r}")


def panic_port(api: str = "auto", port: str | int | None = None) -> int:
    """Send CC123 + CC120 on all 16 channels to ``port`` (a virtual port when None); returns messages delivered.

    Returns once they are out (on JACK: a cycle ran with them); raises MidiPortError when they could not be."""
    messages = protocol.panic_messages()
    output = open_output(api, port, virtual_name="MusicHal-panic", client_name="MusicHal-panic")
    try:
        for message in messages:
            output.send(message)
    finally:
        output.close()
    _check_delivered(output, "panic")
    return len(messages)


def play_events(api: str, port_name: str | int, events: Sequence[tuple[float, Any]]) -> None:
    """Send ``(seconds, message)`` events to an output port at their own pace (``musichal replay --midi-port``);
    returns once the last one is out (raises MidiPortError when some could not be delivered)."""
    port = open_output(api, port_name)
    try:
        start = time.monotonic() - (events[0][0] if events else 0.0)
        for stamp, message in events:
            time.sleep(max(0.0, start + stamp - time.monotonic()))
            port.send(message)
    finally:
        port.close()
    _check_delivered(port, "replay")
