"""The python-rtmidi port layer on JACK: open by name/substring/index, virtual ports, one-line errors, panic."""

from __future__ import annotations

import threading

import pytest

from services.midi_out.cli import list_midi_ports_text, panic_port
from services.midi_out.ports import list_output_ports, open_input, open_output, resolve_api
from shared.errors import MidiPortError, ParameterError
from testkit.midi import JackReader, expected_panic, unique_name

pytestmark = pytest.mark.jack


@pytest.fixture
def jack_input(jack_server):
    """A JACK MIDI input port that our outputs can open."""
    reader = JackReader(unique_name("mh-synth"))
    port_name = reader.open_virtual("midi_in")
    try:
        yield reader, port_name
    finally:
        reader.close()


def test_auto_picks_jack_when_server_runs(jack_server):
    assert resolve_api("auto") == "jack"


def test_lists_and_opens_by_name_substring_and_index(jack_input):
    reader, port_name = jack_input
    ports = list_output_ports("jack")
    assert port_name in ports
    for selector in (port_name, reader.client_name.upper(), ports.index(port_name), str(ports.index(port_name))):
        reader.clear()
        with open_output("jack", selector, client_name=unique_name("mh-out")) as output:
            assert output.port_name == port_name and not output.is_virtual
            output.send([0x90, 60, 100])
            assert reader.wait_for(1) == [[0x90, 60, 100]]
        assert output.closed
        output.close()  # idempotent


def test_missing_port_is_one_clear_line(jack_input):
    _reader, port_name = jack_input
    with pytest.raises(MidiPortError) as info:
        open_output("jack", "no-such-synth-xyz")
    message = str(info.value)
    assert "\n" not in message and "no-such-synth-xyz" in message and port_name in message
    with pytest.raises(MidiPortError):
        open_output("jack", 999)


def test_missing_api_and_bad_api(jack_server):
    with pytest.raises(MidiPortError) as info:
        open_output("winmm")  # not compiled in on Linux
    assert "\n" not in str(info.value)
    with pytest.raises(ParameterError):
        open_output("oss")


def test_send_after_close_raises(jack_server):
    output = open_output("jack", None, virtual_name="v", client_name=unique_name("mh-out"))
    output.close()
    with pytest.raises(MidiPortError):
        output.send([0x90, 60, 100])


def test_panic_port_and_list_text(jack_input):
    reader, port_name = jack_input
    assert port_name in list_midi_ports_text("jack")
    assert panic_port("jack", port_name) == 32
    assert reader.wait_for(32) == expected_panic()


class Collected:
    """on_message target for open_input: a list and a condition to wait on."""

    def __init__(self) -> None:
        self.messages: list[list[int]] = []
        self.condition = threading.Condition()

    def __call__(self, message: list[int]) -> None:
        with self.condition:
            self.messages.append(message)
            self.condition.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[list[int]]:
        with self.condition:
            self.condition.wait_for(lambda: len(self.messages) >= count, timeout=timeout_s)
            return list(self.messages)


def numbered(n: int) -> list[int]:
    return [0xB0 | (n >> 14) % 16, (n >> 7) & 127, n & 127]


def test_input_gets_every_message_of_bursts_in_order(jack_server):
    """A virtual input that an output opens: bursts of 45 messages (a panic's size) arrive whole and in order."""
    collected = Collected()
    client = unique_name("mh-in")
    midi_input = open_input(collected, "jack", None, virtual_name="in", client_name=client)
    try:
        assert midi_input.port_name == f"{client}:in" and midi_input.is_virtual
        with open_output("jack", midi_input.port_name, client_name=unique_name("mh-out")) as output:
            sent = [numbered(n) for n in range(45 * 40)]
            for start in range(0, len(sent), 45):
                for message in sent[start : start + 45]:
                    output.send(message)
            assert collected.wait_for(len(sent)) == sent
        assert midi_input.messages == len(sent)
    finally:
        midi_input.close()
    assert midi_input.closed
    midi_input.close()  # idempotent


def test_input_connects_to_a_source_by_substring(jack_server):
    collected = Collected()
    source_client = unique_name("mh-keyboard")
    with open_output("jack", None, virtual_name="keys", client_name=source_client) as source:
        with open_input(collected, "jack", source_client.upper(), client_name=unique_name("mh-in")) as midi_input:
            assert midi_input.port_name == f"{source_client}:keys" and not midi_input.is_virtual
            # a new JACK connection carries data from the next period on: probe until one arrives
            for probe in range(100):
                source.send([0xBF, 119, probe])
                if collected.wait_for(1, timeout_s=0.1):
                    break
            first = collected.wait_for(1)[0][2]
            collected.wait_for(probe - first + 1)
            source.send([0x90, 64, 90])
            assert collected.wait_for(probe - first + 2)[-1] == [0x90, 64, 90]


def test_missing_input_port_is_one_clear_line(jack_server):
    with pytest.raises(MidiPortError) as info:
        open_input(lambda message: None, "jack", "no-such-keyboard-xyz", client_name=unique_name("mh-in"))
    message = str(info.value)
    assert "\n" not in message and "no-such-keyboard-xyz" in message and "MIDI input port" in message
    with pytest.raises(ParameterError):
        open_input("not callable", "jack", None, client_name=unique_name("mh-in"))


def test_play_events_sends_each_message_in_order_no_earlier_than_its_stamp(jack_input):
    """``musichal replay --midi-port``: the logged events go out in order, at (never before) their own pace."""
    import time

    from services.midi_out.cli import play_events

    reader, port_name = jack_input
    events = [(1.0, [0x90, 60, 100]), (1.1, [0x90, 64, 90]), (1.3, [0x80, 60, 0]), (1.3, [0x80, 64, 0])]
    t0 = time.monotonic()
    play_events("jack", port_name, events)
    elapsed = time.monotonic() - t0
    assert reader.wait_for(len(events)) == [message for _, message in events]
    assert elapsed >= 0.3 - 1e-3  # the first stamp is the start: 0.3 s from the first message to the last
