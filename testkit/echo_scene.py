"""The rendered echo scene: MusicHal's own legato melody with a musician's line two octaves lower mixed in
(:func:`testkit.audio.two_line_scene`), through the segmenter and the slices' transcription, and which onsets an
:class:`~services.oracle.player.echo.EchoGate` keeps. Used by ``tests/control/test_echo.py`` and
``benchmarks/transcription.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from testkit.audio import render_midi_notes, two_line_scene

SR = 48000


def scene_mix(seed: int, root: Path) -> tuple[list[tuple], list[tuple], np.ndarray]:
    """(own notes, musician notes, the two rendered lines summed to mono at 48 kHz), rendered under ``root``."""
    import soundfile as sf

    own, musician = two_line_scene(seed)
    a = sf.read(str(render_midi_notes(own, root / f"own{seed}.wav")), dtype="float32")[0]
    b = sf.read(str(render_midi_notes(musician, root / f"musician{seed}.wav")), dtype="float32")[0]
    a, b = (x.mean(axis=1) if x.ndim > 1 else x for x in (a, b))
    n = min(a.size, b.size)
    return own, musician, a[:n] + b[:n]


def scene_slices(mix: np.ndarray, config) -> tuple[list, list]:
    """(segmenter events, each event's transcribed slice notes) for the mix."""
    from services.capture.segmenter import segment_signal
    from services.encoder.transcription import transcribe_windows

    events = segment_signal(mix, config, sample_rate_hz=SR)
    slices = transcribe_windows([mix[e.window_start : e.window_end] for e in events], sample_rate_hz=SR)
    return events, slices


def kept_onsets(own, musician, events, slices, *, window_s: float) -> dict[str, dict[str, list[bool]]]:
    """Per gate mode ("content", "time"): for the musician's onsets and the echo onsets (within 50 ms of a note's
    start), whether the gate kept each one."""
    from services.oracle.player.echo import EchoGate

    results = {}
    for mode in ("content", "time"):
        gate = EchoGate(mode=mode)
        for pitch, start, duration, _ in own:
            gate.note_sent(start, start + duration, pitch=pitch)
        kept: dict[str, list[bool]] = {"musician": [], "echo": []}
        for event, notes in zip(events, slices):
            onset = event.onset_s
            blocked = gate.blocks(onset, notes=[(x.pitch, x.onset_s, x.duration_s) for x in notes], window_s=window_s)
            if min(abs(onset - m[1]) for m in musician) < 0.05:
                kept["musician"].append(not blocked)
            elif min(abs(onset - o[1]) for o in own) < 0.05:
                kept["echo"].append(not blocked)
        results[mode] = kept
    return results
