"""Reusable test audio: pure tones and fluidsynth-rendered MIDI (FluidR3 GM piano by default).

>>> tone = sine_tone(440.0, 0.01, 48000)
>>> tone.shape, tone.dtype
((480,), dtype('float32'))
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SOUNDFONT",
    "sine_tone",
    "render_midi_notes",
    "write_midi_notes",
    "fluidsynth_available",
    "chorale_notes",
    "chorale_opening",
    "two_line_scene",
    "CHORALES",
]

#: music21 corpus chorales used as transcription ground truth
CHORALES = ("bach/bwv66.6", "bach/bwv26.6", "bach/bwv253", "bach/bwv1.6")

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def fluidsynth_available() -> bool:
    """True when the fluidsynth binary and the FluidR3 GM soundfont are installed."""
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def sine_tone(
    freq_hz: float, seconds: float, sample_rate_hz: int, *, amplitude: float = 0.5, phase: float = 0.0
) -> np.ndarray:
    """A mono float32 sine of ``seconds`` length at ``sample_rate_hz``."""
    n = int(round(seconds * sample_rate_hz))
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    return (amplitude * np.sin(2.0 * np.pi * freq_hz * t + phase)).astype(np.float32)


def write_midi_notes(
    notes: Iterable[Sequence[float]], path: str | Path, *, program: int = 0, tempo_bpm: float = 120.0
) -> Path:
    """Write ``(pitch, start_s, dur_s, velocity)`` notes as a one-track SMF (channel 0, GM ``program``)."""
    import mido

    ticks_per_beat = 960
    tempo = mido.bpm2tempo(tempo_bpm)
    seconds_per_tick = tempo / 1e6 / ticks_per_beat
    timeline: list[tuple[int, int, mido.Message]] = []
    for pitch, start_s, dur_s, velocity in notes:
        on_tick = int(round(float(start_s) / seconds_per_tick))
        off_tick = int(round((float(start_s) + float(dur_s)) / seconds_per_tick))
        timeline.append((on_tick, 1, mido.Message("note_on", note=int(pitch), velocity=int(velocity), channel=0)))
        timeline.append((off_tick, 0, mido.Message("note_off", note=int(pitch), velocity=0, channel=0)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.Message("program_change", program=int(program), channel=0, time=0))
    last = 0
    for tick, _, message in timeline:
        track.append(message.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=ticks_per_beat))
    path = Path(path)
    midi.save(str(path))
    return path


def render_midi_notes(
    notes: Iterable[Sequence[float]],
    path: str | Path,
    sample_rate_hz: int = 48000,
    *,
    program: int = 0,
    gain: float = 0.8,
) -> Path:
    """Render ``(pitch, start_s, dur_s, velocity)`` notes to a WAV at ``path`` with fluidsynth; returns ``path``."""
    if not fluidsynth_available():
        raise RuntimeError("fluidsynth or /usr/share/sounds/sf2/FluidR3_GM.sf2 is not installed")
    path = Path(path)
    midi_path = path.with_suffix(".mid")
    write_midi_notes(notes, midi_path, program=program)
    command = [
        "fluidsynth",
        "-ni",
        "-g",
        str(gain),
        "-F",
        str(path),
        "-r",
        str(int(sample_rate_hz)),
        str(SOUNDFONT),
        str(midi_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(f"fluidsynth failed: {result.stderr.strip() or result.stdout.strip()}")
    return path


def random_note_clip(
    path: str | Path,
    *,
    seed: int,
    pitches: Sequence[int],
    count: int,
    ioi_s: float,
    note_s: float,
    start_s: float = 0.1,
    velocity: int = 95,
) -> Path:
    """``count`` piano notes, one every ``ioi_s`` from ``start_s``, each ``note_s`` long, pitches drawn from ``pitches``
    with ``seed``, rendered to a WAV at ``path`` (the live tests' clip)."""
    rng = np.random.default_rng(seed)
    notes = [(int(rng.choice(list(pitches))), start_s + i * ioi_s, note_s, velocity) for i in range(count)]
    return render_midi_notes(notes, path)


def chorale_notes(
    name: str, *, bpm: float = 100.0, seconds: float | None = None, velocity: int = 80, transpose: int = 0
) -> list[tuple[int, float, float, int]]:
    """``(pitch, start_s, dur_s, velocity)`` of a music21 corpus piece (e.g. ``"bach/bwv269"``) at ``bpm`` quarter
    notes per minute; with ``seconds``, the piece repeats until that length and is cut there."""
    from music21 import corpus

    beat_s = 60.0 / float(bpm)
    score = corpus.parse(name)
    notes: list[tuple[int, float, float, int]] = []
    for element in score.flatten().notes:
        start = float(element.offset) * beat_s
        duration = float(element.quarterLength) * beat_s
        for pitch in element.pitches:
            notes.append((int(pitch.midi) + transpose, start, duration, velocity))
    notes.sort(key=lambda n: (n[1], n[0]))
    if seconds is None:
        return notes
    length = float(score.highestTime) * beat_s
    out: list[tuple[int, float, float, int]] = []
    offset = 0.0
    while offset < seconds:
        out += [(p, s + offset, min(d, seconds - s - offset), v) for p, s, d, v in notes if s + offset < seconds]
        offset += length
    return out


def chorale_opening(
    name: str, *, seconds: float = 24.0, bpm: float = 80.0, velocity: int = 80
) -> list[tuple[int, float, float, int]]:
    """``(pitch, start_s, dur_s, velocity)`` of a music21 corpus chorale's first ``seconds`` (all voices; each note held
    95 % of its written length so repeated notes are re-struck; notes are not cut at ``seconds``, the piece does not
    repeat) — the transcription tests' and benchmark's reference. :func:`chorale_notes` holds notes their full length
    and repeats the piece."""
    import music21

    score = music21.corpus.parse(name)
    beat = 60.0 / bpm
    notes = []
    for n in score.flatten().notes:
        start = float(n.offset) * beat
        if start >= seconds:
            continue
        for p in n.pitches:
            notes.append((int(p.midi), start, float(n.quarterLength) * beat * 0.95, int(velocity)))
    return notes


def two_line_scene(seed: int, *, seconds: float = 20.0) -> tuple[list[tuple], list[tuple]]:
    """An "own" legato melody (C4-C5) and a "musician" line two octaves lower whose onsets never fall within 80 ms
    of an own onset: ``(own_notes, musician_notes)`` as ``(pitch, start_s, dur_s, velocity)``."""
    rng = np.random.default_rng(int(seed))
    own, t = [], 0.3
    while t < seconds:
        d = float(rng.choice([0.4, 0.6, 0.8]))
        own.append((int(rng.choice([60, 62, 64, 65, 67, 69, 71, 72])), t, d, 80))
        t += d
    musician, t = [], 0.5
    while t < seconds:
        d = float(rng.choice([0.5, 0.7, 0.9]))
        if min(abs(t - o[1]) for o in own) > 0.08:
            musician.append((int(rng.choice([36, 38, 40, 41, 43, 45, 47, 48])), t, d * 0.9, 90))
        t += d
    return own, musician
