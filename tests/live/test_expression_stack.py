"""Expression bytes over real JACK MIDI, through the whole live stack learning live from a file.

The input is rendered by fluidsynth from MIDI this test writes: piano notes that each glide up into their pitch
(pitch-wheel from −1 semitone to 0 over 300 ms, at fluidsynth's ±2 range) in a crescendo (velocity 30 → 120). The
stack (four Ray actors, ``LiveStack(input_file=...)``) learns it live and plays; a JACK MIDI reader gets the bytes.

* MPE profile: notes carry per-note pitch bend on their own member channel — a starting bend before the note-on and
  a rising bend automation during the note (the glides it learned) — and their channel pressure rises with the
  crescendo (rank correlation with time, and the last third's mean above the first third's): a note's pressure is
  its state's learned loudness envelope scaled by the followed dynamics of the input, and both rise.
  Measured (2 shared cores, load ~15): 18 notes, all bent, all with a rising glide; pressure rank correlation 0.87,
  first/last third 39/71.
* gm-safe, the same input and seed: no pitch bend, channel pressure or CC74 at all; velocities only.
Both: every note-on ended by its own note-off during play.
"""

from __future__ import annotations

import subprocess

import mido
import numpy as np
import pytest

from shared.config import MusicHalConfig
from testkit.audio import SOUNDFONT, fluidsynth_available
from testkit.midi import (
    TimedJackReader,
    hung_note_problems,
    panic_starts,
    scheduled_notes,
    stop_panic_received,
    stop_stats_problems,
)
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]

SCALE = [60, 62, 64, 67, 69]
NOTES = 16
IOI_S = 0.7
GLIDE_FROM = -1.0  # semitones below the note at its onset, gliding to the note in GLIDE_S
GLIDE_S = 0.3
MPE_RANGE = 48


def write_glides(path, *, seed: int = 0):
    """A one-track SMF of piano notes, each gliding up into its pitch with pitch-wheel messages, in a crescendo."""
    rng = np.random.default_rng(seed)
    ticks_per_beat, tempo = 960, mido.bpm2tempo(120)
    seconds_per_tick = tempo / 1e6 / ticks_per_beat
    tick = lambda s: int(round(s / seconds_per_tick))  # noqa: E731
    timeline = []
    for i in range(NOTES):
        pitch, start = int(rng.choice(SCALE)), 0.3 + IOI_S * i
        velocity = int(round(30 + 90 * i / (NOTES - 1)))
        for k in range(16):  # -1 semitone at the onset (before the note-on) to 0 at GLIDE_S
            value = int(round(GLIDE_FROM * (1 - k / 15) / 2 * 8191))
            timeline.append(
                (tick(start + GLIDE_S * k / 15), 0 if k == 0 else 2, mido.Message("pitchwheel", pitch=value))
            )
        timeline.append((tick(start), 1, mido.Message("note_on", note=pitch, velocity=velocity)))
        timeline.append((tick(start + IOI_S - 0.1), 0, mido.Message("note_off", note=pitch, velocity=0)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.Message("program_change", program=0, time=0))
    last = 0
    for t, _, message in timeline:
        track.append(message.copy(time=t - last))
        last = t
    midi.save(str(path))


@pytest.fixture(scope="module")
def glide_wav(tmp_path_factory):
    assert fluidsynth_available(), "fluidsynth and the FluidR3 GM soundfont are required (scripts/setup.sh)"
    folder = tmp_path_factory.mktemp("glides")
    midi, wav = folder / "glides.mid", folder / "glides.wav"
    write_glides(midi)
    subprocess.run(
        ["fluidsynth", "-ni", "-g", "0.8", "-F", str(wav), "-r", "48000", str(SOUNDFONT), str(midi)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return wav


def play_through_stack(profile: str, wav, tmp_path) -> list[list[int]]:
    """The stack learning ``wav`` live in ``profile``; the bytes received during play (before the stop's panic)."""
    from services.stack import LiveStack

    reader = TimedJackReader()
    port = reader.open_virtual("in")
    session = tmp_path / f"session-{profile}.jsonl"
    # the melody alone: its notes play the slices' own f0 (the glides); the bass and comping play other pitch
    # classes of the slice, without its glide (tests/oracle/test_voices.py checks their expression)
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": profile,
            "midi.bend_range_semitones": MPE_RANGE,
            "generation.seed": 3,
            "voices.bass": False,
            "voices.comping": False,
        }
    )
    stack = LiveStack(config, input_file=str(wav), session_log=str(session))
    try:
        stack.start()
        assert wait_until(stack.finished, timeout_s=60), "the input file was not played to its end"
        final = stack.stop(graceful=True, drain_s=3.0)
    finally:
        stack.stop(graceful=False)
        received = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()
    # every note ended by its own note-off during play (the stop's panic is not required: under load LiveStack.stop
    # may kill midi_out before its own panic, a stop-path matter this test does not judge)
    assert hung_note_problems(timed, scheduled=scheduled_notes(session), require_stop_panic=False) == []
    assert stop_stats_problems(final) == []  # none longer than scheduled (+ 2 s), none the drained stop ended
    starts = panic_starts(received)
    return received[: starts[-1]] if stop_panic_received(received) else received  # what was played


def notes_with_expression(messages: list[list[int]]) -> list[dict]:
    """Per note-on, in order: its channel, velocity, the bend (semitones at the MPE range) and pressure set on its
    channel before it, and the bend/pressure values sent on that channel while it sounds."""
    bend = {c: 0.0 for c in range(16)}
    pressure = {c: 0 for c in range(16)}
    sounding: dict[int, dict] = {}
    notes = []
    for m in messages:
        kind, channel = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0xE0:
            bend[channel] = ((m[2] << 7 | m[1]) - 8192) / 8192 * MPE_RANGE
            if channel in sounding:
                sounding[channel]["bends"].append(bend[channel])
        elif kind == 0xD0:
            pressure[channel] = m[1]
            if channel in sounding:
                sounding[channel]["pressures"].append(m[1])
        elif kind == 0x90 and m[2] > 0:
            note = {
                "channel": channel,
                "pitch": m[1],
                "velocity": m[2],
                "bend": bend[channel],
                "pressure": pressure[channel],
                "bends": [],
                "pressures": [],
            }
            sounding[channel] = note
            notes.append(note)
        elif kind == 0x80 or (kind == 0x90 and m[2] == 0):
            sounding.pop(channel, None)
    return notes


def rank_correlation(values) -> float:
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return float(np.corrcoef(np.arange(len(values)), ranks)[0, 1])


def test_mpe_carries_learned_glides_as_per_note_bend_and_pressure_follows_a_crescendo(
    jack_server, ray_local, glide_wav, tmp_path
):
    played = play_through_stack("mpe", glide_wav, tmp_path)
    notes = notes_with_expression(played)
    assert len(notes) >= 10, f"too few notes came out: {len(notes)}"
    assert {n["channel"] for n in notes} <= set(range(1, 16)) and len({n["channel"] for n in notes}) >= 2
    # per-note bend: set before the note-on on its own member channel, not rounded away
    bent = [n for n in notes if abs(n["bend"]) >= 0.05 or n["bends"]]
    assert len(bent) >= 0.7 * len(notes), [round(n["bend"], 2) for n in notes]
    # the glides: a bend automation during the note that rises by at least half a semitone
    glides = [n for n in notes if n["bends"] and max(n["bends"]) - n["bend"] >= 0.5]
    assert len(glides) >= 0.5 * len(notes)
    assert all(abs(b) <= 2.0 for n in notes for b in [n["bend"], *n["bends"]])  # glides of a semitone, not octaves
    # pressure follows the crescendo
    pressures = [n["pressure"] for n in notes]
    third = len(pressures) // 3
    print(
        f"mpe: {len(notes)} notes, {len(bent)} bent, {len(glides)} glides; pressure rank correlation with time "
        f"{rank_correlation(pressures):.2f}, first/last third "
        f"{np.mean(pressures[:third]):.0f}/{np.mean(pressures[-third:]):.0f}"
    )
    assert rank_correlation(pressures) > 0.5, pressures
    assert np.mean(pressures[-third:]) > np.mean(pressures[:third]) + 15, pressures


def test_gm_safe_plays_the_same_input_with_velocity_only(jack_server, ray_local, glide_wav, tmp_path):
    played = play_through_stack("gm-safe", glide_wav, tmp_path)
    notes = notes_with_expression(played)
    assert len(notes) >= 10, f"too few notes came out: {len(notes)}"
    assert not [m for m in played if m[0] & 0xF0 in (0xE0, 0xD0)]  # no pitch bend, no channel pressure
    assert not [m for m in played if m[0] & 0xF0 == 0xB0 and m[1] == 74]  # no CC74
    velocities = [n["velocity"] for n in notes]
    third = len(velocities) // 3
    assert np.mean(velocities[-third:]) > np.mean(velocities[:third])  # the dynamics still follow the crescendo
