"""Fixtures for midi_out tests: a JACK MIDI link (our output → a python-rtmidi JACK input)."""

from __future__ import annotations

import pytest

from services.midi_out.ports import open_output
from testkit.midi import JackReader, unique_name


class JackLink:
    def __init__(self, output, reader: JackReader) -> None:
        self.output = output
        self.reader = reader


@pytest.fixture
def jack_link(jack_server):
    """A virtual JACK MIDI output (RtMidiOutput) connected to a JackReader."""
    client = unique_name("mh-out")
    output = open_output("jack", None, virtual_name="out", client_name=client)
    reader = JackReader()
    try:
        reader.connect_from(f"{client}:out")
        # a new JACK connection carries data from the next period on: send numbered probes (CC119 on channel 16,
        # never used by the tests) until one arrives; JACK keeps order, so every later probe arrives too
        for sent in range(100):
            output.send([0xBF, 119, sent])
            received = reader.wait_for(1, timeout_s=0.1)
            if received:
                first = received[0][2]
                reader.wait_for(1 + sent - first, timeout_s=5)
                break
        reader.clear()
        yield JackLink(output, reader)
    finally:
        output.close()
        reader.close()
