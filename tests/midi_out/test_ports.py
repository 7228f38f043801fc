"""The python-rtmidi port layer on JACK: open by name/substring/index, virtual ports, one-line errors, panic."""
from __future__ import annotations

import pytest

from services.midi_out.cli import list_midi_ports_text, panic_port
from services.midi_out.ports import list_output_ports, open_output, resolve_api
from shared.errors import MidiPortError, ParameterError
from tests.midi_out.helpers import JackReader, expected_panic, unique_name

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
