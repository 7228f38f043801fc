"""The whole live stack on one node: a WAV through --input-file → four Ray actors → MIDI read back from a real JACK
port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mido
import numpy as np
import pytest

from services.oracle.player.walk import MAX_IOI_S
from shared.config import MusicHalConfig
from testkit.audio import render_midi_notes
from testkit.midi import (
    HUNG_NOTE_SLACK_S,
    ReceiverModel,
    TimedJackReader,
    first_note_age_s,
    hung_note_problems,
    note_on_messages,
    scheduled_notes,
    stop_stats_problems,
)
from testkit.system import fifo_allowed
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def melody(pitches: list[int], *, notes: int = 28, step_s: float = 0.4, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [(int(rng.choice(pitches)), 0.2 + i * step_s, step_s * 0.85, 90) for i in range(notes)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    c_major = melody([60, 64, 67, 72], seed=1)  # C E G
    f_sharp = melody([54, 58, 61, 66], seed=2)  # F# A# C#
    return {
        "c": (render_midi_notes(c_major, folder / "c.wav"), c_major),
        "fs": (render_midi_notes(f_sharp, folder / "fs.wav"), f_sharp),
    }


def pitch_class_histogram(pitches) -> np.ndarray:
    hist = np.zeros(12)
    for p in pitches:
        hist[int(p) % 12] += 1
    return hist / max(1.0, hist.sum())


def test_wav_through_four_actors_to_jack_midi_traced_and_recorded(jack_server, ray_local, clips, tmp_path):
    from services.oracle.memory.store import OracleMemory
    from services.stack import LiveStack

    reader = TimedJackReader()
    port = reader.open_virtual("in")
    record = tmp_path / "out.mid"
    learned = tmp_path / "learned.json"
    session = tmp_path / "session.jsonl"
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "gm-safe",
            "midi.record_path": str(record),
            "generation.seed": 3,
        }
    )
    stack = LiveStack(config, input_file=str(clips["c"][0]), checkpoint_path=str(learned), session_log=str(session))
    ring_names = []
    try:
        stack.start()
        ring_names = [ring.name for ring in stack.rings.values()]
        assert all(os.path.exists(f"/dev/shm/{name}") for name in ring_names)
        assert wait_until(stack.finished, timeout_s=60), "the input file was not played to its end"
        import ray

        traced = ray.get(stack.actors["midi_out"].traced_notes.remote())
        final = stack.stop(graceful=True, drain_s=5.0)
    finally:
        stack.stop(graceful=False)
        received = reader.wait_for_stop_panic(timeout_s=20)
        if record.exists():  # the player plays on until stop: wait for the reader to get what the SMF holds
            expected = sum(1 for m in mido.MidiFile(record) if m.type == "note_on" and m.velocity > 0)
            wait_until(lambda: len(note_on_messages(list(reader.messages))) >= expected, timeout_s=5)
            received = list(reader.messages)
        timed = reader.snapshot()
        reader.close()

    # every ring is gone, nothing left in /dev/shm
    assert ring_names and not any(os.path.exists(f"/dev/shm/{name}") for name in ring_names)
    # the stack heard the input and answered
    assert final["capture"]["counters"]["events"] >= 20
    assert final["oracle"]["counters"]["percepts"] >= 20
    assert final["oracle"]["encoder_node"] == final["encoder"]["node_id"]
    # midi_out's scheduler runs real-time wherever this system lets a thread take SCHED_FIFO (midi.scheduler_priority)
    assert final["midi_out"]["scheduler_realtime"] == fifo_allowed()
    model = ReceiverModel()
    for message in received:
        model.feed(message)
    assert model.note_ons >= 5, f"too few notes came out: {model.note_ons}"
    # every note ended by its own note-off, none longer than scheduled (+ 2 s); the drained stop had none to end
    assert hung_note_problems(timed, scheduled=scheduled_notes(session), require_stop_panic=False) == []
    assert stop_stats_problems(final) == []
    assert 9 not in model.channels_used  # gm-safe never plays channel 10
    # each note traced to an oracle state and the input event it was learned from
    memory = OracleMemory(config, model=str(learned))
    assert traced and len(traced) <= model.note_ons  # traced before stop; the player plays on after the input ends
    for note in traced:
        assert note["source_state"] >= 1
        assert memory.tokens.state_info(note["source_state"]).event_id == note["source_event_id"]
    # the SMF holds what was sent
    smf_on = [m for m in mido.MidiFile(record) if m.type == "note_on" and m.velocity > 0]
    assert len(smf_on) == model.note_ons
    # what it played follows what it heard
    out_hist = pitch_class_histogram([m.note for m in smf_on])
    in_hist = pitch_class_histogram([n[0] for n in clips["c"][1]])
    assert out_hist @ in_hist / (np.linalg.norm(out_hist) * np.linalg.norm(in_hist)) > 0.7


def _descendants(pid: int) -> set[int]:
    """Every process the CLI started (Ray's GCS, raylet, workers...): only ours, not other Ray clusters on the
    machine."""
    import psutil

    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def test_cli_on_another_file_plays_other_pitches_and_stops_cleanly_on_sigint(jack_server, clips, tmp_path):
    reader = TimedJackReader()
    port = reader.open_virtual("in")
    record = tmp_path / "fs.mid"
    session = tmp_path / "session.jsonl"
    command = [
        sys.executable,
        os.path.join(REPO, "launch.py"),
        "--input-file",
        str(clips["fs"][0]),
        "--loop",
        "--midi-api",
        "jack",
        "--midi-port",
        port,
        "--midi-profile",
        "gm-safe",
        "--record",
        str(record),
        "--session-log",
        str(session),
        "--stats",
        "--stats-file",
        str(tmp_path / "stats.json"),
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_until(lambda: len(note_on_messages(list(reader.messages))) >= 5, timeout_s=90), (
            "no notes came from the CLI run"
        )
        # long enough that a note nothing but the stop ended would be over the hung-note bound
        assert wait_until(
            lambda: first_note_age_s(reader.snapshot(), time.monotonic()) > MAX_IOI_S + 2 * HUNG_NOTE_SLACK_S,
            timeout_s=30,
        )
        started = _descendants(process.pid)
        t_signal = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        stop_s = time.monotonic() - t_signal
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
        received = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()
    assert process.returncode == 0, output
    assert "stopped (SIGINT)" in output and "all notes off" in output
    assert stop_s < 30
    model = ReceiverModel()
    for message in received:
        model.feed(message)
    # no hung note during play: each note ended by its own note-off within its scheduled duration (+ 2 s), the
    # notes SIGINT's stop ended included
    assert hung_note_problems(timed, scheduled=scheduled_notes(session)) == []
    # its stop drains the decided notes too: none left for the panic to end, none stolen
    assert stop_stats_problems(json.loads((tmp_path / "stats.json").read_text())) == []
    # panic on the way out: CC123 on every channel after the last note-on
    last_on = max(i for i, m in enumerate(received) if (m[0] & 0xF0) == 0x90 and m[2] > 0)
    assert {m[0] & 0x0F for m in received[last_on:] if (m[0] & 0xF0) == 0xB0 and m[1] == 123} == set(range(16))
    smf_pitches = [m.note for m in mido.MidiFile(record) if m.type == "note_on" and m.velocity > 0]
    assert len(smf_pitches) >= 5
    out_hist = pitch_class_histogram(smf_pitches)
    own = pitch_class_histogram([n[0] for n in clips["fs"][1]])
    other = pitch_class_histogram([n[0] for n in clips["c"][1]])
    assert out_hist @ own > out_hist @ other  # a different input gives a different pitch-class histogram
    leftover = [
        n
        for n in os.listdir("/dev/shm")
        if n.startswith(f"musichal_ring_{process.pid}_") or n.startswith(f"musichal_ring_msg_{process.pid}_")
    ]
    assert not leftover, f"the CLI left shared memory behind: {leftover}"
    import psutil

    alive = lambda: [pid for pid in started if psutil.pid_exists(pid)]  # noqa: E731
    assert started and wait_until(lambda: not alive(), timeout_s=60), f"Ray processes outlived the CLI: {alive()}"
