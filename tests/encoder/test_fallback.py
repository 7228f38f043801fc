"""The one traditional fallback factory (services.encoder.fallback.traditional_stage): what it builds and refuses."""

from __future__ import annotations

import numpy as np
import pytest

from services.encoder.fallback import early_view, traditional_stage
from services.encoder.features import FEATURE_DIMENSION
from services.encoder.perception_model import PerceptionModel
from services.encoder.stage import DimensionMismatchError
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Event

SR = 48000


def _tone(pitch_hz: float = 220.0, seconds: float = 0.2) -> tuple[Event, np.ndarray]:
    n = int(SR * seconds)
    window = (0.2 * np.sin(2 * np.pi * pitch_hz * np.arange(n) / SR)).astype(np.float32)
    return Event(event_id=1, onset_sample=0, window_start=0, window_end=n, sample_rate_hz=SR), window


def _hybrid_model() -> PerceptionModel:
    rng = np.random.default_rng(0)
    model = PerceptionModel(views=("traditional", "wav2vec"), primary_view="wav2vec", vocabulary_size=4)
    return model.fit_arrays(
        {
            "traditional": rng.standard_normal((40, FEATURE_DIMENSION)).astype(np.float32),
            "wav2vec": rng.standard_normal((40, 4)).astype(np.float32),
        }
    )


def test_learning_live_it_makes_traditional_percepts_and_refuses_a_wav2vec_memory():
    stage = traditional_stage(MusicHalConfig(), node_id="n1")
    percept = stage.process(_tone())
    assert percept.view == "traditional" and percept.features.shape == (FEATURE_DIMENSION,) and percept.node_id == "n1"
    assert stage.memory_dimension == FEATURE_DIMENSION and stage.perception.wav2vec is None
    wav2vec = MusicHalConfig().with_overrides({"features.kind": "wav2vec"})
    with pytest.raises(DimensionMismatchError):
        traditional_stage(wav2vec)


def test_an_early_view_is_its_pitch_and_chroma_alone():
    """25 ms of an onset (half the default segmenter.early_ms): the pitch and chroma the player is influenced by, from
    the same descriptor code as the full window; no model, memory or quantizer is involved."""
    stage = traditional_stage(MusicHalConfig())
    for pitch_hz, pitch_class in ((220.0, 9), (329.63, 4), (440.0, 9), (587.33, 2)):  # A3, E4, A4, D5
        event, window = _tone(pitch_hz, seconds=0.025)
        percept = early_view(event, window, node_id="n1")
        full = stage.process(_tone(pitch_hz)).descriptors
        d = percept.descriptors
        assert d is not None and d.f0_hz == pytest.approx(pitch_hz, rel=0.01)
        assert d.f0_hz == pytest.approx(full.f0_hz, rel=0.01)
        assert d.chroma_peaks[0] == full.chroma_peaks[0] == pitch_class
    assert percept.node_id == "n1" and percept.features.size == 0
    with pytest.raises(ParameterError):
        early_view(event, np.zeros((2, 10), np.float32))


def test_a_fitted_model_gives_its_traditional_tokens_unless_the_memory_holds_other_vectors():
    model = _hybrid_model()
    with pytest.raises(DimensionMismatchError):  # the memory holds 4-D wav2vec vectors
        traditional_stage(MusicHalConfig(), model, memory_dimension=4)
    stage = traditional_stage(MusicHalConfig(), model)  # memory unknown: not checked
    percept = stage.process(_tone())
    assert percept.view == "traditional" and stage.model is model
    assert percept.token == int(
        model.tokens([{"traditional": percept.features}], views=["traditional"])["traditional"][0]
    )
    wav2vec_only = PerceptionModel(views=("wav2vec",), primary_view="wav2vec", vocabulary_size=4)
    with pytest.raises(DimensionMismatchError):  # no traditional view at all
        traditional_stage(MusicHalConfig(), wav2vec_only)


def test_an_early_view_leaves_the_bass_register_to_the_pitch():
    """A chord over a strong low G2 (98 Hz) in the 50 ms early view: its strongest chroma classes are the chord's,
    and the semitones beside G2 that a 50 ms window smears it into (F#, Ab) are not among its peaks; the f0 names
    the bass."""
    n = int(SR * 0.05)
    t = np.arange(n) / SR
    bass = 0.5 * np.sin(2 * np.pi * 98.0 * t)  # G2
    chord = sum(0.12 * np.sin(2 * np.pi * f * t) for f in (246.94, 293.66, 392.0))  # B3 D4 G4
    event = Event(event_id=1, onset_sample=0, window_start=0, window_end=n, sample_rate_hz=SR)
    d = early_view(event, (bass + chord).astype(np.float32)).descriptors
    assert set(d.chroma_peaks[:3]) == {7, 11, 2}  # G, B, D
    assert 6 not in d.chroma_peaks and 8 not in d.chroma_peaks
    assert round(12 * np.log2(d.f0_hz / 440.0) + 69) % 12 == 7
