"""End to end the way a user plays: music into a JACK audio port → PyAudio's JACK input → the full stack with a
trained model → MIDI read back from a JACK MIDI port, and an SMF written.

The music is rendered by fluidsynth from MIDI this test writes; a JACK-Client player plays it into the input ports
PortAudio registers for the capture actor (the dummy backend's silent ``system:capture`` ports are disconnected).
The model is trained by the trainer on another rendering in the same key. Checks: notes arrive and all end, the
output's pitch-class histogram follows the input's clearly above a shuffled-pitch-class baseline, ``lead`` mode is not
a delayed copy of the input (few verbatim 4-grams), and the SMF holds what was sent.
"""
from __future__ import annotations

import threading

import mido
import numpy as np
import pytest

from shared.config import MusicHalConfig
from tests.audio_fixtures import render_midi_notes
from tests.midi_out.helpers import JackReader, ReceiverModel, unique_name
from tests.waiting import wait_until

import jack  # JACK-Client, a required dev dependency (plays audio into a JACK port): missing, this module fails
pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]

SCALE = [62, 64, 66, 69, 71, 74, 78]  # D major pentatonic-ish: D E F# A B D F#


def melody(*, seed: int, notes: int, step_s: float = 0.3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [(int(rng.choice(SCALE)), 0.3 + i * step_s, step_s * 0.8, int(rng.integers(75, 105))) for i in range(notes)]


def pc_histogram(pitches) -> np.ndarray:
    hist = np.bincount(np.asarray(pitches, dtype=int) % 12, minlength=12).astype(float)
    return hist / max(1.0, hist.sum())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def ngram_overlap(output: list[int], source: list[int], n: int = 4) -> float:
    """Fraction of the output's n-grams that occur verbatim in ``source``."""
    grams = {tuple(source[i:i + n]) for i in range(len(source) - n + 1)}
    out = [tuple(output[i:i + n]) for i in range(len(output) - n + 1)]
    return sum(g in grams for g in out) / max(1, len(out))


class WavPlayer:
    """A JACK client with one audio output that plays ``audio`` once when :meth:`play` is called."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.position = 0
        self.playing = threading.Event()
        self.done = threading.Event()
        self.client = jack.Client(unique_name("mh-player"), no_start_server=True)
        self.port = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        buffer = self.port.get_array()
        buffer[:] = 0.0
        if not self.playing.is_set() or self.done.is_set():
            return
        chunk = self.audio[self.position:self.position + frames]
        buffer[:chunk.size] = chunk
        self.position += frames
        if self.position >= self.audio.size:
            self.done.set()

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    from services.trainer.pipeline import train

    folder = tmp_path_factory.mktemp("e2e")
    training = melody(seed=21, notes=60)
    performance = melody(seed=22, notes=40)
    train_wav = render_midi_notes(training, folder / "train.wav")
    play_wav = render_midi_notes(performance, folder / "play.wav")
    model = folder / "model.json"
    train([train_wav], config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 16}), output=model,
          cache_dir=folder / "cache")
    return {"model": model, "play_wav": play_wav, "performance": performance}


def portaudio_inputs(client) -> list[str]:
    """Audio input ports that belong to the capture actor's PortAudio client (not ours, not system's)."""
    return [p.name for p in client.get_ports(is_audio=True, is_input=True)
            if not p.name.startswith(("system:", "mh-player"))]


def test_music_through_a_jack_audio_port_to_jack_midi_with_a_trained_model(jack_server, ray_local, pieces, tmp_path):
    import soundfile as sf

    from launch import LiveStack

    audio, rate = sf.read(str(pieces["play_wav"]), dtype="float32", always_2d=True)
    assert rate == 48000
    player = WavPlayer(audio.mean(axis=1))
    reader = JackReader()
    port = reader.open_virtual("in")
    record = tmp_path / "lead.mid"
    config = MusicHalConfig().with_overrides({
        "midi.api": "jack", "midi.port": port, "midi.profile": "gm-safe", "midi.record_path": str(record),
        "generation.mode": "lead", "generation.seed": 4})
    stack = LiveStack(config, input_device="system", model_path=str(pieces["model"]))
    try:
        stack.start()
        assert wait_until(lambda: len(portaudio_inputs(player.client)) >= 1, timeout_s=30), \
            [p.name for p in player.client.get_ports(is_audio=True)]
        for name in portaudio_inputs(player.client):
            for source in player.client.get_all_connections(name):
                player.client.disconnect(source, name)
            player.client.connect(player.port, name)
        player.playing.set()
        assert player.done.wait(timeout=120), "the player did not finish"
        assert wait_until(lambda: stack.stats()["capture"]["counters"].get("events", 0) >= 10, timeout_s=30), stack.stats()
        final = stack.stop(graceful=True, drain_s=5.0)
    finally:
        stack.stop(graceful=False)
        messages = reader.wait_for(0, timeout_s=0)
        reader.close()
        player.close()

    assert final["capture"]["counters"]["events"] >= 15, final["capture"]  # the stack heard the music via JACK
    assert final["capture"].get("error") is None
    model = ReceiverModel().feed_all(messages)
    assert model.note_ons >= 8, f"too few notes: {model.note_ons}"
    assert model.on == set(), f"notes left sounding: {model.on}"
    out_pitches = [m[1] for m in messages if (m[0] & 0xF0) == 0x90 and m[2] > 0]
    smf_pitches = [m.note for m in mido.MidiFile(record) if m.type == "note_on" and m.velocity > 0]
    assert smf_pitches == out_pitches  # the SMF holds exactly what was sent

    in_pitches = [n[0] for n in pieces["performance"]]
    out_hist, in_hist = pc_histogram(out_pitches), pc_histogram(in_pitches)
    actual = correlation(out_hist, in_hist)
    rng = np.random.default_rng(0)
    baseline = [correlation(out_hist, in_hist[rng.permutation(12)]) for _ in range(500)]
    overlap = ngram_overlap(out_pitches, in_pitches, n=4)
    print(f"e2e: events {final['capture']['counters']['events']}, notes {model.note_ons}, pc correlation {actual:.2f} "
          f"(shuffled p99 {np.percentile(baseline, 99):.2f}), 4-gram overlap {overlap:.0%}")
    assert actual > 0.6 and actual > np.percentile(baseline, 99), (actual, np.percentile(baseline, [50, 99]))
    # lead mode plays its own phrases: not a delayed copy of what it heard
    assert overlap < 0.35, f"{overlap:.0%} of the output's 4-grams are verbatim input"
