"""Config, messages, the audio front end and the model container."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from shared.audio import StreamingFrontEnd, iter_file_blocks, load_audio_internal, probe_audio_file
from shared.config import MusicHalConfig
from shared.errors import AudioInputError, ModelFormatError, ParameterError
from shared.messages import Event, EventDescriptors, NoteEvent, Percept, message_from_bytes, message_to_bytes
from shared.model_io import arrays_path_for, load_model, save_model


# ------------------------------------------------------------------ config
def test_config_layers_defaults_toml_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[generation]\nmode = "lead"\ncontinuity = 0.5\n[midi]\nprofile = "gm-safe"\n')
    cfg = MusicHalConfig.from_toml(path).with_overrides({"generation.continuity": 0.9, "midi.port": None})
    assert (cfg.generation.mode, cfg.generation.continuity, cfg.midi.profile) == ("lead", 0.9, "gm-safe")
    assert cfg.audio.sample_rate_hz == 48000


@pytest.mark.parametrize(
    "text",
    [
        '[generation]\nmood = "x"\n',
        "[nosuch]\na = 1\n",
        '[midi]\nprofile = "loud"\n',
        "[generation]\ncontinuity = 2.0\n",
        "not toml = = =",
    ],
)
def test_config_rejects_unknown_or_bad_values(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ParameterError):
        MusicHalConfig.from_toml(path)


def test_config_missing_file_is_one_line():
    with pytest.raises(ParameterError, match="not found"):
        MusicHalConfig.from_toml("/nonexistent/musichal.toml")


# ------------------------------------------------------------------ messages
def test_messages_round_trip_through_orjson():
    desc = EventDescriptors(
        onset_s=1.0, duration_s=0.5, rms=0.1, velocity=80, f0_hz=440.0, f0_confidence=0.9, chroma_peaks=(9, 4)
    )
    percept = Percept(
        event_id=3,
        token=7,
        features=np.arange(4, dtype=np.float32),
        descriptors=desc,
        node_id="n1",
        stamps={"t_encoded": 1.5},
    )
    back = message_from_bytes(message_to_bytes(percept))
    assert back == percept and back.descriptors == desc
    np.testing.assert_array_equal(back.features, percept.features)
    event = Event(event_id=1, onset_sample=10, window_start=10, window_end=100, sample_rate_hz=48000, source="a.wav")
    assert message_from_bytes(message_to_bytes(event)) == event


def test_messages_validate_fields():
    with pytest.raises(ParameterError):
        NoteEvent(note_id=1, pitch=128, velocity=1, t_on=0, t_off=1)
    with pytest.raises(ParameterError):
        NoteEvent(note_id=1, pitch=60, velocity=90, t_on=2, t_off=1)
    with pytest.raises(ParameterError):
        Event(event_id=0, onset_sample=0, window_start=5, window_end=5, sample_rate_hz=48000)
    with pytest.raises(ParameterError):
        message_from_bytes(b"{not json")
    with pytest.raises(ParameterError):
        message_from_bytes(b'{"__type__": "Evil"}')


# ------------------------------------------------------------------ front end
def test_front_end_is_block_size_independent_when_resampling():
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((44100, 2)).astype(np.float32) * 0.1
    outs = []
    for block in (256, 1000, 4096):
        front = StreamingFrontEnd(input_rate_hz=44100, channels=2)
        pieces = [
            front.process(stereo[i : i + block], last=i + block >= len(stereo)) for i in range(0, len(stereo), block)
        ]
        outs.append(np.concatenate(pieces))
    assert abs(len(outs[0]) - 48000) <= 2
    for other in outs[1:]:
        np.testing.assert_allclose(other, outs[0], atol=1e-6)


def test_front_end_channel_choice_and_nonfinite_counting():
    front = StreamingFrontEnd(input_rate_hz=48000, channels=3, input_channel=2)
    block = np.array([[0.1, 0.2, 0.3], [np.nan, 0.0, np.inf]], dtype=np.float32)
    out = front.process(block)
    np.testing.assert_allclose(out, [0.3, 0.0])
    assert front.nonfinite_samples == 1
    with pytest.raises(ParameterError):
        StreamingFrontEnd(input_rate_hz=48000, channels=2, input_channel=2)
    with pytest.raises(ParameterError):
        StreamingFrontEnd(input_rate_hz=100, channels=1)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000, 192000])
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_files_of_any_rate_and_channel_count_become_internal_mono(tmp_path, rate, channels):
    t = np.arange(rate // 4) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate, subtype="PCM_24")
    out = load_audio_internal(path)
    assert abs(len(out) - 12000) <= 2 and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert abs(np.argmax(spectrum) * 48000 / len(out) - 440) < 8


def test_bad_audio_files_raise_one_line(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage" * 10)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1000, np.nan, np.float32), 48000, subtype="FLOAT")
    zero_frames = tmp_path / "zero.wav"
    sf.write(zero_frames, np.zeros(0, np.float32), 48000)
    for path in (empty, junk, zero_frames, tmp_path / "missing.wav", tmp_path):
        with pytest.raises(AudioInputError) as info:
            probe_audio_file(path)
        assert "\n" not in str(info.value)
    with pytest.raises(AudioInputError, match="NaN"):
        list(iter_file_blocks(nan))


# ------------------------------------------------------------------ model container
def test_model_round_trip_is_identical_and_deterministic(tmp_path):
    arrays = {
        "oracle.next": np.arange(10, dtype=np.int64),
        "perception.centroids": np.random.default_rng(1).random((4, 22)),
    }
    meta = {"transitions": [[0, 1, 2]], "name": "x", "n": np.int64(3)}
    save_model(tmp_path / "a.json", meta, arrays)
    save_model(tmp_path / "b.json", meta, arrays)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    meta2, arrays2 = load_model(tmp_path / "a.json")
    assert meta2 == {"transitions": [[0, 1, 2]], "name": "x", "n": 3}
    for key in arrays:
        np.testing.assert_array_equal(arrays2[key], arrays[key])
        assert arrays2[key].dtype == arrays[key].dtype


def test_model_validation_errors(tmp_path):
    path = tmp_path / "m.json"
    save_model(path, {"a": 1}, {"x": np.zeros(100)})
    good = path.read_bytes()
    cases = {
        "truncated": lambda: path.write_bytes(good[: len(good) // 2]),
        "wrong version": lambda: path.write_bytes(good.replace(b'"format_version": 1', b'"format_version": 99')),
        "missing arrays": lambda: os.unlink(arrays_path_for(path)),
        "corrupt arrays": lambda: arrays_path_for(path).write_bytes(b"\x00" * 20),
        "not a model": lambda: path.write_bytes(b'{"hello": 1}'),
    }
    for name, damage in cases.items():
        save_model(path, {"a": 1}, {"x": np.zeros(100)})
        damage()
        with pytest.raises(ModelFormatError) as info:
            load_model(path)
        assert "\n" not in str(info.value), name
    with pytest.raises(ModelFormatError):
        load_model(tmp_path / "nope.json")
    with pytest.raises(ParameterError):
        save_model(tmp_path / "m.bin", {}, {})


def test_optional_settings_round_trip_whatever_the_annotation_style():
    """``int | None`` fields (PEP 604) accept None from a mapping (a session log's recorded config, a TOML file
    without the key written as null) and still refuse a value of the wrong kind."""
    import dataclasses

    from shared.config import AudioConfig, MusicHalConfig, _check_value_type

    assert "None" in str(next(f.type for f in dataclasses.fields(AudioConfig) if f.name == "input_channel"))
    recorded = MusicHalConfig().to_dict()
    assert recorded["audio"]["input_channel"] is None
    assert MusicHalConfig.from_mapping(recorded) == MusicHalConfig()
    for annotation in ("int | None", "Optional[int]", "None | int"):
        _check_value_type("x", None, annotation)
        with pytest.raises(ParameterError):
            _check_value_type("x", "two", annotation)
    with pytest.raises(ParameterError):
        _check_value_type("x", None, "int")
