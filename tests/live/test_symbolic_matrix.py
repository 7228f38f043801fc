"""Symbolic and audio models × audio and MIDI input through the live stack: each cell plays and learns, or stops with
one line (exit 2) before Ray is imported — never deaf.

| model \\ input        | audio                       | MIDI (``--input-midi``)       | both                        |
|----------------------|-----------------------------|-------------------------------|-----------------------------|
| symbolic (from MIDI) | plays, learns (its notes)   | plays, learns                 | plays, learns from both     |
| audio (traditional)  | as before                   | one line, exit 2              | one line, exit 2            |
| none (learning live) | as before                   | learns the symbolic view      | symbolic view from both     |

"audio × audio" is tests/live/test_model_perception.py. The "none × MIDI" cell is a keyboard through real JACK MIDI in
and out: a test player plays a chorale's score into ``--input-midi virtual`` ("MusicHal in"); MusicHal learns it live
and imitates. Checked there: what it plays follows the score (pitch-class correlation with the score ≥ 0.85, and
≥ 0.3 above a chorale in another key); every score chord became one event whose notes are the chord's sounding notes;
the session log replays to the same notes; onset → note latencies are in the stats (printed, not asserted: a loaded
machine may stretch them; benchmarks/midi_input.py measures them).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf

from services.encoder.midi_input import MIDI_EVENT_IDS
from services.encoder.symbolic import SYMBOLIC_DIMENSION
from services.oracle.player.replay import replay_session
from services.oracle.player.session import read_session
from shared.config import MusicHalConfig
from testkit.audio import CHORALES, chorale_notes, fluidsynth_available, render_midi_notes, write_midi_notes
from testkit.cli import cli_without_ray
from testkit.keyboard import (
    chord_send_times,
    correlation,
    first_note_latencies_ms,
    open_keyboard,
    pc_histogram,
    play_score,
    timeline,
)
from testkit.midi import JackReader, ReceiverModel, TimedJackReader, hung_note_problems, scheduled_notes
from testkit.waiting import stage_counter, wait_until

LEARNED = 4

_CHORDS = [[48, 55, 64, 72], [45, 57, 64, 72], [50, 57, 65, 74], [43, 55, 62, 71], [41, 57, 65, 69], [43, 55, 62, 67]]


def _progression(shift: int, *, chords: int = 12, step_s: float = 0.5) -> list[tuple]:
    return [
        (pitch + shift, 0.2 + i * step_s, step_s * 0.9, 72)
        for i in range(chords)
        for pitch in _CHORDS[(i + shift) % len(_CHORDS)]
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from services.trainer.pipeline import train

    if not fluidsynth_available():
        pytest.fail("fluidsynth and FluidR3_GM.sf2 are required (run `make test` to install them)")
    root = tmp_path_factory.mktemp("symbolic_matrix")
    midi = [write_midi_notes(_progression(k), root / f"corpus{k}.mid") for k in (0, 1)]
    audio = [render_midi_notes(_progression(0, chords=8), root / "corpus.wav")]
    config = MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 8})
    models = {"symbolic": root / "symbolic" / "m.json", "traditional": root / "traditional" / "m.json"}
    train(midi, config=config, output=models["symbolic"])
    train(audio, config=config, output=models["traditional"])
    play = render_midi_notes(_progression(3, chords=16), root / "play.wav")
    return {"root": root, "models": models, "play": play}


@pytest.mark.jack
@pytest.mark.parametrize(
    "model,flags,words",
    [
        ("traditional", [], ["--input-midi needs a model of the symbolic view", "traditional"]),
        (None, ["--wav2vec"], ["--input-midi learns the symbolic view", "'wav2vec'"]),
    ],
    ids=["audio-model", "wav2vec-live"],
)
def test_midi_input_a_model_cannot_hear_stops_before_ray_with_one_line(jack_server, world, model, flags, words):
    args = ["--input-midi", "virtual", "--input-file", str(world["play"]), "--midi-api", "jack", "--quiet", *flags]
    if model is not None:
        args += ["--model", str(world["models"][model])]
    result = cli_without_ray(args, world["root"])
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("musichal: error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_describe_says_a_symbolic_model_listens_to_notes(world):
    result = cli_without_ray(["--model", str(world["models"]["symbolic"]), "--describe"], world["root"])
    assert result.returncode == 0, result.stderr
    assert "listens with: symbolic (primary symbolic)" in result.stdout
    assert f"memory features: {SYMBOLIC_DIMENSION}-D" in result.stdout and "corpus0.mid" in result.stdout


def _keyboard(stop: threading.Event) -> threading.Thread:
    """A test player on "MusicHal in": a chord every 0.4 s until ``stop``."""
    output = open_keyboard("MusicHal in")

    def run() -> None:
        try:
            index = 0
            while not stop.is_set():
                chord = _CHORDS[index % len(_CHORDS)]
                for pitch in chord:
                    output.send([0x90, pitch + 2, 90])
                stop.wait(0.35)
                for pitch in chord:
                    output.send([0x80, pitch + 2, 0])
                stop.wait(0.05)
                index += 1
        finally:
            output.close()

    thread = threading.Thread(target=run, name="test-keyboard", daemon=True)
    thread.start()
    return thread


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
def test_a_symbolic_model_plays_and_learns_from_audio_and_midi_together(jack_server, ray_module, world):
    from services.stack import LiveStack

    reader = JackReader()
    port = reader.open_virtual("in")
    config = MusicHalConfig().with_overrides(
        {"midi.api": "jack", "midi.port": port, "midi.profile": "gm-safe", "generation.seed": 2}
    )
    stack = LiveStack(
        config,
        input_file=str(world["play"]),
        loop=True,
        model_path=str(world["models"]["symbolic"]),
        input_midi="virtual",
    )
    stop = threading.Event()
    keyboard = None
    try:
        stack.start()
        keyboard = _keyboard(stop)

        def heard_both() -> bool:
            stats = stack.stats()
            return (
                stage_counter(stats, "encoder", "stage_events") >= LEARNED
                and stage_counter(stats, "oracle", "midi_events") >= LEARNED
                and stage_counter(stats, "oracle", "stage_learned") >= 2 * LEARNED
            )

        assert wait_until(heard_both, timeout_s=90), stack.stats()
        played = lambda: ReceiverModel().feed_all(reader.wait_for(0, timeout_s=0)).note_ons >= 3  # noqa: E731
        assert wait_until(played, timeout_s=60), "no notes came out of the JACK port"
        stats = stack.stats()
    finally:
        stop.set()
        if keyboard is not None:
            keyboard.join(timeout=5)
        stack.stop(graceful=False)
        reader.close()
    assert stack.encoder_info["views"] == ["symbolic"]  # the audio is heard through its notes
    assert stage_counter(stats, "encoder", "exceptions") == 0, stats["encoder"].get("first_exception")
    assert stage_counter(stats, "oracle", "stage_dim_mismatch") == 0
    assert LiveStack.deafness(stats) is None


# ------------------------------------------------------------------------------------ none × MIDI: a keyboard
SCORE_S = 12.0
GAP_S = 0.060  # chords whose sends were closer than this are not compared (JACK's and the threads' jitter)


def groups(times: list[float], window_s: float) -> int:
    """How many events note-ons at ``times`` make when a chord is the note-ons within ``window_s`` of its first."""
    count, first = 0, None
    for t in sorted(times):
        if first is None or t - first > window_s:
            count, first = count + 1, t
    return count


def sounding(notes, at_s: float) -> list[int]:
    """The keys down at a chord's onset when the score is played on one channel (its timeline up to then: a note-off
    lifts the key whichever voice struck it, so a unison's shorter voice ends it): the chord's notes and those held."""
    down: set[int] = set()
    for t, message in timeline(notes):
        if t > at_s + 1e-6:
            break
        (down.add if message[0] == 0x90 else down.discard)(message[1])
    return sorted(down)


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
def test_a_keyboard_plays_a_score_into_musichal_in_and_it_learns_and_imitates(jack_server, ray_module, tmp_path):
    from services.stack import LiveStack

    score = chorale_notes(CHORALES[0], bpm=100, seconds=SCORE_S, velocity=80)
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(48000, dtype=np.float32), 48000)
    reader = TimedJackReader()
    port = reader.open_virtual("in")
    session = tmp_path / "session.jsonl"
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "gm-safe",
            "generation.mode": "imitate",
            "generation.seed": 3,
            # the echo gate on, as for a microphone: MIDI notes pass it all the same (MIDI has no acoustic echo)
            "control.input_gate": True,
        }
    )
    stack = LiveStack(config, input_file=str(silence), loop=True, input_midi="virtual", session_log=str(session))
    output = None
    try:
        stack.start()
        assert stack.config.features.kind == "symbolic"  # learning live from MIDI: the symbolic view
        assert "MusicHal in" in stack.midi_input.port_name
        output = open_keyboard("MusicHal in")
        sent = play_score(output, score)
        chords = sorted({round(s, 6) for _, s, _, _ in score})
        # what the grouping must make of the note-ons as they were sent: the arrivals differ from the sends by JACK's
        # period and the threads' delays, so the count is bounded by a narrower and a wider window (equal unless the
        # player was held up so long that two chords left within ~40 ms of each other)
        on_times = [t for t, _, m in sent if m[0] == 0x90]
        fewest, most = groups(on_times, 0.045), groups(on_times, 0.020)

        def learned() -> int:
            return stack.stats(timeout_s=2.0)["oracle"]["counters"].get("midi_events", 0)

        assert wait_until(lambda: learned() >= fewest, timeout_s=30), (learned(), fewest)
        final = stack.stop(graceful=True, drain_s=3.0)
    finally:
        if output is not None:
            output.close()
        stack.stop(graceful=False)
        received = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()

    oracle = final["oracle"]["counters"]
    assert fewest <= oracle["midi_events"] <= most and oracle["midi_early"] == oracle["midi_events"]
    assert oracle["stage_learned"] >= oracle["midi_events"]  # every chord learned (the silent audio gives no event)
    # the chord grouping against the score: each event's notes are the sounding notes of the chord it began with
    records = read_session(session)
    arrived = {r["event_id"]: r["t_detected"] for r in records if r["kind"] == "event"}
    full = [r for r in records if r["kind"] == "percept" and not r["early"] and r["event_id"] >= MIDI_EVENT_IDS]
    assert len(full) == oracle["midi_events"] and set(arrived) >= {r["event_id"] for r in full}
    assert all(r["view"] == "symbolic" and len(r["features"]) == 23 and not r["gated"] for r in full)
    first_sent = chord_send_times(sent)
    chord_sent = [first_sent[at_s] for at_s in chords]
    compared = 0
    for record in full:
        t = arrived[record["event_id"]]
        index = max(i for i, s in enumerate(chord_sent) if s <= t)  # the chord sent last before it arrived
        neighbours = [abs(chord_sent[index] - chord_sent[j]) for j in (index - 1, index + 1) if 0 <= j < len(chords)]
        if min(neighbours) < GAP_S:  # too close to another chord to tell them apart by time
            continue
        compared += 1
        assert sorted(n[0] for n in record["descriptors"]["notes"]) == sounding(score, chords[index]), chords[index]
    assert compared >= len(chords) // 2
    # it follows what it heard: the pitch classes it played against the score's, and against another key's
    played = [m[1] for m in received if (m[0] & 0xF0) == 0x90 and m[2] > 0]
    assert len(played) >= len(chords)
    own = correlation(pc_histogram(played), pc_histogram([n[0] for n in score]))
    other = correlation(
        pc_histogram(played), pc_histogram([n[0] for n in chorale_notes(CHORALES[1], bpm=100, transpose=6)])
    )
    assert own >= 0.85 and own - other >= 0.3, (own, other)
    assert hung_note_problems(timed, scheduled=scheduled_notes(session)) == []
    replayed = replay_session(session)
    assert replayed.identical
    # onset → influenced note: the MIDI arrival → the reaction's note-on at the port (midi_out), and the whole way
    # through JACK (the player's send → the reader's receive of the first note-on after it)
    latency = final["midi_out"]["latency_ms"]["onset_to_note"]
    through = first_note_latencies_ms(chord_sent, timed)
    figures = {
        "onset_to_note_ms": {k: latency.get(k) for k in ("p50", "p95", "p99", "count")},
        "through_jack_ms": {"p50": float(np.percentile(through, 50)), "p95": float(np.percentile(through, 95))},
        "midi_onset_to_decision_ms": final["oracle"]["latency_ms"].get("midi_onset_to_decision", {}).get("p95"),
        "own": own,
        "other": other,
        "chords": len(chords),
    }
    print("midi input figures:", json.dumps(figures))
    assert latency.get("count", 0) >= len(chords) // 2
