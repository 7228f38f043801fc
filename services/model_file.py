"""The whole MusicHal model file: perception (features, PCA, quantizers) + oracle, in one container.

``model.json`` meta::

    {"musichal_model": 1, "perception": {...PerceptionModel meta...} | null,
     "oracle": {...OracleStage meta...}, "config": {...segmenter/features/quantizer sections...},
     "training": {...deterministic facts: files, events, vocabulary usage...}}

Arrays: ``perception.*`` and ``oracle.*`` in the sibling ``.safetensors``. Timings go to ``model.stats.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from shared.errors import ModelFormatError
from shared.model_io import load_model, save_model

__all__ = ["MusicHalModel", "load_musichal_model", "save_musichal_model", "MODEL_SCHEMA"]

MODEL_SCHEMA = 1


@dataclass
class MusicHalModel:
    """A loaded model: the raw parts each stage rebuilds itself from."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Optional[Path] = None
    perception: Any = field(default=None)  # PerceptionModel or None (a live-learned checkpoint may have none)

    @property
    def oracle_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"oracle": self.meta["oracle"]}, {k: v for k, v in self.arrays.items() if k.startswith("oracle.")}


def save_musichal_model(path: str | Path, *, oracle_parts: tuple[dict[str, Any], dict[str, np.ndarray]],
                        perception: Any = None, config: Optional[dict[str, Any]] = None,
                        training: Optional[dict[str, Any]] = None) -> None:
    """Write perception + oracle atomically (deterministic bytes for the same content)."""
    oracle_meta, arrays = oracle_parts
    arrays = dict(arrays)
    meta: dict[str, Any] = {"musichal_model": MODEL_SCHEMA, "oracle": oracle_meta["oracle"], "perception": None,
                            "config": config or {}, "training": training or {}}
    if perception is not None:
        perception_meta, perception_arrays = perception.to_model_parts()
        meta["perception"] = perception_meta
        arrays.update(perception_arrays)
    save_model(path, meta, arrays)


def load_musichal_model(path: str | Path) -> MusicHalModel:
    """Load and validate; raises ModelFormatError with one line."""
    from services.encoder.perception import PerceptionModel

    meta, arrays = load_model(path)
    if meta.get("musichal_model") != MODEL_SCHEMA:
        raise ModelFormatError(f"{path}: not a MusicHal model of schema {MODEL_SCHEMA} (musichal_model={meta.get('musichal_model')!r})")
    if not isinstance(meta.get("oracle"), dict):
        raise ModelFormatError(f"{path}: the oracle section is missing")
    perception = None
    if meta.get("perception") is not None:
        try:
            perception = PerceptionModel.from_model_parts(meta["perception"], arrays)
        except ModelFormatError as error:
            raise ModelFormatError(f"{path}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(f"{path}: perception section is malformed ({type(error).__name__}: {error})") from None
    return MusicHalModel(meta=meta, arrays=arrays, path=Path(path), perception=perception)
