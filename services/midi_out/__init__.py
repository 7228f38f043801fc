"""MusicHal midi_out stage."""
