"""The Chandra trainer: learns a MusicHal model offline from audio corpora."""
