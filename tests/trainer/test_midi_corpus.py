"""musichal-train on MIDI corpora: music21 chorales exported to MIDI (alone, and mixed with audio), the same Ray
fan-out, cache and determinism as audio; corrupt and drum-only files skipped and listed."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
import soundfile as sf

from services.model_file import describe_model, load_musichal_model
from services.trainer.cli import main
from services.trainer.discovery import corpus_config, discover_audio_files, discover_corpus
from services.trainer.pipeline import stats_path_for, train
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from testkit.audio import CHORALES, chorale_notes, write_midi_notes
from tests.trainer.conftest import SR, note_sequence

VOCAB = "8"


@pytest.fixture(scope="module")
def midi_corpus(tmp_path_factory) -> Path:
    """Four chorales as type-0 MIDI files, a drum-only file (channel 10) and a corrupt file."""
    root = tmp_path_factory.mktemp("midi_corpus")
    for name in CHORALES:
        write_midi_notes(chorale_notes(name, bpm=100), root / f"{name.replace('/', '_')}.mid")
    drums = mido.MidiFile(type=0)
    track = mido.MidiTrack()
    for _ in range(8):
        track += [
            mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
            mido.Message("note_off", channel=9, note=36, velocity=0, time=240),
        ]
    drums.tracks.append(track)
    drums.save(root / "drums.midi")
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00\x90")
    return root


def _bytes(output: Path) -> tuple[bytes, bytes]:
    return output.read_bytes(), output.with_suffix(".safetensors").read_bytes()


def _train(corpus: Path, output: Path, *extra: str) -> int:
    return main(["--dir", str(corpus), "--output", str(output), "--vocabulary-size", VOCAB, "--quiet", *extra])


@pytest.mark.ray
def test_midi_files_train_a_symbolic_model_identically_on_one_and_two_workers(ray_module, midi_corpus, tmp_path):
    one, two = tmp_path / "w1" / "model.json", tmp_path / "w2" / "model.json"
    assert _train(midi_corpus, one, "--workers", "1") == 0
    assert _train(midi_corpus, two, "--workers", "2") == 0
    assert _bytes(one) == _bytes(two)
    model = load_musichal_model(one)
    assert model.spec.views == ("symbolic",) and model.meta["config"]["features"]["kind"] == "symbolic"
    training = model.meta["training"]
    names = [f["name"] for f in training["files"]]
    assert names == sorted(f"{c.replace('/', '_')}.mid" for c in CHORALES)
    skipped = {s["name"]: s["reason"] for s in training["skipped"]}
    assert set(skipped) == {"broken.mid", "drums.midi"}
    assert skipped["drums.midi"] == "no notes found" and "not a readable MIDI file" in skipped["broken.mid"]
    # every chorale event is a chord of the score (four voices mostly: several pitch classes per event)
    assert training["events"] == sum(f["events"] for f in training["files"]) > 200
    assert "listens with: symbolic" in describe_model(model)
    first = _bytes(one)
    assert _train(midi_corpus, one, "--workers", "2") == 0  # a re-run: every file from the cache, same bytes
    assert _bytes(one) == first
    assert stats_path_for(one).read_text().count('"from_cache": true') == 4


def test_drums_are_learned_when_asked_and_mixed_audio_is_heard_through_its_notes(midi_corpus, tmp_path):
    config = MusicHalConfig().with_overrides({"quantizer.vocabulary_size": int(VOCAB)})
    drums = train(
        [midi_corpus / "drums.midi"],
        config=config.with_overrides({"features.midi_drums": True}),
        output=tmp_path / "drums" / "model.json",
    )
    assert drums.training["events"] == 8
    wav = tmp_path / "audio" / "take.wav"
    wav.parent.mkdir()
    sf.write(wav, note_sequence(3, 3.0), SR)
    paths = [wav, midi_corpus / f"{CHORALES[0].replace('/', '_')}.mid"]
    mixed = train(paths, config=config, output=tmp_path / "mixed" / "model.json")
    events = {f["name"]: f["events"] for f in mixed.training["files"]}
    assert len(events) == 2 and any(name.endswith("take.wav") for name in events)
    assert all(n > 0 for n in events.values())
    assert load_musichal_model(tmp_path / "mixed" / "model.json").spec.views == ("symbolic",)


def test_midi_with_wav2vec_is_one_line_before_ray(midi_corpus, capsys):
    with pytest.raises(ParameterError):
        corpus_config(MusicHalConfig().with_overrides({"features.kind": "wav2vec"}), [midi_corpus / "broken.mid"])
    assert corpus_config(MusicHalConfig(), [Path("a.wav")]).features.kind == "traditional"
    assert _train(midi_corpus, midi_corpus.parent / "never" / "model.json", "--wav2vec") == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("musichal-train: error:") and "symbolic view" in error and "\n" not in error
    assert not (midi_corpus.parent / "never").exists()
    assert len(discover_corpus(dirs=[midi_corpus])[0]) == 6 and discover_audio_files(dirs=[midi_corpus]) == []


def test_a_folder_of_audio_with_midi_beside_it_trains_the_audio_view_as_before(midi_corpus, tmp_path):
    folder = tmp_path / "rendered"
    folder.mkdir()
    sf.write(folder / "take.wav", note_sequence(1, 2.0), SR)
    write_midi_notes([(60, 0.1, 0.3, 90)], folder / "take.mid")  # the rendering's source, beside it
    corpus, left_out = discover_corpus(dirs=[folder])
    assert [p.name for p in corpus] == ["take.wav"] and [p.name for p in left_out] == ["take.mid"]
    assert corpus_config(MusicHalConfig(), corpus).features.kind == "traditional"
    both, none_left = discover_corpus(dirs=[folder], symbolic=True)
    assert [p.name for p in both] == ["take.mid", "take.wav"] and none_left == []
    named, _ = discover_corpus(files=[folder / "take.mid"], dirs=[folder])  # a MIDI file named with --file is in
    assert [p.name for p in named] == ["take.mid", "take.wav"]
    assert corpus_config(MusicHalConfig(), named).features.kind == "symbolic"


def test_the_trainer_flags_set_the_symbolic_view_and_its_grouping():
    from services.trainer.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--dir", "x", "--symbolic", "--chord-window-ms", "45", "--midi-drums"])
    config = config_from_args(args)
    assert config.features.kind == "symbolic" and config.features.chord_window_ms == 45.0 and config.features.midi_drums
    with pytest.raises(ParameterError):
        config_from_args(build_parser().parse_args(["--dir", "x", "--symbolic", "--wav2vec"]))
    with pytest.raises(ParameterError):
        config_from_args(build_parser().parse_args(["--dir", "x", "--chord-window-ms", "-1"]))
