"""Raw MIDI bytes: pure functions returning one message as ``list[int]`` (or a list of messages).

Channels are 0-based indices (MIDI channel 1 = index 0); the MPE lower zone's manager channel is index 0
and its member channels are indices 1..N.

>>> note_on(1, 60, 100)
[145, 60, 100]
>>> pitch_bend(1, semitones=0.0, bend_range_semitones=48)
[225, 0, 64]
>>> mpe_configuration_message(15)[:3]
[[176, 101, 0], [176, 100, 6], [176, 6, 15]]
"""

from __future__ import annotations

from shared.errors import ParameterError

__all__ = [
    "NOTE_OFF",
    "NOTE_ON",
    "CONTROL_CHANGE",
    "CHANNEL_PRESSURE",
    "PITCH_BEND",
    "CC_TIMBRE",
    "CC_ALL_SOUND_OFF",
    "CC_ALL_NOTES_OFF",
    "RPN_PITCH_BEND_RANGE",
    "RPN_MPE_CONFIGURATION",
    "BEND_CENTER",
    "note_on",
    "note_off",
    "pitch_bend",
    "pitch_bend_value",
    "channel_pressure",
    "control_change",
    "rpn",
    "mpe_configuration_message",
    "pitch_bend_range",
    "panic_messages",
    "message_channel",
]

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
CHANNEL_PRESSURE = 0xD0
PITCH_BEND = 0xE0

CC_DATA_ENTRY_MSB = 6
CC_DATA_ENTRY_LSB = 38
CC_TIMBRE = 74  # MPE "third dimension" (brightness / slide)
CC_RPN_LSB = 100
CC_RPN_MSB = 101
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123

RPN_PITCH_BEND_RANGE = (0, 0)
RPN_MPE_CONFIGURATION = (0, 6)
RPN_NULL = (127, 127)

BEND_CENTER = 8192
BEND_MAX = 16383


def _check_channel(channel: int) -> None:
    if not isinstance(channel, int) or not 0 <= channel <= 15:
        raise ParameterError(f"channel must be an index in 0..15, got {channel!r}")


def _check_data(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 127:
        raise ParameterError(f"{name} must be an integer in 0..127, got {value!r}")


def note_on(channel: int, pitch: int, velocity: int) -> list[int]:
    """Note-on; ``velocity`` must be 1..127 (velocity 0 would mean note-off to every receiver)."""
    _check_channel(channel)
    _check_data("pitch", pitch)
    if not isinstance(velocity, int) or not 1 <= velocity <= 127:
        raise ParameterError(f"note-on velocity must be in 1..127, got {velocity!r}")
    return [NOTE_ON | channel, pitch, velocity]


def note_off(channel: int, pitch: int, velocity: int = 0) -> list[int]:
    """A real note-off status (0x8n), release velocity ``velocity``."""
    _check_channel(channel)
    _check_data("pitch", pitch)
    _check_data("velocity", velocity)
    return [NOTE_OFF | channel, pitch, velocity]


def pitch_bend_value(*, semitones: float, bend_range_semitones: float) -> int:
    """The 14-bit bend value (0..16383, centre 8192) for ``semitones`` at ``bend_range_semitones``; clamped.

    >>> pitch_bend_value(semitones=2.0, bend_range_semitones=2)
    16383
    >>> pitch_bend_value(semitones=-48.0, bend_range_semitones=48)
    0
    """
    if not bend_range_semitones > 0:
        raise ParameterError(f"bend_range_semitones must be > 0, got {bend_range_semitones!r}")
    if semitones != semitones:  # NaN
        raise ParameterError("semitones must be a number, got NaN")
    value = BEND_CENTER + int(round(semitones / bend_range_semitones * BEND_CENTER))
    return min(BEND_MAX, max(0, value))


def pitch_bend(channel: int, *, semitones: float, bend_range_semitones: float) -> list[int]:
    """Pitch bend message (LSB first, then MSB) for an offset in semitones."""
    _check_channel(channel)
    value = pitch_bend_value(semitones=semitones, bend_range_semitones=bend_range_semitones)
    return [PITCH_BEND | channel, value & 0x7F, value >> 7]


def channel_pressure(channel: int, pressure: int) -> list[int]:
    """Channel pressure (aftertouch), MPE's per-note pressure dimension."""
    _check_channel(channel)
    _check_data("pressure", pressure)
    return [CHANNEL_PRESSURE | channel, pressure]


def control_change(channel: int, control: int, value: int) -> list[int]:
    """Control change ``control`` = ``value``."""
    _check_channel(channel)
    _check_data("control", control)
    _check_data("value", value)
    return [CONTROL_CHANGE | channel, control, value]


def rpn(channel: int, *, parameter: tuple[int, int], msb: int, lsb: int = 0) -> list[list[int]]:
    """Set registered parameter ``parameter`` = (param MSB, param LSB) to data ``msb``/``lsb``, then null the RPN.

    Sequence: CC101 param MSB, CC100 param LSB, CC6 data MSB, CC38 data LSB, CC101 127, CC100 127.
    """
    param_msb, param_lsb = parameter
    return [
        control_change(channel, CC_RPN_MSB, param_msb),
        control_change(channel, CC_RPN_LSB, param_lsb),
        control_change(channel, CC_DATA_ENTRY_MSB, msb),
        control_change(channel, CC_DATA_ENTRY_LSB, lsb),
        control_change(channel, CC_RPN_MSB, RPN_NULL[0]),
        control_change(channel, CC_RPN_LSB, RPN_NULL[1]),
    ]


def mpe_configuration_message(member_channels: int, *, manager_channel: int = 0) -> list[list[int]]:
    """MPE Configuration Message (RPN 6) for the lower zone (manager channel index 0) with ``member_channels``."""
    if manager_channel not in (0, 15):
        raise ParameterError(f"manager_channel must be 0 (lower zone) or 15 (upper zone), got {manager_channel!r}")
    if not isinstance(member_channels, int) or not 0 <= member_channels <= 15:
        raise ParameterError(f"member_channels must be in 0..15, got {member_channels!r}")
    return rpn(manager_channel, parameter=RPN_MPE_CONFIGURATION, msb=member_channels)


def pitch_bend_range(channel: int, semitones: int) -> list[list[int]]:
    """RPN 0: pitch-bend sensitivity ``semitones`` (+0 cents) on ``channel``."""
    if not isinstance(semitones, int) or not 0 <= semitones <= 127:
        raise ParameterError(f"bend range must be an integer number of semitones in 0..127, got {semitones!r}")
    return rpn(channel, parameter=RPN_PITCH_BEND_RANGE, msb=semitones)


def panic_messages() -> list[list[int]]:
    """CC123 (all notes off) then CC120 (all sound off) on each of the 16 channels."""
    out: list[list[int]] = []
    for channel in range(16):
        out.append(control_change(channel, CC_ALL_NOTES_OFF, 0))
        out.append(control_change(channel, CC_ALL_SOUND_OFF, 0))
    return out


def message_channel(message: list[int]) -> int | None:
    """Channel index of a channel-voice message, ``None`` for system messages."""
    if not message:
        raise ParameterError("empty MIDI message")
    status = message[0]
    if 0x80 <= status < 0xF0:
        return status & 0x0F
    return None
