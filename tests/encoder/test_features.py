from __future__ import annotations

import numpy as np
import pytest

from services.encoder.features import (
    FEATURE_DIMENSION,
    chroma,
    describe_event,
    estimate_f0,
    rms_to_velocity,
    traditional_features,
)
from shared.audio import load_audio_internal
from shared.errors import ParameterError
from testkit.audio import sine_tone

SR = 48000
MAJOR_KEYS = list(range(12))


@pytest.fixture(scope="module")
def triads(render_cache):
    """Piano triads in all 12 major keys (root in 55..66), each 500 ms window from the onset."""
    out = {}
    for root in MAJOR_KEYS:
        pitch = 60 + root if root < 6 else 48 + root
        path = render_cache(
            f"triad_{root}", [(pitch, 0.1, 1.0, 90), (pitch + 4, 0.1, 1.0, 90), (pitch + 7, 0.1, 1.0, 90)]
        )
        signal = load_audio_internal(path)
        out[root] = signal[int(0.1 * SR) : int(0.6 * SR)]
    return out


@pytest.mark.parametrize("root", MAJOR_KEYS)
def test_triad_top_three_chroma_bins_are_the_triad(triads, root):
    values = chroma(triads[root], sample_rate_hz=SR)
    top = set(np.argsort(-values)[:3].tolist())
    assert top == {root, (root + 4) % 12, (root + 7) % 12}
    peaks = describe_event(triads[root], sample_rate_hz=SR, onset_s=0.1, duration_s=0.5).chroma_peaks
    assert set(peaks[:3]) <= {root, (root + 4) % 12, (root + 7) % 12}


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0])
def test_f0_of_a_tone(freq):
    f0, confidence = estimate_f0(sine_tone(freq, 0.5, SR), sample_rate_hz=SR)
    assert abs(f0 - freq) < 0.005 * freq
    assert confidence > 0.9


def test_f0_of_440_is_440_and_noise_is_unconfident():
    f0, _ = estimate_f0(sine_tone(440.0, 0.5, SR), sample_rate_hz=SR)
    assert abs(f0 - 440.0) < 1.0
    noise = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.3
    f0_noise, confidence = estimate_f0(noise, sample_rate_hz=SR)
    assert confidence < 0.7


def test_chroma_of_a_tone_peaks_at_its_pitch_class():
    assert int(np.argmax(chroma(sine_tone(261.63, 0.5, SR), sample_rate_hz=SR))) == 0
    assert int(np.argmax(chroma(sine_tone(392.0, 0.5, SR), sample_rate_hz=SR))) == 7


def test_traditional_features_shape_range_and_meaning():
    tone = sine_tone(220.0, 0.5, SR)
    harmonic = tone + sine_tone(440.0, 0.5, SR, amplitude=0.3) + sine_tone(660.0, 0.5, SR, amplitude=0.2)
    features = traditional_features(harmonic, sample_rate_hz=SR)
    assert features.shape == (FEATURE_DIMENSION,) == (22,) and features.dtype == np.float32
    assert np.all((features >= 0) & (features <= 1))
    assert features[12] == pytest.approx(np.log2(2) / 4, abs=0.01)  # 440/220
    assert features[13] == pytest.approx(np.log2(3) / 4, abs=0.01)  # 660/220
    assert features[17] > 0.99  # all partials harmonic
    rough = sine_tone(440.0, 0.5, SR) + sine_tone(466.16, 0.5, SR)  # minor second
    fifth = sine_tone(440.0, 0.5, SR) + sine_tone(660.0, 0.5, SR)
    assert traditional_features(fifth, sample_rate_hz=SR)[16] > traditional_features(rough, sample_rate_hz=SR)[16]
    loud = traditional_features(tone, sample_rate_hz=SR)[21]
    quiet = traditional_features(tone * 0.01, sample_rate_hz=SR)[21]
    assert loud > quiet
    assert np.array_equal(traditional_features(harmonic, sample_rate_hz=SR), features)  # deterministic


def test_silence_and_one_sample_are_finite():
    for window in (np.zeros(24000, np.float32), np.zeros(1, np.float32), np.array([0.3], np.float32)):
        features = traditional_features(window, sample_rate_hz=SR)
        assert np.isfinite(features).all() and features.shape == (22,)
        assert np.isfinite(chroma(window, sample_rate_hz=SR)).all()
        f0, confidence = estimate_f0(window, sample_rate_hz=SR)
        assert np.isfinite(f0) and np.isfinite(confidence)
    assert not traditional_features(np.zeros(24000), sample_rate_hz=SR).any()
    descriptors = describe_event(np.zeros(24000, np.float32), sample_rate_hz=SR, onset_s=1.0, duration_s=0.5)
    assert descriptors.velocity == 1 and descriptors.chroma_peaks == () and descriptors.f0_hz == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(0, np.float32),
        np.array([0.1, np.nan], np.float32),
        np.array([np.inf, 0.0]),
        np.zeros((10, 2)),
        np.array(["a"]),
    ],
)
def test_bad_windows_raise(bad):
    for function in (chroma, estimate_f0, traditional_features):
        with pytest.raises(ParameterError):
            function(bad, sample_rate_hz=SR)


@pytest.mark.parametrize("rate_hz", [8000, 16000, 44100, 96000, 192000])
def test_rates_8_to_192_khz(rate_hz):
    tone = sine_tone(440.0, 0.5, rate_hz)
    assert int(np.argmax(chroma(tone, sample_rate_hz=rate_hz))) == 9
    f0, _ = estimate_f0(tone, sample_rate_hz=rate_hz)
    assert abs(f0 - 440.0) < 3.0
    assert np.isfinite(traditional_features(tone, sample_rate_hz=rate_hz)).all()
    with pytest.raises(ParameterError):
        chroma(tone, sample_rate_hz=100)


def test_velocity_mapping_is_monotonic_and_bounded():
    assert rms_to_velocity(0.0) == 1 and rms_to_velocity(1.0) == 127 and rms_to_velocity(10.0) == 127
    values = [rms_to_velocity(10 ** (db / 20)) for db in range(-70, 1, 5)]
    assert values == sorted(values) and len(set(values)) > 10
    with pytest.raises(ParameterError):
        describe_event(np.zeros(10), sample_rate_hz=SR, onset_s=0.0, duration_s=-1.0)
