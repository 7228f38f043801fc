from __future__ import annotations

import numpy as np
import pytest
import torch

from services.encoder.wav2vec import Wav2VecMusicEncoder, model_memory_bytes
from shared.errors import DeviceError, ParameterError
from testkit.audio import sine_tone


@pytest.fixture(scope="module", params=["group", "layer"])
def checkpoint(request, tiny_wav2vec_dir, tiny_wav2vec_layer_norm_dir):
    return tiny_wav2vec_dir if request.param == "group" else tiny_wav2vec_layer_norm_dir


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Wav2VecMusicEncoder(str(checkpoint))


def _windows(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.2).astype(np.float32) for n in lengths]


def test_loads_through_from_pretrained_and_reports(encoder):
    assert encoder.device == "cpu" and encoder.dimension == 32 and not encoder.is_fallback
    assert encoder.memory_bytes == model_memory_bytes(encoder.network) > 0
    assert encoder.load_seconds > 0


def test_batch_equals_single_for_equal_lengths(encoder):
    windows = _windows([8000] * 5)
    batch = encoder.encode_batch(windows, 16000)
    for window, feature in zip(windows, batch):
        assert np.allclose(feature.vector, encoder.encode(window, 16000).vector, atol=1e-5)


def test_grouped_batch_equals_single_and_keeps_order(encoder):
    windows = _windows([8000, 6000, 8000, 4000, 6000, 8000], seed=1)
    batch = encoder.encode_batch(windows, 16000, timestamps=list(range(6)))
    assert [f.timestamp for f in batch] == list(range(6))
    for window, feature in zip(windows, batch):
        assert np.allclose(feature.vector, encoder.encode(window, 16000).vector, atol=1e-5)
    calls = []
    original = encoder._forward
    encoder._forward = lambda x: calls.append(x.shape) or original(x)
    try:
        encoder.encode_batch(windows, 16000)
    finally:
        encoder._forward = original
    assert sorted(calls) == sorted([(3, 8000), (2, 6000), (1, 4000)])  # one forward per length, no padding


def test_equals_hugging_face_pipeline(checkpoint, encoder):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(checkpoint)
    model = Wav2Vec2Model.from_pretrained(checkpoint).eval()
    window = _windows([8000], seed=2)[0] + 0.05
    inputs = extractor(window, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state.mean(dim=1)[0].numpy()
    assert np.allclose(encoder.encode(window, 16000).vector, reference, atol=1e-5)
    with torch.no_grad():
        layer1 = model(**inputs, output_hidden_states=True).hidden_states[1].mean(dim=1)[0].numpy()
    assert np.allclose(Wav2VecMusicEncoder(str(checkpoint), layer=1).encode(window, 16000).vector, layer1, atol=1e-5)


def test_44k_stereo_tone_matches_16k_tone(encoder):
    tone16 = sine_tone(440.0, 0.5, 16000)
    tone44 = sine_tone(440.0, 0.5, 44100)
    stereo = np.stack([tone44, tone44], axis=1)
    a = encoder.encode(stereo, 44100).vector
    b = encoder.encode(tone16, 16000).vector
    other = encoder.encode(sine_tone(1300.0, 0.5, 16000), 16000).vector
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cosine > 0.99
    assert np.linalg.norm(a - b) < np.linalg.norm(a - other)


def test_bad_input(encoder):
    for bad in (
        np.zeros(0, np.float32),
        np.array([np.nan] * 8000, np.float32),
        np.zeros(1, np.float32),
        np.zeros((2, 2, 2)),
    ):
        with pytest.raises(ParameterError):
            encoder.encode(bad, 16000)
    with pytest.raises(ParameterError):
        encoder.encode(np.zeros(8000, np.float32), 10)
    silent = encoder.encode(np.zeros(8000, np.float32), 16000).vector  # all-zero: defined and finite
    assert np.isfinite(silent).all()
    for rate in (8000, 192000):
        assert encoder.encode(sine_tone(440.0, 0.3, rate), rate).vector.shape == (32,)
    eight = np.repeat(sine_tone(440.0, 0.3, 48000)[:, None], 8, axis=1)
    assert np.allclose(encoder.encode(eight, 48000).vector, encoder.encode(eight[:, 0], 48000).vector, atol=1e-5)


def test_missing_model_is_one_clear_line_and_fallback_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DeviceError) as info:
        Wav2VecMusicEncoder("nobody/no-such-wav2vec-checkpoint")
    assert "\n" not in str(info.value) and "save_pretrained" in str(info.value)
    with pytest.raises(DeviceError):
        Wav2VecMusicEncoder(str(tmp_path / "missing"))
    with pytest.warns(RuntimeWarning, match="traditional"):
        fallback = Wav2VecMusicEncoder(str(tmp_path / "missing"), fallback="traditional")
    assert fallback.is_fallback and fallback.dimension == 22
    features = fallback.encode(sine_tone(440.0, 0.5, 48000), 48000)
    assert features.fallback and features.vector.shape == (22,)


@pytest.mark.platform_skip  # checks the CPU-only path: skips where a GPU is present
def test_gpu_request_without_gpu_warns_and_int8_is_close(tiny_wav2vec_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.warns(RuntimeWarning, match="no CUDA or MPS"):
        encoder = Wav2VecMusicEncoder(str(tiny_wav2vec_dir), use_gpu=True)
    assert encoder.device == "cpu"
    int8 = Wav2VecMusicEncoder(str(tiny_wav2vec_dir), int8=True)
    assert int8.int8 and int8.memory_bytes < encoder.memory_bytes
    window = _windows([8000], seed=3)[0]
    a, b = encoder.encode(window, 16000).vector, int8.encode(window, 16000).vector
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.95
    with pytest.raises(ParameterError):
        Wav2VecMusicEncoder(str(tiny_wav2vec_dir), layer=7)
