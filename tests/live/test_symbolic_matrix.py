"""Symbolic and audio models × audio and MIDI input: each cell plays and learns, or stops with one line (exit 2)
before Ray is imported — never deaf.

| model \\ input        | audio                       | MIDI (``--input-midi``)       | both                        |
|----------------------|-----------------------------|-------------------------------|-----------------------------|
| symbolic (from MIDI) | plays, learns (its notes)   | plays, learns                 | plays, learns from both     |
| audio (traditional)  | as before                   | one line, exit 2              | one line, exit 2            |
| none (learning live) | as before                   | learns the symbolic view      | symbolic view from both     |

The "none × MIDI" cell is tests/live/test_midi_input_stack.py; "audio × audio" tests/live/test_model_perception.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.encoder.symbolic import SYMBOLIC_DIMENSION
from shared.config import MusicHalConfig
from testkit.audio import fluidsynth_available, render_midi_notes, write_midi_notes
from testkit.keyboard import open_keyboard
from testkit.midi import JackReader, ReceiverModel
from testkit.waiting import stage_counter, wait_until

REPO = Path(__file__).resolve().parents[2]
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


def _cli_without_ray(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; sys.modules['ray'] = None; import launch; sys.exit(launch.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


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
    result = _cli_without_ray(args, world["root"])
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("musichal: error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_describe_says_a_symbolic_model_listens_to_notes(world):
    result = _cli_without_ray(["--model", str(world["models"]["symbolic"]), "--describe"], world["root"])
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
def test_a_symbolic_model_plays_and_learns_from_audio_and_midi_together(jack_server, ray_local, world):
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
