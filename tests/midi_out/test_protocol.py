"""Raw MIDI bytes, checked against values written out from the MIDI 1.0 and MPE specs."""

from __future__ import annotations

import pytest

from services.midi_out import protocol
from shared.errors import ParameterError
from testkit.midi import expected_panic, expected_rpn


def test_channel_voice_messages():
    assert protocol.note_on(1, 60, 100) == [0x91, 60, 100]
    assert protocol.note_off(15, 127) == [0x8F, 127, 0]
    assert protocol.channel_pressure(3, 77) == [0xD3, 77]
    assert protocol.control_change(0, 74, 64) == [0xB0, 74, 64]


@pytest.mark.parametrize(
    "semitones, bend_range, expected",
    [
        (0.0, 48, [0xE1, 0x00, 0x40]),  # centre 8192
        (48.0, 48, [0xE1, 0x7F, 0x7F]),  # top 16383
        (-48.0, 48, [0xE1, 0x00, 0x00]),  # bottom 0
        (1.0, 2, [0xE1, 0x00, 0x60]),  # 8192 + 4096 = 12288 = 0x3000
        (-0.5, 2, [0xE1, 0x00, 0x30]),  # 8192 - 2048 = 6144 = 0x1800
        (1.5, 48, [0xE1, 0x00, 0x42]),  # 8192 + 256 = 8448 = 0x2100
        (0.01, 48, [0xE1, 0x02, 0x40]),  # 8192 + 2 = 8194
        (5.0, 2, [0xE1, 0x7F, 0x7F]),  # clamped
    ],
)
def test_pitch_bend_14_bit(semitones, bend_range, expected):
    assert protocol.pitch_bend(1, semitones=semitones, bend_range_semitones=bend_range) == expected


def test_mcm_is_rpn_6_on_manager_channel():
    assert protocol.mpe_configuration_message(15) == expected_rpn(0, 6, 15)
    assert protocol.mpe_configuration_message(7) == expected_rpn(0, 6, 7)


def test_pitch_bend_range_is_rpn_0():
    assert protocol.pitch_bend_range(4, 48) == expected_rpn(4, 0, 48)
    assert protocol.pitch_bend_range(1, 2) == expected_rpn(1, 0, 2)


def test_panic_covers_all_channels():
    assert protocol.panic_messages() == expected_panic()


@pytest.mark.parametrize(
    "call",
    [
        lambda: protocol.note_on(16, 60, 100),
        lambda: protocol.note_on(0, 128, 100),
        lambda: protocol.note_on(0, 60, 0),
        lambda: protocol.note_off(-1, 60),
        lambda: protocol.pitch_bend(0, semitones=1.0, bend_range_semitones=0),
        lambda: protocol.pitch_bend(0, semitones=float("nan"), bend_range_semitones=2),
        lambda: protocol.channel_pressure(0, 200),
        lambda: protocol.mpe_configuration_message(16),
        lambda: protocol.mpe_configuration_message(15, manager_channel=3),
        lambda: protocol.pitch_bend_range(0, 200),
        lambda: protocol.message_channel([]),
    ],
)
def test_bad_values_raise(call):
    with pytest.raises(ParameterError):
        call()
