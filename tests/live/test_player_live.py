"""The clocked player on the whole stack: it reacts to onsets through their early views and plays on through
the input's silence. Assertions read the session log (one clock for onsets and decisions), never wall-time windows."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import MusicHalConfig
from testkit.audio import render_midi_notes
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]


@pytest.fixture(scope="module")
def melody_then_silence(tmp_path_factory):
    """5 s of a C-major melody (one note every 0.4 s), then 8 s of silence."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("player")
    rng = np.random.default_rng(4)
    notes = [(int(rng.choice([60, 62, 64, 65, 67, 69, 71, 72])), 0.2 + 0.4 * i, 0.34, 90) for i in range(12)]
    wav = render_midi_notes(notes, folder / "melody.wav")
    audio, sr = sf.read(wav, dtype="float32")
    padded = np.concatenate([audio[: int(5.2 * sr)], np.zeros((8 * sr,) + audio.shape[1:], np.float32)])
    sf.write(folder / "melody_silence.wav", padded, sr)
    return folder / "melody_silence.wav"


@pytest.mark.parametrize("mode", ["imitate", "lead"])
def test_player_reacts_early_and_plays_through_the_silence(jack_server, ray_local, melody_then_silence, mode, tmp_path):
    import ray

    from services.oracle.player.replay import replay_session
    from services.oracle.player.session import read_session
    from services.stack import LiveStack

    log = tmp_path / "session.jsonl"
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.profile": "gm-safe",
            "generation.mode": mode,
            "generation.seed": 2,
            "control.input_gate": False,
        }
    )
    stack = LiveStack(config, input_file=str(melody_then_silence), session_log=str(log))
    try:
        stack.start()
        assert wait_until(stack.finished, timeout_s=90), "the input file was not played to its end"
        reaction = ray.get(stack.actors["midi_out"].latency_values.remote("onset_to_note"), timeout=10)
        stack.stop(graceful=True)
    finally:
        stack.stop(graceful=False)
    records = read_session(log)
    percepts = [r for r in records if r["kind"] == "percept"]
    notes = [n for r in records if r["kind"] == "notes" for n in r["notes"]]
    early = [p for p in percepts if p.get("early")]
    full = [p for p in percepts if not p.get("early")]
    assert len(full) >= 8 and len(early) >= 8, "each onset should come as an early view and a full window"
    last_onset = max(p["onset_t"] for p in percepts)
    # the input is silent after its last onset; the player plays on by its own clock (learned IOIs <= 2 s)
    after = [n for n in notes if n["t_on"] > last_onset + 1.0]
    assert len(after) >= 3, f"{len(after)} notes in the silence"
    if mode == "imitate":
        # onset -> first note chosen with that onset's influence, measured by midi_out at note-on
        assert len(reaction) >= len(early) // 2
        assert np.median(reaction) < 0.5  # the early view answers long before the 500 ms window is complete
    # the session replays to the same decisions
    assert replay_session(log).identical
