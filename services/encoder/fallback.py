"""The traditional fallback: one factory for the cheap traditional-view encoder stage.

Three places need a stage that computes only the traditional view (22-D features, pitch and chroma) when the
primary one cannot be used: the encoder's too-slow guard (:class:`~services.encoder.guard.GuardedEncoder`, switched
to when wav2vec cannot keep up), the oracle actor's local analysis of an event whose percept missed its deadline,
All build it with :func:`traditional_stage`.

Its percepts must feed the oracle's memory, so it refuses (:class:`DimensionMismatchError`) when they cannot: a
model without a traditional view, a model whose memory holds vectors of another dimension, or a memory learned live
from wav2vec vectors.

An onset's *early view* (its first ``segmenter.early_ms``) only influences the player and triggers its reaction; it
is never learned, so it needs no stage, model or memory: :func:`early_view` computes just its pitch and chroma
(:func:`~services.encoder.features.describe_event`, ~1 ms) — not the 22-D vector, the slice's expression curves or
its transcription, which the full window provides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from services.encoder.features import FEATURE_DIMENSION, describe_event
from services.encoder.perception_model import PerceptionModel
from services.encoder.stage import DimensionMismatchError, EncoderStage
from services.encoder.views import HybridPerceptionModule
from shared.config import MusicHalConfig
from shared.messages import Event, Percept

__all__ = ["traditional_stage", "early_view"]


def traditional_stage(
    config: MusicHalConfig | None = None,
    model: PerceptionModel | None = None,
    *,
    spec: Any = None,
    memory_dimension: int | None = None,
    node_id: str = "",
) -> EncoderStage:
    """An :class:`EncoderStage` computing only the traditional view (feature settings from ``config``).

    Parameters
    ----------
    config:
        Runtime settings (``features.slice_notes`` …); its feature kind is replaced by ``traditional``.
    model:
        The fitted :class:`PerceptionModel` whose traditional quantizer gives the tokens; None = learning live.
    spec:
        A :class:`~services.encoder.spec.PerceptionSpec` instead of ``model``: its model and memory dimension.
    memory_dimension:
        The oracle memory's feature dimension (None: unknown, not checked); learning live it is the traditional one.

    Raises :class:`DimensionMismatchError` when the memory cannot use traditional percepts.
    """
    config = config or MusicHalConfig()
    if spec is not None:
        model, memory_dimension = spec.perception_model(), spec.memory_dimension
    if model is not None:
        if "traditional" not in model.views:
            raise DimensionMismatchError(
                f"the model's memory holds {model.primary_view} vectors and it has no traditional view"
            )
        if memory_dimension is not None and model.quantizers["traditional"].dimension != memory_dimension:
            raise DimensionMismatchError(
                f"the model's memory holds {memory_dimension}-D {model.primary_view} vectors; "
                "the traditional view cannot feed it"
            )
    else:
        if config.features.kind in ("wav2vec", "symbolic"):
            raise DimensionMismatchError(
                f"a memory learned live from {config.features.kind} vectors cannot use traditional ones"
            )
        memory_dimension = FEATURE_DIMENSION
    traditional = replace(config, features=replace(config.features, kind="traditional", hybrid=False))
    return EncoderStage(
        HybridPerceptionModule.from_config(traditional), model, node_id=node_id, memory_dimension=memory_dimension
    )


#: an early view's chroma is taken from a spectrum zero-padded to this length (2.9 Hz bins at 48 kHz): a 25 ms
#: window's 40 Hz bins would put mid-range partials in the neighbouring pitch class (E4 as D#, A3 as B)
EARLY_MIN_FFT = 16384
#: an early view's chroma starts at C3: below it a 50 ms window's main lobe (±40 Hz) spans several semitones, and a
#: strong bass note put its neighbours among the view's peaks (G2 read as G, F#, Ab); the bass register is the
#: pitch's (YIN f0) there (docs/architecture.md has the measurements behind C3).
EARLY_CHROMA_FMIN_HZ = 130.81


def early_view(event: Event, window: np.ndarray, *, node_id: str = "") -> Percept:
    """An onset's early view as a Percept: its pitch and chroma (descriptors), no token or vector of any use (the
    player takes an early view's influence from its descriptors alone; token 0 and an empty vector stand in).

    Raises
    ------
    ParameterError
        On a bad window (see :func:`~services.encoder.features.describe_event`).
    """
    sr = int(event.sample_rate_hz)
    descriptors = describe_event(
        window,
        sample_rate_hz=sr,
        onset_s=event.onset_s,
        duration_s=np.asarray(window).shape[0] / sr,
        min_fft=EARLY_MIN_FFT,
        chroma_fmin_hz=EARLY_CHROMA_FMIN_HZ,
    )
    return Percept(
        event_id=event.event_id,
        token=0,
        features=np.zeros(0, dtype=np.float32),
        descriptors=descriptors,
        node_id=node_id,
        stamps={"t_detected": event.t_detected},
    )
