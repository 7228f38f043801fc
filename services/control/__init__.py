"""Performer controls: control state and maps, OSC/MIDI servers, feedback gate, too-slow guard, session log and
replay."""
