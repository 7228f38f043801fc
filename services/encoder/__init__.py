"""MusicHal encoder stage."""
