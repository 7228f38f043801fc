"""Several corpora in one memory: ``musichal --model a.json --model b.json``.

:func:`merge_oracle_parts` concatenates the states of every model's oracle into one memory, in the order the
models are given (state ``i`` of model B becomes state ``n_A + i``). Both the continuous Audio Oracle (rebuilt
over the concatenated feature rows at the first model's threshold) and the token factor oracle are rebuilt, so
jumps may cross from one corpus into another wherever their contexts match. The live input is analysed with the
first model's perception; a later model whose perception differs keeps its states reachable through the Audio
Oracle but its tokens are offset (``+ (k << 20)`` for the k-th model) so they never match live tokens. All
models must have the same feature dimension. Each state's ``source`` names its model file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.model_file import load_musichal_model
from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.factor_oracle import FactorOracle
from services.oracle.memory.store import OracleMemory
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors

__all__ = ["merge_oracle_parts", "load_corpora", "TOKEN_OFFSET"]

TOKEN_OFFSET = 1 << 20


def _descriptors(info: Any) -> EventDescriptors:
    return EventDescriptors(
        onset_s=float(info.onset_s),
        duration_s=max(0.0, float(info.duration_s)),
        rms=0.0,
        velocity=int(min(127, max(1, info.velocity))),
        f0_hz=float(info.f0_hz),
        f0_confidence=1.0,
        chroma_peaks=tuple(int(p) for p in info.chroma_peaks),
    )


def merge_oracle_parts(
    config: MusicHalConfig,
    parts: Sequence[tuple[dict, dict]],
    *,
    names: Sequence[str] = (),
    same_perception: Sequence[bool] = (),
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One oracle (``(meta, arrays)`` as :meth:`OracleMemory.to_model_parts`) holding every model's states in order."""
    if not parts:
        raise ParameterError("merge_oracle_parts needs at least one model")
    stages = [OracleMemory(config, model=p) for p in parts]
    if len(stages) == 1:
        return stages[0].to_model_parts()
    names = list(names) or [f"model{k}" for k in range(len(stages))]
    same = list(same_perception) or [True] * len(stages)
    first = stages[0]
    if any(s.audio is None for s in stages) and any(s.audio is not None for s in stages):
        raise ModelFormatError("cannot merge a model with an audio oracle and one without")
    audio = None
    if first.audio is not None:
        dims = {s.audio.dim for s in stages}
        if len(dims) != 1:
            raise ModelFormatError(
                f"models have different feature dimensions {sorted(dims)}; they cannot share one memory"
            )
        audio = AudioOracle(first.audio.threshold, first.audio.dim)
    tokens = FactorOracle()
    for k, stage in enumerate(stages):
        offset = 0 if (k == 0 or same[k]) else k * TOKEN_OFFSET
        n = stage.tokens.n_states
        infos = (
            [stage.tokens.state_info(i) for i in range(1, n)]
            if stage.audio is None
            else [stage.audio.state_info(i) for i in range(1, n)]
        )
        token_ids = [int(stage.tokens.label(i)) + offset for i in range(1, n)]
        tokens.extend(token_ids)
        if audio is not None and n > 1:
            audio.extend(
                np.array(stage.audio.frames),
                tokens=token_ids,
                descriptors=[_descriptors(i) for i in infos],
                event_ids=[int(i.event_id) for i in infos],
                source=str(names[k]),
            )
    merged = OracleMemory.from_memory(config, audio, tokens, threshold_source=first.threshold_source)
    merged.playing = first.playing
    meta, arrays = merged.to_model_parts()
    meta["oracle"]["corpora"] = [{"name": str(name), "states": s.tokens.n_states - 1} for name, s in zip(names, stages)]
    return meta, arrays


def load_corpora(config: MusicHalConfig, paths: Sequence[str | Path]):
    """Load one or more model files: ``(oracle_parts, perception_model)`` (perception of the first model)."""
    if not paths:
        raise ParameterError("load_corpora needs at least one path")
    models = [load_musichal_model(p) for p in paths]
    if len(models) == 1:
        return models[0].oracle_parts, models[0].perception
    base = models[0].meta.get("perception")
    same = [m.meta.get("perception") == base for m in models]
    parts = merge_oracle_parts(
        config, [m.oracle_parts for m in models], names=[Path(p).name for p in paths], same_perception=same
    )
    return parts, models[0].perception
