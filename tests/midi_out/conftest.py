"""Fixtures for midi_out tests: a JACK MIDI link (our output → a python-rtmidi JACK input)."""
from __future__ import annotations

import pytest

from services.midi_out.ports import open_output
from tests.midi_out.helpers import JackReader, unique_name


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
        yield JackLink(output, reader)
    finally:
        output.close()
        reader.close()
