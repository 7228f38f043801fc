"""MusicHal pipeline stages: capture, encoder, oracle, midi_out (pure logic + thin Ray actors)."""
