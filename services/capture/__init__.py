"""MusicHal capture stage."""
