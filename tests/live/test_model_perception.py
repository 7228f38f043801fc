"""A model plays the way it was trained: trainer perceptions × live invocations, through the real stack.

Each cell either plays and learns (percepts learned > 0, no dimension mismatch, no encoder exception — read from
the running stack's actors) or stops with exit code 2 and a one-line error before Ray is even imported.
Models are trained once per module on two short rendered chorales with a tiny random-weight wav2vec; each live
run stops as soon as enough percepts were learned (bounded wait), not after a fixed time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import MusicHalConfig
from testkit.audio import fluidsynth_available, render_midi_notes
from testkit.cli import cli_without_ray
from testkit.midi import JackReader, ReceiverModel
from testkit.waiting import stage_counter, wait_until

REPO = Path(__file__).resolve().parents[2]
LEARNED = 4  # percepts learned before a live cell counts as "plays and learns"
KINDS = ("traditional", "wav2vec", "hybrid")
VIEWS = {"traditional": ["traditional"], "wav2vec": ["wav2vec"], "hybrid": ["traditional", "wav2vec"]}  # as trained
NOTES_OUT = 3  # note-ons at the JACK port before a live cell counts as "plays"

# chorale-like four-voice progressions (pitch, start, duration, velocity)
_CHORDS = [
    [48, 55, 64, 72],
    [45, 57, 64, 72],
    [50, 57, 65, 74],
    [43, 55, 62, 71],
    [48, 55, 64, 72],
    [41, 57, 65, 69],
    [43, 55, 62, 67],
    [48, 52, 60, 67],
]


def _chorale(shift: int, *, chords: int = 8, step_s: float = 0.5) -> list[tuple]:
    notes = []
    for i in range(chords):
        chord = _CHORDS[(i + shift) % len(_CHORDS)]
        for voice, pitch in enumerate(chord):
            notes.append((pitch + shift % 3, 0.2 + i * step_s, step_s * 0.9, 70 + 8 * voice))
    return notes


def _trainer_config(kind: str, checkpoint: Path) -> MusicHalConfig:
    """What ``musichal-train`` builds from its perception flags for each kind."""
    overrides = {"quantizer.vocabulary_size": 8}
    if kind != "traditional":
        overrides.update({"features.kind": "wav2vec", "wav2vec.model": str(checkpoint)})
    if kind == "hybrid":
        overrides["features.hybrid"] = True
    return MusicHalConfig().with_overrides(overrides)


def _trainer_flags(kind: str, checkpoint: Path) -> list[str]:
    """The perception flags of the trainer's command line for each kind (repeated live in the 'trainer' cells)."""
    return {
        "traditional": [],
        "wav2vec": ["--wav2vec", "--wav2vec-model", str(checkpoint)],
        "hybrid": ["--wav2vec", "--hybrid-perception", "--wav2vec-model", str(checkpoint)],
    }[kind]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_wav2vec_dir, tiny_wav2vec_layer_norm_dir):
    """Two training chorales, one to play, the checkpoint, another checkpoint and the three trained models."""
    from services.trainer.pipeline import train

    if not fluidsynth_available():
        pytest.fail("fluidsynth and FluidR3_GM.sf2 are required (run `make test` to install them)")
    root = tmp_path_factory.mktemp("perception_matrix")
    corpus = [render_midi_notes(_chorale(k), root / f"chorale{k}.wav") for k in (0, 1)]
    play = render_midi_notes(_chorale(4, chords=12), root / "play.wav")
    checkpoint = root / "ckpt"
    shutil.copytree(tiny_wav2vec_dir, checkpoint)  # the trained checkpoint (a copy the tests may point away from)
    bigger = root / "bigger"  # another checkpoint of another hidden size (only its config is ever read)
    bigger.mkdir()
    (bigger / "config.json").write_text(json.dumps({"hidden_size": 48, "num_hidden_layers": 2}))
    models = {}
    for kind in KINDS:
        models[kind] = root / kind / "m.json"
        train(corpus, config=_trainer_config(kind, checkpoint), output=models[kind])
    return {
        "root": root,
        "play": play,
        "checkpoint": checkpoint,
        "other": Path(tiny_wav2vec_layer_norm_dir),
        "bigger": bigger,
        "models": models,
    }


def _moved_model(world, kind: str) -> Path:
    """The model as copied to a machine where its checkpoint is not at the recorded place."""
    from shared.model_io import arrays_path_for

    source = world["models"][kind]
    target = world["root"] / f"moved_{kind}" / "m.json"
    target.parent.mkdir(exist_ok=True)
    document = json.loads(source.read_text())
    gone = str(world["root"] / "gone" / "ckpt")
    document["meta"]["perception_spec"]["wav2vec"]["model"] = gone
    document["meta"]["perception"]["features"]["wav2vec"]["model"] = gone
    target.write_text(json.dumps(document))
    shutil.copyfile(arrays_path_for(source), arrays_path_for(target))
    return target


def _assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("musichal: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ errors before Ray starts
def _error_cells():
    """(kind, invocation, flags(world), words the one-line error must contain)."""
    return [
        ("traditional", "contradicting", lambda w: ["--wav2vec"], ["--wav2vec contradicts", "traditional"]),
        (
            "traditional",
            "missing-checkpoint",
            lambda w: ["--wav2vec-model", str(w["root"] / "nowhere")],
            ["--wav2vec-model contradicts"],
        ),
        ("wav2vec", "contradicting", lambda w: ["--hybrid-perception"], ["--hybrid-perception contradicts"]),
        ("wav2vec", "missing-checkpoint", None, ["was not found", "gone", "--wav2vec-model DIR"]),
        (
            "hybrid",
            "contradicting",
            lambda w: ["--wav2vec-model", str(w["other"])],
            ["not the one", "--other-checkpoint"],
        ),
        ("hybrid", "missing-checkpoint", None, ["was not found", "gone", "--wav2vec-model DIR"]),
    ]


@pytest.mark.parametrize("kind,invocation,flags,words", _error_cells(), ids=lambda v: v if isinstance(v, str) else "")
def test_contradicting_flags_or_a_missing_checkpoint_stop_before_ray_with_one_line(
    world, kind, invocation, flags, words
):
    model = _moved_model(world, kind) if flags is None else world["models"][kind]
    extra = [] if flags is None else flags(world)
    result = cli_without_ray(
        ["--model", str(model), "--input-file", str(world["play"]), "--midi-api", "jack", "--quiet", *extra],
        world["root"],
    )
    _assert_one_line_error(result, *words)


def test_other_checkpoint_is_used_only_when_asked_and_only_if_its_shape_fits(world):
    from services.encoder.spec import resolve_checkpoint
    from services.model_file import load_musichal_model
    from services.preflight import plan_listening

    model = load_musichal_model(world["models"]["hybrid"])
    config = MusicHalConfig()
    spec = plan_listening(config, model, checkpoint=str(world["other"]), other_checkpoint=True)
    assert resolve_checkpoint(spec) == str(world["other"].resolve())  # same 32-D, 2 layers: accepted when asked
    result = cli_without_ray(
        [
            "--model",
            str(world["models"]["wav2vec"]),
            "--wav2vec-model",
            str(world["bigger"]),
            "--other-checkpoint",
            "--describe",
        ],
        world["root"],
    )
    _assert_one_line_error(result, "48-D", "32-D")
    # a moved checkpoint (same content) is found where --wav2vec-model points
    moved = _moved_model(world, "wav2vec")
    result = cli_without_ray(
        ["--model", str(moved), "--wav2vec-model", str(world["checkpoint"]), "--describe"], world["root"]
    )
    assert result.returncode == 0, result.stderr
    assert "layer -1, mean pooling, 32-D" in result.stdout and "sha256" in result.stdout


def test_describe_says_how_each_model_listens(world):
    for kind in KINDS:
        result = cli_without_ray(["--model", str(world["models"][kind]), "--describe"], world["root"])
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert {
            "traditional": "listens with: traditional (primary traditional)",
            "wav2vec": "listens with: wav2vec (primary wav2vec)",
            "hybrid": "listens with: traditional + wav2vec (primary wav2vec, hybrid)",
        }[kind] in out, out
        assert "oracle: " in out and " states" in out and "threshold" in out and "chorale0.wav" in out
        assert (
            ("wav2vec checkpoint: " + str(world["checkpoint"].resolve())) in out
            if kind != "traditional"
            else "wav2vec checkpoint" not in out
        )
        assert "vocabulary" in out and f"play it with: musichal --model {world['models'][kind]}" in out


# ------------------------------------------------------------------------------------ plays and learns
def _live_config(kind: str, invocation: str, checkpoint: Path) -> MusicHalConfig:
    overrides = {"midi.api": "jack", "midi.profile": "gm-safe", "generation.seed": 1, "control.input_gate": False}
    if invocation == "trainer-flags" and kind != "traditional":  # what config_from_args makes of the trainer's flags
        overrides.update(
            {
                "features.kind": "wav2vec",
                "wav2vec.model": str(checkpoint),
                "features.hybrid": True if kind == "hybrid" else None,
            }
        )
    return MusicHalConfig().with_overrides(overrides)


# a traditional model's trainer flags are no flags at all: that cell is the "no-flags" one
_PLAY_CELLS = [
    (kind, invocation)
    for kind in KINDS
    for invocation in ("no-flags", "trainer-flags")
    if (kind, invocation) != ("traditional", "trainer-flags")
]


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
@pytest.mark.parametrize("kind,invocation", _PLAY_CELLS)
def test_model_plays_and_learns_through_the_real_stack(jack_server, ray_module, world, kind, invocation):
    from services.stack import LiveStack

    reader = JackReader()
    port = reader.open_virtual("in")
    config = _live_config(kind, invocation, world["checkpoint"]).with_overrides({"midi.port": port})
    stack = LiveStack(config, input_file=str(world["play"]), loop=True, model_path=str(world["models"][kind]))
    try:
        stack.start()
        learned = lambda: stage_counter(stack.stats(), "oracle", "stage_learned") >= LEARNED  # noqa: E731
        assert wait_until(learned, timeout_s=90), stack.stats()
        played = lambda: ReceiverModel().feed_all(reader.wait_for(0, timeout_s=0)).note_ons >= NOTES_OUT  # noqa: E731
        assert wait_until(played, timeout_s=60), "no notes came out of the JACK port"
        stats = stack.stats()
    finally:
        stack.stop(graceful=False)
        reader.close()
    assert stack.perception_spec is not None
    assert stack.encoder_info["views"] == VIEWS[kind]  # it listens with the views the model was trained with
    assert stage_counter(stats, "encoder", "stage_events") > 0  # the encoder made the percepts …
    assert stage_counter(stats, "encoder", "exceptions") == 0, stats["encoder"].get("first_exception")
    assert stage_counter(stats, "oracle", "stage_dim_mismatch") == 0  # … all of the memory's dimension
    assert stage_counter(stats, "oracle", "percepts") >= LEARNED
    assert LiveStack.deafness(stats) is None


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
def test_readme_play_command_for_a_hybrid_model_exits_0_having_learned(jack_server, world, tmp_path):
    """``musichal --model m.json`` (the README's command) on a wav2vec hybrid model: plays, learns, exit 0."""
    stats_file = tmp_path / "stats.json"
    command = [
        sys.executable,
        str(REPO / "launch.py"),
        "--model",
        str(world["models"]["hybrid"]),
        "--input-file",
        str(world["play"]),
        "--midi-api",
        "jack",
        "--quiet",
        "--stats",
        "--stats-file",
        str(stats_file),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    final = json.loads(stats_file.read_text())
    assert stage_counter(final, "oracle", "stage_learned") > 0
    assert stage_counter(final, "oracle", "stage_dim_mismatch") == 0
    assert stage_counter(final, "encoder", "exceptions") == 0
    # no warning, except the running notice "learned 0 of N events" that a slow start (a loaded machine, the wav2vec
    # encoder missing its first deadlines) can print after DEAF_AFTER_S: the exit status 0 says it learned in the end
    warnings = [line for line in result.stderr.splitlines() if "warning" in line and "learned 0 of" not in line]
    assert warnings == [], warnings


def _break_wav2vec(self):
    """Runs inside the encoder actor: every wav2vec forward from now on raises (a lost device)."""

    def lost(*args, **kwargs):
        raise RuntimeError("CUDA error: device lost")

    self.stage.perception.wav2vec.encoder._forward = lost
    return True


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
def test_encoder_exceptions_are_counted_shown_and_never_turn_into_mismatched_percepts(jack_server, ray_module, world):
    from services.stack import LiveStack
    from testkit.waiting import actor_call

    config = _live_config("hybrid", "no-flags", world["checkpoint"])
    stack = LiveStack(config, input_file=str(world["play"]), loop=True, model_path=str(world["models"]["hybrid"]))
    try:
        stack.start()
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "stage_learned") >= 2, timeout_s=90), (
            stack.stats()
        )
        assert actor_call(stack.actors["encoder"], _break_wav2vec)
        before = stack.stats()
        failing = lambda: stage_counter(stack.stats(), "encoder", "exceptions") >= 3  # noqa: E731
        assert wait_until(failing, timeout_s=60), stack.stats()

        # the events keep being answered (autonomously: the memory cannot use traditional vectors)
        def answered():
            return stage_counter(stack.stats(), "oracle", "fallback_autonomous") > stage_counter(
                before, "oracle", "fallback_autonomous"
            )

        assert wait_until(answered, timeout_s=30), stack.stats()
        stats = stack.stats()
    finally:
        stack.stop(graceful=False)
    encoder = stats["encoder"]
    assert encoder["error"] is None  # the encoder loop survives a failing event
    assert encoder["first_exception"] == "RuntimeError: CUDA error: device lost"
    assert stage_counter(stats, "oracle", "stage_dim_mismatch") == 0
    assert stage_counter(stats, "oracle", "fallback_local") == 0
    line = LiveStack.status_line(stats, 1.0)
    assert f"ENCODER ERRORS {stage_counter(stats, 'encoder', 'exceptions')}" in line


@pytest.mark.ray
@pytest.mark.jack
@pytest.mark.slow
def test_save_learned_checkpoint_is_a_model_that_describes_and_plays(jack_server, ray_module, world, tmp_path):
    """``--save-learned L`` then ``--model L``: L records the perception the stack listened with, describes, plays."""
    from services.model_file import load_musichal_model
    from services.stack import LiveStack

    learned_file = tmp_path / "live.json"
    trained = load_musichal_model(world["models"]["traditional"])
    config = _live_config("traditional", "no-flags", world["checkpoint"])
    stack = LiveStack(
        config,
        input_file=str(world["play"]),
        loop=True,
        model_path=str(world["models"]["traditional"]),
        checkpoint_path=str(learned_file),
    )
    try:
        stack.start()
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "stage_learned") >= LEARNED, timeout_s=90)
    finally:
        stack.stop()  # graceful: the oracle writes its checkpoint
    live = load_musichal_model(learned_file)
    assert live.spec is not None and live.spec.matches(trained.spec)  # the same perception, recorded
    assert live.meta["oracle"]["audio"]["n_states"] > trained.meta["oracle"]["audio"]["n_states"]  # + what it learned
    described = cli_without_ray(["--model", str(learned_file), "--describe"], world["root"])
    assert described.returncode == 0, described.stderr
    assert "listens with: traditional (primary traditional)" in described.stdout
    again = LiveStack(config, input_file=str(world["play"]), loop=True, model_path=str(learned_file))
    try:
        again.start()
        assert wait_until(lambda: stage_counter(again.stats(), "oracle", "stage_learned") >= LEARNED, timeout_s=90)
        stats = again.stats()
    finally:
        again.stop(graceful=False)
    assert stage_counter(stats, "oracle", "stage_dim_mismatch") == 0
    assert stage_counter(stats, "oracle", "percepts") >= LEARNED
