"""The control table: every live control once — name, kind, the config setting it changes (and so its start value
and bounds, :data:`shared.config.LIVE_BOUNDS`), its OSC address, default MIDI CC / note, who applies it, help text.

Every view is derived from :data:`CONTROLS`: the OSC address map and the MIDI CC/note maps
(``services.control.state``), ``musichal --controls``, the stack's routing to the actors (:func:`calls`) and the
decision object's :meth:`~services.oracle.player.live.LiveOracle.apply_control` (which sets :attr:`Control.key` in its
config). Adding a control is one row here (plus, for a control that sets no config key, its setter in the owner).

>>> CONTROLS["density"].parse("2.5"), CONTROLS["density"].address, CONTROLS["density"].cc
(2.5, '/musichal/density', 21)
>>> calls("mute", True)
[('oracle', 'control', ('mute', True)), ('midi_out', 'set_muted', (True,))]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shared.config import LIVE_BOUNDS, VOICE_NAMES, MusicHalConfig
from shared.errors import ParameterError

__all__ = ["Control", "CONTROLS", "ALIASES", "OSC_PREFIX", "KINDS", "control", "calls", "parse_flag"]

OSC_PREFIX = "/musichal/"
KINDS = ("number", "flag", "choice", "range", "command")
_TAGS = {"number": "f", "flag": "i", "choice": "s", "range": "ii", "command": ""}


def parse_flag(value: Any, name: str) -> bool:
    """0/1, on/off, true/false → bool; anything else a one-line ParameterError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("0", "1", "on", "off", "true", "false"):
        return value.lower() in ("1", "on", "true")
    raise ParameterError(f"{name} takes 0 or 1, got {value!r}")


@dataclass(frozen=True)
class Control:
    """One row of the control table.

    Parameters
    ----------
    name : str
        The control's name (its OSC address is ``/musichal/<name>``).
    kind : str
        ``number`` (a float in the key's bounds), ``flag`` (0/1; a MIDI note toggles it), ``choice`` (one of the
        key's options, or its index when ``by_index``), ``range`` (two MIDI notes low, high) or ``command``.
    help : str
        What it does (``musichal --controls``).
    routes : tuple of str
        ``"actor.method"`` calls the stack makes for an effective change: ``control`` gets ``(name, value)``, a
        command's method nothing, any other method ``(value,)``. Empty: the control hub keeps it (learn, freeze).
    key : str, optional
        The ``section.field`` of :class:`~shared.config.MusicHalConfig` it sets: its start value and its bounds.
    start : object
        The start value of a control without a key.
    cc, note : int, optional
        Default MIDI CC / note-on number (``[control] cc_map`` / ``note_map`` override them).
    performer : bool
        False for a derived control that has no address (``learning``: learn and not freeze).
    by_index : bool
        A choice that also takes its option's index (``mode 0``).
    """

    name: str
    kind: str
    help: str
    routes: tuple[str, ...] = ("oracle.control",)
    key: str | None = None
    start: Any = None
    cc: int | None = None
    note: int | None = None
    performer: bool = True
    by_index: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError(f"control {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind in ("number", "choice") and self.key not in LIVE_BOUNDS:
            raise ParameterError(
                f"control {self.name!r}: its key {self.key!r} has no bounds in shared.config.LIVE_BOUNDS"
            )

    # ------------------------------------------------------------------ derived
    @property
    def address(self) -> str:
        return OSC_PREFIX + self.name

    @property
    def tags(self) -> str:
        """OSC type tags."""
        return "s|i" if self.by_index else _TAGS[self.kind]

    @property
    def bounds(self) -> Any:
        """``(low, high)`` of a number, the options of a choice, the least span of a range (from the config)."""
        return LIVE_BOUNDS.get(self.key, 0) if self.key is not None else None

    def initial(self, config: MusicHalConfig) -> Any:
        """The start value: the config's setting, or :attr:`start`."""
        if self.key is None:
            return self.start
        section, _, field_name = self.key.partition(".")
        value = getattr(getattr(config, section), field_name)
        return tuple(value) if self.kind == "range" else value

    # ------------------------------------------------------------------ values
    def parse(self, value: Any) -> Any:
        """The validated value (a one-line :class:`~shared.errors.ParameterError` when it is refused)."""
        name = self.name
        if self.kind == "command":
            return True
        if self.kind == "flag":
            return parse_flag(value, name)
        if self.kind == "choice":
            options = self.bounds
            if (
                self.by_index
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
                and int(value) == value
                and 0 <= value < len(options)
            ):
                value = options[int(value)]
            if value not in options:
                raise ParameterError(f"{name} must be one of {', '.join(options)}, got {value!r}")
            return value
        if self.kind == "range":
            try:
                low, high = (int(v) for v in value)
            except (TypeError, ValueError):
                raise ParameterError(f"{name} takes two MIDI notes (low, high), got {value!r}") from None
            span = self.bounds
            if not 0 <= low <= high <= 127 or high - low < span:
                raise ParameterError(
                    f"{name} must be low <= high in 0..127"
                    + (f", at least {span} semitones apart" if span else "")
                    + f", got {value!r}"
                )
            return (low, high)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} takes a number, got {value!r}") from None
        low, high = self.bounds
        if not low <= number <= high:
            raise ParameterError(f"{name} must be in {low:g}..{high:g}, got {number}")
        return number

    def from_cc(self, value: int) -> Any:
        """A CC value 0..127 as this control's value (numbers scaled over the bounds, choices split in equal parts,
        flags and commands on at >= 64; None for a command below 64)."""
        if self.kind == "number":
            low, high = self.bounds
            return round(low + (high - low) * value / 127.0, 4)
        if self.kind == "choice":
            options = self.bounds
            return options[min(len(options) - 1, value * len(options) // 128)]
        if self.kind == "command":
            return True if value >= 64 else None
        if self.kind == "flag":
            return value >= 64
        raise ParameterError(f"{self.name} cannot take a MIDI CC")

    def cc_text(self) -> str:
        """How a CC maps onto this control (``musichal --controls``)."""
        if self.kind == "number":
            low, high = self.bounds
            return f"0..127 -> {low:g}..{high:g}"
        if self.kind == "choice":
            options = self.bounds
            edges = [-(-i * 128 // len(options)) for i in range(len(options) + 1)]
            return ", ".join(f"{edges[i]}-{edges[i + 1] - 1} {o}" for i, o in enumerate(options))
        return ">= 64 on, < 64 off"

    def set_in(self, config: MusicHalConfig, value: Any) -> MusicHalConfig:
        """``config`` with :attr:`key` set to ``value`` (validated by the config section as well)."""
        if self.key is None:
            raise ParameterError(f"control {self.name!r} sets no config key")
        section, _, field_name = self.key.partition(".")
        return replace(config, **{section: replace(getattr(config, section), **{field_name: value})})


def _rows() -> list[Control]:
    rows = [
        Control("mode", "choice", "imitate, contrast, lead (or 0, 1, 2)", key="generation.mode", cc=22, by_index=True),
        Control("continuity", "number", "forward-step probability 0..1", key="generation.continuity", cc=20),
        Control("density", "number", "note density 0..4 (0 = silence)", key="generation.density", cc=21),
        Control(
            "mute",
            "flag",
            "1 = drop new notes and silence sounding ones, 0 = play",
            routes=("oracle.control", "midi_out.set_muted"),
            start=False,
            note=36,
        ),
        Control("learn", "flag", "1 = learn live input, 0 = stop learning", routes=(), start=True, cc=64),
        Control(
            "freeze",
            "flag",
            "1 = learning frozen, keep playing (overrides learn)",
            routes=(),
            start=False,
            cc=65,
            note=38,
        ),
        Control(
            "gate", "flag", "1 = input gate on: ignore input while own notes sound", key="control.input_gate", cc=66
        ),
        Control(
            "profile",
            "choice",
            "mpe, gm-safe, mono (panic + the new profile's setup)",
            key="midi.profile",
            routes=("oracle.control", "midi_out.set_profile"),
            cc=23,
        ),
        Control("tempo", "number", "speed factor on the learned time 0.25..4 (next step)", key="generation.tempo"),
        Control(
            "wait",
            "flag",
            "1 = imitate/contrast stop once you rest, 0 = play on through your rests",
            key="generation.wait_for_input",
        ),
        Control(
            "beat",
            "flag",
            "1 = steps fall on the tracked beat of the input, 0 = learned time alone",
            key="generation.beat_aligned",
        ),
        Control("panic", "command", "all notes off now", routes=("midi_out.panic",), note=37),
        Control(
            "save",
            "command",
            "checkpoint the learned memory now (--save-learned)",
            routes=("oracle.checkpoint",),
            note=39,
        ),
    ]
    rows += [
        Control(f"voice/{v}/on", "flag", f"1 = the {v} voice plays, 0 = it rests", key=f"voices.{v}", cc=24 + i)
        for i, v in enumerate(VOICE_NAMES)
    ]
    rows += [
        Control(
            f"voice/{v}/range",
            "range",
            f"the {v}'s lowest and highest MIDI note",
            key="generation.melody_range" if v == "melody" else f"voices.{v}_range",
        )
        for v in VOICE_NAMES
    ]
    rows += [
        Control(
            f"voice/{v}/density", "number", f"{v} onsets per melody step 0..2", key=f"voices.{v}_density", cc=27 + i
        )
        for i, v in enumerate(v for v in VOICE_NAMES if v != "melody")
    ]
    rows.append(Control("learning", "flag", "learn live input (learn on and not frozen)", start=True, performer=False))
    return rows


#: name → row, in the order ``musichal --controls`` lists them
CONTROLS: dict[str, Control] = {row.name: row for row in _rows()}
#: older names still accepted (session logs written before the table)
ALIASES: dict[str, str] = {"range": "voice/melody/range"}


def control(name: str) -> Control:
    """The row of ``name`` (or of its alias); a one-line ParameterError for an unknown name."""
    row = CONTROLS.get(ALIASES.get(name, name))
    if row is None:
        raise ParameterError(f"unknown control {name!r}; known: {', '.join(CONTROLS)}")
    return row


def calls(name: str, value: Any) -> list[tuple[str, str, tuple]]:
    """The actor calls ``(actor, method, args)`` that apply an effective change (the stack makes them in order)."""
    row = control(name)
    out = []
    for route in row.routes:
        actor, _, method = route.partition(".")
        args = () if row.kind == "command" else ((row.name, value) if method == "control" else (value,))
        out.append((actor, method, args))
    return out
