"""musichal-compare: traditional vs. Wav2Vec perception on the same audio."""
