"""Trainer step 3, fitting: PCA + quantizers per view on a deterministic sample of events (:func:`sample_rows`,
``trainer.fit_sample_events``) read from the shards in parallel groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.trainer.batching import Mapper, file_groups, serial_map
from services.trainer.shards import FeatureCache, FileOutcome
from shared.config import MusicHalConfig
from shared.errors import ParameterError

__all__ = ["new_perception_model", "sample_rows", "read_sample_group", "fit_perception"]


def new_perception_model(config: MusicHalConfig, settings: Mapping[str, Any], seed: int) -> Any:
    from services.encoder.perception_model import PerceptionModel

    feature_info = {
        "views": list(settings["views"]),
        "primary_view": settings["primary_view"],
        "hybrid": settings["hybrid"],
        "wav2vec": settings["wav2vec"],
        "traditional": settings["traditional"],
    }
    if settings.get("symbolic") is not None:
        feature_info["symbolic"] = settings["symbolic"]
    return PerceptionModel(
        views=settings["views"],
        primary_view=settings["primary_view"],
        vocabulary_size=config.quantizer.vocabulary_size,
        l2_normalize=config.quantizer.l2_normalize,
        seed=seed,
        pca_components=config.features.pca_components,
        feature_info=feature_info,
        segmenter=config.segmenter,
        sample_rate_hz=config.audio.sample_rate_hz,
    )


def sample_rows(total: int, size: int, seed: int) -> np.ndarray:
    """Sorted global event indices of the fitting sample: all when ``total <= size``, else ``size`` drawn without
    replacement with ``seed`` (the same rows for any number of workers or nodes)."""
    if total <= size:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=size, replace=False, shuffle=False)).astype(np.int64)


def read_sample_group(
    cache_dir: str, entries: Sequence[tuple[str, str, np.ndarray]], views: Sequence[str]
) -> dict[str, np.ndarray]:
    """Rows ``rows`` of each ``(key, name, rows)`` shard, per view, concatenated in the given order."""
    cache = FeatureCache(cache_dir, create=False)
    parts: dict[str, list[np.ndarray]] = {view: [] for view in views}
    for key, name, rows in entries:
        loaded = cache.load(key, name=name, views=views, columns=False)
        if loaded is None:
            raise ParameterError(f"the feature shard of {name} is missing or broken in {cache_dir}")
        for view in views:
            parts[view].append(loaded.views[view][rows])
    return {view: np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32) for view, arrays in parts.items()}


def fit_perception(
    model: Any,
    usable: Sequence[FileOutcome],
    *,
    cache_dir: str,
    sample_events: int,
    seed: int,
    map_groups: Mapper = serial_map,
) -> tuple[Any, int]:
    """Fit ``model`` (a :class:`PerceptionModel`) on a deterministic sample of the corpus' events.

    The sample (:func:`sample_rows`, ``sample_events`` rows drawn with ``seed``) is read from the shards in
    parallel groups, in corpus order, so only the sample is ever in the driver's memory. Returns
    ``(model, sample size)``.
    """
    sizes = [o.n_events for o in usable]
    total = int(sum(sizes))
    if total < 1:
        raise ParameterError("cannot fit perception on zero events")
    rows = sample_rows(total, sample_events, seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    bounds = np.searchsorted(rows, offsets)
    arguments = []
    for group in file_groups(sizes):
        entries = [
            (usable[i].key, usable[i].name, rows[bounds[i] : bounds[i + 1]] - offsets[i])
            for i in group
            if bounds[i + 1] > bounds[i]
        ]
        if entries:
            arguments.append((cache_dir, entries, tuple(model.views)))
    parts = map_groups(read_sample_group, arguments)
    features = {view: np.concatenate([part[view] for part in parts]) for view in model.views}
    return model.fit_arrays(features), int(rows.size)
