"""Trainer step 4a, tokenising: each file's events through the fitted perception (token counts per view; for the
files the oracle holds also the primary view's tokens, projected frames and descriptor columns)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.trainer.shards import FeatureCache
from shared.errors import ParameterError

__all__ = ["tokenize_group"]


def tokenize_group(cache_dir: str, entries: Sequence[tuple[str, str, bool]], model: Any) -> list[dict[str, Any]]:
    """Per ``(key, name, in_oracle)`` shard: token counts per view; for oracle files also the primary view's
    tokens, projected (PCA) frames and descriptor columns."""
    cache = FeatureCache(cache_dir, create=False)
    out = []
    for key, name, in_oracle in entries:
        loaded = cache.load(key, name=name, columns=in_oracle)
        if loaded is None:
            raise ParameterError(f"the feature shard of {name} is missing or broken in {cache_dir}")
        result: dict[str, Any] = {"counts": {}}
        for view in model.views:
            projected = model.project(view, loaded.views[view])
            tokens = model.quantizers[view].transform(projected)
            result["counts"][view] = np.bincount(tokens, minlength=model.quantizers[view].n_centroids).astype(np.int64)
            if in_oracle and view == model.primary_view:
                result.update(
                    tokens=tokens.astype(np.int64),
                    frames=np.ascontiguousarray(projected, dtype=np.float32),
                    columns=loaded.columns,
                )
        out.append(result)
    return out
