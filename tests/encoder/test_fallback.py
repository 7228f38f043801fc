"""The one traditional fallback factory (services.encoder.fallback.traditional_stage): what it builds and refuses."""
from __future__ import annotations

import numpy as np
import pytest

from shared.config import MusicHalConfig
from shared.messages import Event
from services.encoder.features import FEATURE_DIMENSION
from services.encoder.fallback import traditional_stage
from services.encoder.perception_model import PerceptionModel
from services.encoder.stage import DimensionMismatchError

SR = 48000


def _tone(pitch_hz: float = 220.0, seconds: float = 0.2) -> tuple[Event, np.ndarray]:
    n = int(SR * seconds)
    window = (0.2 * np.sin(2 * np.pi * pitch_hz * np.arange(n) / SR)).astype(np.float32)
    return Event(event_id=1, onset_sample=0, window_start=0, window_end=n, sample_rate_hz=SR), window


def _hybrid_model() -> PerceptionModel:
    rng = np.random.default_rng(0)
    model = PerceptionModel(views=("traditional", "wav2vec"), primary_view="wav2vec", vocabulary_size=4)
    return model.fit_arrays({"traditional": rng.standard_normal((40, FEATURE_DIMENSION)).astype(np.float32),
                             "wav2vec": rng.standard_normal((40, 4)).astype(np.float32)})


def test_learning_live_it_makes_traditional_percepts_and_refuses_a_wav2vec_memory():
    stage = traditional_stage(MusicHalConfig(), node_id="n1")
    percept = stage.process(_tone())
    assert percept.view == "traditional" and percept.features.shape == (FEATURE_DIMENSION,) and percept.node_id == "n1"
    assert stage.memory_dimension == FEATURE_DIMENSION and stage.perception.wav2vec is None
    wav2vec = MusicHalConfig().with_overrides({"features.kind": "wav2vec"})
    with pytest.raises(DimensionMismatchError):
        traditional_stage(wav2vec)


def test_early_views_never_refuse_and_involve_no_model_or_memory():
    wav2vec = MusicHalConfig().with_overrides({"features.kind": "wav2vec"})
    stage = traditional_stage(wav2vec, _hybrid_model(), memory_dimension=4, descriptors_only=True)
    assert stage.model is None and stage.memory_dimension is None and stage.perception.wav2vec is None
    percept = stage.process(_tone(330.0))
    assert percept.view == "traditional" and percept.descriptors is not None and percept.descriptors.f0_hz > 0


def test_a_fitted_model_gives_its_traditional_tokens_unless_the_memory_holds_other_vectors():
    model = _hybrid_model()
    with pytest.raises(DimensionMismatchError):  # the memory holds 4-D wav2vec vectors
        traditional_stage(MusicHalConfig(), model, memory_dimension=4)
    stage = traditional_stage(MusicHalConfig(), model)  # memory unknown: not checked
    percept = stage.process(_tone())
    assert percept.view == "traditional" and stage.model is model
    assert percept.token == int(model.tokens([{"traditional": percept.features}], views=["traditional"])["traditional"][0])
    wav2vec_only = PerceptionModel(views=("wav2vec",), primary_view="wav2vec", vocabulary_size=4)
    with pytest.raises(DimensionMismatchError):  # no traditional view at all
        traditional_stage(MusicHalConfig(), wav2vec_only)
