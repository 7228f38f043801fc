"""MusicHal oracle stage."""
