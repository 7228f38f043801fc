"""Performer controls, pure logic: the control state, the OSC address map and the MIDI CC/note map.

All of them are views of the one control table, :data:`shared.controls.CONTROLS` (name, kind, config key and
so bounds, OSC address, MIDI CC/note, owner, help). Every control change is a :class:`ControlChange`
``(name, value)``; :class:`ControlState` validates it by its row and returns what changed; a refused change
is kept with its reason (:attr:`ControlState.refusals`, the last :data:`REFUSALS_KEPT`). The servers
(``services.control.servers``) only translate OSC messages and MIDI messages into changes; the live stack
(services/stack.py) applies them to the actors.

OSC (UDP, ``control.osc_host``:``control.osc_port``, 127.0.0.1 by default): ``/musichal/<name>`` with the row's
type tags; MIDI controller (``control.midi_in_port``): the rows' CC and note numbers, overridable with
``control.cc_map`` / ``control.note_map``. ``musichal --controls`` prints both maps (:func:`controls_text`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import MusicHalConfig
from shared.controls import CONTROLS, OSC_PREFIX, control
from shared.errors import ParameterError

__all__ = [
    "ControlChange",
    "ControlState",
    "osc_map",
    "cc_map",
    "note_map",
    "commands",
    "osc_to_change",
    "midi_to_change",
    "controls_text",
    "OSC_PREFIX",
    "REFUSALS_KEPT",
]

#: refused changes kept for a UI (the oldest drop out)
REFUSALS_KEPT = 32


def osc_map() -> dict[str, tuple[str, str]]:
    """name → (OSC type tags, help), for every control with an address."""
    return {row.name: (row.tags, row.help) for row in CONTROLS.values() if row.performer}


def cc_map(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """name → MIDI CC number: the table's defaults, then ``overrides`` (``[control] cc_map``)."""
    return {**{row.name: row.cc for row in CONTROLS.values() if row.cc is not None}, **dict(overrides or {})}


def note_map(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """name → MIDI note number (note-on toggles a flag or runs a command), then ``overrides``."""
    return {**{row.name: row.note for row in CONTROLS.values() if row.note is not None}, **dict(overrides or {})}


def commands() -> tuple[str, ...]:
    return tuple(row.name for row in CONTROLS.values() if row.kind == "command")


@dataclass(frozen=True)
class ControlChange:
    """One control change: a setting (``name``, ``value``), a toggle (``value=None``) or a command."""

    name: str
    value: Any = None
    source: str = ""

    def __post_init__(self) -> None:
        row = CONTROLS.get(self.name)
        if row is None or not row.performer:
            raise ParameterError(f"unknown control {self.name!r}; known: {', '.join(osc_map())}")


class ControlState:
    """What the performer has set (one value per control of the table), validated, with the effective learning
    flag and the recent refusals.

    Parameters
    ----------
    config : MusicHalConfig
        Start values: each control's config key (generation, voices, midi.profile, control.input_gate).
    """

    def __init__(self, config: MusicHalConfig) -> None:
        if not isinstance(config, MusicHalConfig):
            raise ParameterError("config must be a shared.config.MusicHalConfig")
        self.values: dict[str, Any] = {
            row.name: row.initial(config) for row in CONTROLS.values() if row.performer and row.kind != "command"
        }
        self.values["gate"] = bool(self.values.get("gate"))
        self.changes = 0
        self.refusals: deque[dict[str, Any]] = deque(maxlen=REFUSALS_KEPT)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def learning(self) -> bool:
        """Effective learning: on, and not frozen."""
        return bool(self.values["learn"] and not self.values["freeze"])

    def refuse(self, what: str, value: Any, source: str, reason: str) -> None:
        """Keep a refused change (its control or address, value, source and the reason) for a UI."""
        self.refusals.append(
            {"t": time.monotonic(), "control": what, "value": value, "source": source, "reason": reason}
        )

    def apply(self, change: ControlChange) -> dict[str, Any]:
        """Validate and apply ``change``; returns ``{name: new value}`` (``{}`` for no change, commands echo)."""
        if not isinstance(change, ControlChange):
            raise ParameterError("apply() takes a ControlChange")
        row = control(change.name)
        if row.kind == "command":
            self.changes += 1
            return {row.name: True}
        if row.kind == "flag" and change.value is None:
            new = not self.values[row.name]
        else:
            new = row.parse(change.value)
        if self.values[row.name] == new:
            return {}
        self.values[row.name] = new
        self.changes += 1
        return {row.name: new}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        voices: dict[str, dict[str, Any]] = {}
        for name, value in self.values.items():
            value = list(value) if isinstance(value, tuple) else value
            if name.startswith("voice/"):
                _, voice, setting = name.split("/")
                voices.setdefault(voice, {})[setting] = value
            else:
                out[name] = value
        out["learning"] = self.learning
        out["voices"] = voices
        out["refusals"] = list(self.refusals)
        return out

    def summary(self) -> str:
        """Short form for the status line."""
        v = self.values
        flags = [
            flag
            for flag, on in (
                ("MUTE", v["mute"]),
                ("FROZEN", v["freeze"]),
                ("no-learn", not v["learn"]),
                ("gate", v["gate"]),
            )
            if on
        ]
        voices = (
            "+".join(name[0].upper() for name in ("melody", "bass", "comping") if v[f"voice/{name}/on"]) or "silent"
        )
        return f"{v['mode']} c={v['continuity']:.2f} d={v['density']:.2f} {voices} {v['profile']}" + (
            " " + " ".join(flags) if flags else ""
        )


def osc_to_change(address: str, args: tuple | list = ()) -> ControlChange:
    """Translate one OSC message (``/musichal/density 0.5``) into a :class:`ControlChange`."""
    if not isinstance(address, str) or not address.startswith(OSC_PREFIX):
        raise ParameterError(f"OSC address must start with {OSC_PREFIX}, got {address!r}")
    row = CONTROLS.get(address[len(OSC_PREFIX) :])
    if row is None or not row.performer:
        raise ParameterError(f"unknown OSC address {address!r}; see musichal --controls")
    args = list(args)
    if row.kind == "command":
        return ControlChange(row.name, True, source="osc")
    if row.kind == "range":
        if len(args) != 2:
            raise ParameterError(f"{address} takes two arguments (low, high), got {len(args)}")
        return ControlChange(row.name, tuple(args), source="osc")
    if len(args) != 1:
        raise ParameterError(f"{address} takes one argument, got {len(args)}")
    return ControlChange(row.name, args[0], source="osc")


def midi_to_change(
    message: list[int] | tuple[int, ...],
    *,
    cc_map: Mapping[str, int] | None = None,
    note_map: Mapping[str, int] | None = None,
    channel: int | None = None,
) -> ControlChange | None:
    """Translate one raw MIDI message into a :class:`ControlChange`, or ``None`` when it maps to nothing.

    ``cc_map``/``note_map`` are merged over the table's defaults; ``channel`` (0..15) filters the input channel.
    """
    if len(message) < 3:
        return None
    status, number, value = int(message[0]), int(message[1]), int(message[2])
    kind, msg_channel = status & 0xF0, status & 0x0F
    if channel is not None and msg_channel != channel:
        return None
    if kind == 0xB0:
        for name, cc in _cc_map(cc_map).items():
            row = CONTROLS.get(name)
            if cc != number or row is None or not row.performer or row.kind == "range":
                continue
            scaled = row.from_cc(value)
            return None if scaled is None else ControlChange(name, scaled, source="midi")
        return None
    if kind == 0x90 and value > 0:
        for name, note in _note_map(note_map).items():
            row = CONTROLS.get(name)
            if note == number and row is not None and row.kind in ("flag", "command"):
                return ControlChange(name, True if row.kind == "command" else None, source="midi")  # toggles flip
    return None


_cc_map, _note_map = cc_map, note_map


def controls_text(config: MusicHalConfig) -> str:
    """The address and CC/note map as printed by ``musichal --controls`` (with this config's overrides)."""
    cfg = config.control
    lines = [
        "OSC (UDP "
        + (
            f"{cfg.osc_host}:{cfg.osc_port}"
            if cfg.osc_port is not None
            else f"{cfg.osc_host}, enable with --osc-port or [control] osc_port"
        )
        + ")"
    ]
    for name, (tags, text) in osc_map().items():
        lines.append(f"  {OSC_PREFIX + name:31s} {tags or '-':4s} {text}")
    port = cfg.midi_in_port or "off (enable with --midi-in or [control] midi_in_port)"
    lines.append(
        f"MIDI controller input: {port}"
        + (f", channel {cfg.midi_in_channel + 1}" if cfg.midi_in_channel is not None else ", any channel")
    )
    for name, cc in sorted(cc_map(cfg.cc_map).items(), key=lambda item: item[1]):
        row = CONTROLS.get(name)
        lines.append(f"  CC{cc:<3d} {name:21s} {row.cc_text() if row is not None else '(unknown control)'}")
    for name, note in sorted(note_map(cfg.note_map).items(), key=lambda item: item[1]):
        row = CONTROLS.get(name)
        kind = "command" if row is not None and row.kind == "command" else "toggle"
        lines.append(f"  note {note:<3d} {name:9s} {kind}")
    gate = {None: "auto (on for a device input, off for --input-file)", True: "on", False: "off"}[cfg.input_gate]
    lines.append(f"input gate: {gate} (note-on - {cfg.gate_pre_ms:g} ms .. note-off + {cfg.gate_release_ms:g} ms)")
    return "\n".join(lines)
