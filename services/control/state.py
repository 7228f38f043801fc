"""Performer controls, pure logic: the control state, the OSC address map and the MIDI CC/note map.

Every control change is a :class:`ControlChange` ``(name, value)``; :class:`ControlState` validates it and
returns what changed. The servers (``services.control.servers``) only translate OSC messages and MIDI
messages into changes; the live stack (services/stack.py) applies them to the actors.

OSC (UDP, ``control.osc_host``:``control.osc_port``, 127.0.0.1 by default)
--------------------------------------------------------------------------
=========================  ====  =======================================================
address                    args  effect
=========================  ====  =======================================================
``/musichal/mode``         s|i   imitate, contrast, lead (or 0, 1, 2)
``/musichal/continuity``   f     forward-step probability 0..1
``/musichal/density``      f     note density 0..4 (0 = silence)
``/musichal/mute``         i     1 = drop new notes and silence sounding ones, 0 = play
``/musichal/learn``        i     1 = learn live input, 0 = stop learning
``/musichal/freeze``       i     1 = learning frozen, keep playing (overrides learn)
``/musichal/gate``         i     1 = input gate on (ignore input while own notes sound)
``/musichal/profile``      s     mpe, gm-safe, mono (panic + the new profile's setup)
``/musichal/tempo``        f     speed factor on the learned time 0.25..4 (next step)
``/musichal/wait``         i     1 = imitate/contrast stop once you rest, 0 = play on through your rests
``/musichal/beat``         i     1 = steps fall on the tracked beat of the input, 0 = learned time alone
``/musichal/panic``              all notes off now
``/musichal/save``               checkpoint the learned memory now (``--save-learned``)
=========================  ====  =======================================================

Voices (``<voice>`` = ``melody``, ``bass`` or ``comping``; ``[voices]`` in the config has their starting values):

====================================  ====  =============================================================
address                               args  effect
====================================  ====  =============================================================
``/musichal/voice/<voice>/on``        i     1 = the voice plays, 0 = it rests
``/musichal/voice/<voice>/range``     ii    its lowest and highest MIDI note (the melody's: its range)
``/musichal/voice/<voice>/density``   f     bass and comping: onsets per melody step 0..2 (the melody's
                                            is ``/musichal/density``)
====================================  ====  =============================================================

MIDI controller (``control.midi_in_port``; numbers overridable with ``control.cc_map`` / ``control.note_map``)
--------------------------------------------------------------------------------------------------------------
CC20 continuity (0..127 → 0..1), CC21 density (0..127 → 0..4), CC22 mode (0-42 imitate, 43-85 contrast,
86-127 lead), CC23 profile (0-42 mpe, 43-85 gm-safe, 86-127 mono), CC64 learn (>= 64 on), CC65 freeze
(>= 64 on), CC66 input gate (>= 64 on), CC24/CC25/CC26 melody/bass/comping on (>= 64 on), CC27/CC28 bass/comping
density (0..127 → 0..2); note-on 36 mute toggle, 37 panic, 38 freeze toggle, 39 save.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from shared.config import GENERATION_MODES, MIDI_PROFILES, VOICE_NAMES, MusicHalConfig
from shared.errors import ParameterError

__all__ = ["ControlChange", "ControlState", "OSC_MAP", "DEFAULT_CC_MAP", "DEFAULT_NOTE_MAP", "COMMANDS",
           "osc_to_change", "midi_to_change", "controls_text", "OSC_PREFIX"]

OSC_PREFIX = "/musichal/"
COMMANDS = ("panic", "save")

#: name → (OSC type tags, description)
OSC_MAP: dict[str, tuple[str, str]] = {
    "mode": ("s|i", "imitate, contrast, lead (or 0, 1, 2)"),
    "continuity": ("f", "forward-step probability 0..1"),
    "density": ("f", "note density 0..4 (0 = silence)"),
    "mute": ("i", "1 = drop new notes and silence sounding ones, 0 = play"),
    "learn": ("i", "1 = learn live input, 0 = stop learning"),
    "freeze": ("i", "1 = learning frozen, keep playing (overrides learn)"),
    "gate": ("i", "1 = input gate on: ignore input while own notes sound"),
    "profile": ("s", "mpe, gm-safe, mono (panic + the new profile's setup)"),
    "tempo": ("f", "speed factor on the learned time 0.25..4 (next step)"),
    "wait": ("i", "1 = imitate/contrast stop once you rest, 0 = play on through your rests"),
    "beat": ("i", "1 = steps fall on the tracked beat of the input, 0 = learned time alone"),
    "panic": ("", "all notes off now"),
    "save": ("", "checkpoint the learned memory now (--save-learned)"),
    **{f"voice/{v}/on": ("i", f"1 = the {v} voice plays, 0 = it rests") for v in VOICE_NAMES},
    **{f"voice/{v}/range": ("ii", f"the {v}'s lowest and highest MIDI note") for v in VOICE_NAMES},
    **{f"voice/{v}/density": ("f", f"{v} onsets per melody step 0..2") for v in VOICE_NAMES if v != "melody"},
}

DEFAULT_CC_MAP: dict[str, int] = {"continuity": 20, "density": 21, "mode": 22, "profile": 23, "learn": 64, "freeze": 65,
                                  "gate": 66, "voice/melody/on": 24, "voice/bass/on": 25, "voice/comping/on": 26,
                                  "voice/bass/density": 27, "voice/comping/density": 28}
DEFAULT_NOTE_MAP: dict[str, int] = {"mute": 36, "panic": 37, "freeze": 38, "save": 39}
_TOGGLES = ("mute", "learn", "freeze", "gate", "wait", "beat")


@dataclass(frozen=True)
class ControlChange:
    """One control change: a setting (``name``, ``value``), a toggle (``value=None``) or a command."""

    name: str
    value: Any = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.name not in OSC_MAP:
            raise ParameterError(f"unknown control {self.name!r}; known: {', '.join(OSC_MAP)}")


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("0", "1", "on", "off", "true", "false"):
        return value.lower() in ("1", "on", "true")
    raise ParameterError(f"{name} takes 0 or 1, got {value!r}")


class ControlState:
    """What the performer has set; validated, with the effective learning flag.

    Parameters
    ----------
    config : MusicHalConfig
        Initial values: generation mode/continuity/density, midi profile, control.input_gate.
    """

    def __init__(self, config: MusicHalConfig) -> None:
        if not isinstance(config, MusicHalConfig):
            raise ParameterError("config must be a shared.config.MusicHalConfig")
        self.mode = config.generation.mode
        self.continuity = float(config.generation.continuity)
        self.density = float(config.generation.density)
        self.profile = config.midi.profile
        self.mute = False
        self.learn = True
        self.freeze = False
        self.gate = bool(config.control.input_gate)
        self.tempo = float(config.generation.tempo)
        self.wait = bool(config.generation.wait_for_input)
        self.beat = bool(config.generation.beat_aligned)
        v = config.voices
        self.voices = {"melody": {"on": v.melody, "range": tuple(config.generation.melody_range)},
                       "bass": {"on": v.bass, "range": tuple(v.bass_range), "density": float(v.bass_density)},
                       "comping": {"on": v.comping, "range": tuple(v.comping_range), "density": float(v.comping_density)}}
        self.changes = 0

    @property
    def learning(self) -> bool:
        """Effective learning: on, and not frozen."""
        return self.learn and not self.freeze

    def apply(self, change: ControlChange) -> dict[str, Any]:
        """Validate and apply ``change``; returns ``{name: new value}`` (``{}`` for no change, commands echo)."""
        if not isinstance(change, ControlChange):
            raise ParameterError("apply() takes a ControlChange")
        name, value = change.name, change.value
        if name in COMMANDS:
            self.changes += 1
            return {name: True}
        if name.startswith("voice/"):
            return self._apply_voice(name, value)
        if name in _TOGGLES:
            new = (not getattr(self, name)) if value is None else _flag(value, name)
        elif name == "mode":
            if isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) == value and 0 <= value < 3:
                value = GENERATION_MODES[int(value)]
            if value not in GENERATION_MODES:
                raise ParameterError(f"mode must be one of {', '.join(GENERATION_MODES)}, got {value!r}")
            new = value
        elif name == "profile":
            if value not in MIDI_PROFILES:
                raise ParameterError(f"profile must be one of {', '.join(MIDI_PROFILES)}, got {value!r}")
            new = value
        else:  # continuity, density, tempo
            try:
                new = float(value)
            except (TypeError, ValueError):
                raise ParameterError(f"{name} takes a number, got {value!r}") from None
            low, high = {"continuity": (0.0, 1.0), "density": (0.0, 4.0), "tempo": (0.25, 4.0)}[name]
            if not low <= new <= high:
                raise ParameterError(f"{name} must be in {low:g}..{high:g}, got {new}")
        if getattr(self, name) == new:
            return {}
        setattr(self, name, new)
        self.changes += 1
        return {name: new}

    def _apply_voice(self, name: str, value: Any) -> dict[str, Any]:
        _, voice, setting = name.split("/")
        current = self.voices[voice]
        if setting == "on":
            new = (not current["on"]) if value is None else _flag(value, name)
        elif setting == "range":
            try:
                low, high = (int(v) for v in value)
            except (TypeError, ValueError):
                raise ParameterError(f"{name} takes two MIDI notes (low, high), got {value!r}") from None
            if not 0 <= low <= high <= 127 or (voice != "melody" and high - low < 11):
                raise ParameterError(f"{name} must be low <= high in 0..127"
                                     + ("" if voice == "melody" else ", at least 11 semitones apart") + f", got {value!r}")
            new = (low, high)
        else:
            try:
                new = float(value)
            except (TypeError, ValueError):
                raise ParameterError(f"{name} takes a number, got {value!r}") from None
            if not 0.0 <= new <= 2.0:
                raise ParameterError(f"{name} must be in 0..2, got {new}")
        if current[setting] == new:
            return {}
        current[setting] = new
        self.changes += 1
        return {name: new}

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "continuity": self.continuity, "density": self.density, "mute": self.mute,
                "learn": self.learn, "freeze": self.freeze, "learning": self.learning, "gate": self.gate,
                "profile": self.profile, "tempo": self.tempo, "wait": self.wait, "beat": self.beat,
                "voices": {v: dict(s, range=list(s["range"])) for v, s in self.voices.items()}}

    def summary(self) -> str:
        """Short form for the status line."""
        flags = [flag for flag, on in (("MUTE", self.mute), ("FROZEN", self.freeze), ("no-learn", not self.learn),
                                       ("gate", self.gate)) if on]
        voices = "+".join(v[0].upper() for v, s in self.voices.items() if s["on"]) or "silent"
        return f"{self.mode} c={self.continuity:.2f} d={self.density:.2f} {voices} {self.profile}" + (
            " " + " ".join(flags) if flags else "")


def osc_to_change(address: str, args: tuple | list = ()) -> ControlChange:
    """Translate one OSC message (``/musichal/density 0.5``) into a :class:`ControlChange`."""
    if not isinstance(address, str) or not address.startswith(OSC_PREFIX):
        raise ParameterError(f"OSC address must start with {OSC_PREFIX}, got {address!r}")
    name = address[len(OSC_PREFIX):]
    if name not in OSC_MAP:
        raise ParameterError(f"unknown OSC address {address!r}; see musichal --controls")
    args = list(args)
    if name in COMMANDS:
        return ControlChange(name, True, source="osc")
    if name.endswith("/range"):
        if len(args) != 2:
            raise ParameterError(f"{address} takes two arguments (low, high), got {len(args)}")
        return ControlChange(name, tuple(args), source="osc")
    if len(args) != 1:
        raise ParameterError(f"{address} takes one argument, got {len(args)}")
    return ControlChange(name, args[0], source="osc")


def _select(value: int, options: tuple[str, ...]) -> str:
    return options[min(len(options) - 1, value * len(options) // 128)]


def midi_to_change(message: list[int] | tuple[int, ...], *, cc_map: Optional[Mapping[str, int]] = None,
                   note_map: Optional[Mapping[str, int]] = None, channel: Optional[int] = None) -> Optional[ControlChange]:
    """Translate one raw MIDI message into a :class:`ControlChange`, or ``None`` when it maps to nothing.

    ``cc_map``/``note_map`` are merged over :data:`DEFAULT_CC_MAP`/:data:`DEFAULT_NOTE_MAP`; ``channel`` (0..15)
    filters the input channel.
    """
    if len(message) < 3:
        return None
    status, number, value = int(message[0]), int(message[1]), int(message[2])
    kind, msg_channel = status & 0xF0, status & 0x0F
    if channel is not None and msg_channel != channel:
        return None
    if kind == 0xB0:
        ccs = {**DEFAULT_CC_MAP, **dict(cc_map or {})}
        for name, cc in ccs.items():
            if cc != number:
                continue
            if name == "continuity":
                return ControlChange(name, round(value / 127.0, 4), source="midi")
            if name == "density":
                return ControlChange(name, round(4.0 * value / 127.0, 4), source="midi")
            if name.startswith("voice/") and name.endswith("/density"):
                return ControlChange(name, round(2.0 * value / 127.0, 4), source="midi")
            if name.startswith("voice/") and name.endswith("/on"):
                return ControlChange(name, value >= 64, source="midi")
            if name == "mode":
                return ControlChange(name, _select(value, GENERATION_MODES), source="midi")
            if name == "profile":
                return ControlChange(name, _select(value, MIDI_PROFILES), source="midi")
            if name in _TOGGLES:
                return ControlChange(name, value >= 64, source="midi")
            if name in COMMANDS and value >= 64:
                return ControlChange(name, True, source="midi")
        return None
    if kind == 0x90 and value > 0:
        notes = {**DEFAULT_NOTE_MAP, **dict(note_map or {})}
        for name, note in notes.items():
            if note == number:
                return ControlChange(name, True if name in COMMANDS else None, source="midi")  # toggles flip
    return None


def controls_text(config: MusicHalConfig) -> str:
    """The address and CC/note map as printed by ``musichal --controls`` (with this config's overrides)."""
    control = config.control
    lines = ["OSC (UDP " + (f"{control.osc_host}:{control.osc_port}" if control.osc_port is not None
                             else f"{control.osc_host}, enable with --osc-port or [control] osc_port") + ")"]
    for name, (tags, text) in OSC_MAP.items():
        lines.append(f"  {OSC_PREFIX + name:31s} {tags or '-':4s} {text}")
    port = control.midi_in_port or "off (enable with --midi-in or [control] midi_in_port)"
    lines.append(f"MIDI controller input: {port}"
                 + (f", channel {control.midi_in_channel + 1}" if control.midi_in_channel is not None else ", any channel"))
    ccs = {**DEFAULT_CC_MAP, **control.cc_map}
    notes = {**DEFAULT_NOTE_MAP, **control.note_map}
    ranges = {"continuity": "0..127 -> 0..1", "density": "0..127 -> 0..4", "voice/bass/density": "0..127 -> 0..2",
              "voice/comping/density": "0..127 -> 0..2",
              "mode": "0-42 imitate, 43-85 contrast, 86-127 lead", "profile": "0-42 mpe, 43-85 gm-safe, 86-127 mono"}
    for name, cc in sorted(ccs.items(), key=lambda item: item[1]):
        lines.append(f"  CC{cc:<3d} {name:21s} {ranges.get(name, '>= 64 on, < 64 off')}")
    for name, note in sorted(notes.items(), key=lambda item: item[1]):
        lines.append(f"  note {note:<3d} {name:9s} {'command' if name in COMMANDS else 'toggle'}")
    gate = {None: "auto (on for a device input, off for --input-file)", True: "on", False: "off"}[control.input_gate]
    lines.append(f"input gate: {gate} (note-on - {control.gate_pre_ms:g} ms .. "
                 f"note-off + {control.gate_release_ms:g} ms)")
    return "\n".join(lines)
