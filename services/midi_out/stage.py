"""Pure-logic entry point of the midi_out stage (no Ray here): re-exports :class:`MidiOutStage`."""
from __future__ import annotations

from services.midi_out.engine import ListSink, MidiOutStage, MidiSink

__all__ = ["MidiOutStage", "ListSink", "MidiSink"]
