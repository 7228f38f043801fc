"""The traditional fallback: one factory for the cheap traditional-view encoder stage.

Three places need a stage that computes only the traditional view (22-D features, pitch and chroma) when the
primary one cannot be used: the encoder's too-slow guard (:class:`~services.encoder.guard.GuardedEncoder`, switched
to when wav2vec cannot keep up), the oracle actor's local analysis of an event whose percept missed its deadline,
and the oracle actor's early-view analyser. All three build it with :func:`traditional_stage`.

Its percepts must feed the oracle's memory, so it refuses (:class:`DimensionMismatchError`) when they cannot: a
model without a traditional view, a model whose memory holds vectors of another dimension, or a memory learned live
from wav2vec vectors. Early views only influence the player (never learned), so ``descriptors_only`` never refuses.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from shared.config import MusicHalConfig
from services.encoder.features import FEATURE_DIMENSION
from services.encoder.perception_model import PerceptionModel
from services.encoder.views import HybridPerceptionModule
from services.encoder.stage import DimensionMismatchError, EncoderStage

__all__ = ["traditional_stage"]


def traditional_stage(config: Optional[MusicHalConfig] = None, model: Optional[PerceptionModel] = None, *,
                      spec: Any = None, memory_dimension: Optional[int] = None, node_id: str = "",
                      descriptors_only: bool = False) -> EncoderStage:
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
    descriptors_only:
        For early views: no model, no memory, never refused.

    Raises :class:`DimensionMismatchError` when the memory cannot use traditional percepts.
    """
    config = config or MusicHalConfig()
    if spec is not None:
        model, memory_dimension = spec.perception_model(), spec.memory_dimension
    if descriptors_only:
        model, memory_dimension = None, None
    elif model is not None:
        if "traditional" not in model.views:
            raise DimensionMismatchError(f"the model's memory holds {model.primary_view} vectors and it has no "
                                         "traditional view")
        if memory_dimension is not None and model.quantizers["traditional"].dimension != memory_dimension:
            raise DimensionMismatchError(f"the model's memory holds {memory_dimension}-D {model.primary_view} vectors; "
                                         "the traditional view cannot feed it")
    else:
        if config.features.kind == "wav2vec":
            raise DimensionMismatchError("a memory learned live from wav2vec vectors cannot use traditional ones")
        memory_dimension = FEATURE_DIMENSION
    traditional = replace(config, features=replace(config.features, kind="traditional", hybrid=False))
    return EncoderStage(HybridPerceptionModule.from_config(traditional), model, node_id=node_id,
                        memory_dimension=memory_dimension)
