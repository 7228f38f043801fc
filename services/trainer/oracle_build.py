"""Trainer step 4b, the oracle: which files it holds (:func:`oracle_files`, ``trainer.oracle_max_states``), the
threshold (``"auto"``: Information Rate maximum), the continuous Audio Oracle on the primary view's (PCA) features and
a token factor oracle, built by numba kernels with per-state metadata appended as columns, states in corpus order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.trainer.shards import FileOutcome
from shared.config import MusicHalConfig
from shared.errors import ParameterError

__all__ = ["IR_MAX_EVENTS", "oracle_files", "build_model_parts"]

#: Events the Information Rate threshold sweep looks at (a contiguous prefix of the oracle's states).
IR_MAX_EVENTS = 20_000


def oracle_files(sizes: Sequence[int], max_states: int) -> np.ndarray:
    """Which files the oracle holds (bool per file): all up to ``max_states`` events, else whole files spread
    evenly over the corpus order (file ``i`` when its share of ``max_states`` reaches a new integer count)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_states:
        return np.ones(sizes.size, dtype=bool)
    keep = np.zeros(sizes.size, dtype=bool)
    cum = np.cumsum(sizes)
    taken = 0
    for i in range(sizes.size):  # per file, not per event
        if taken + int(sizes[i]) <= (int(cum[i]) * max_states) // total:
            keep[i] = True
            taken += int(sizes[i])
    if not keep.any():
        raise ParameterError(f"trainer.oracle_max_states ({max_states}) is smaller than every file's events")
    return keep


def build_model_parts(
    model: Any,
    usable: Sequence[FileOutcome],
    tokenized: Sequence[dict[str, Any]],
    *,
    config: MusicHalConfig,
    threshold: str | float = "auto",
) -> tuple[tuple[dict[str, Any], dict[str, np.ndarray]], dict[str, Any]]:
    """Threshold and the oracle memory from the tokenised files (states in corpus order).

    ``tokenized[i]`` is :func:`tokenize_group`'s result for ``usable[i]``. Returns ``(oracle_parts, facts)``: the
    :meth:`OracleMemory.to_model_parts` pair and deterministic facts (threshold, its source, total IR, vocabulary
    usage per view, states). The Audio Oracle and the token factor oracle are built by their numba kernels and
    the per-state metadata is appended as columns: no Python work per state.
    """
    from services.oracle.memory.audio_oracle import AudioOracle
    from services.oracle.memory.factor_oracle import FactorOracle
    from services.oracle.memory.information_rate import select_threshold, total_information_rate
    from services.oracle.memory.store import OracleMemory

    counts = {v: np.zeros(model.quantizers[v].n_centroids, dtype=np.int64) for v in model.views}
    for result in tokenized:
        for v in model.views:
            counts[v] += result["counts"][v]
    members = [(o, t) for o, t in zip(usable, tokenized) if "frames" in t]
    starts = np.concatenate([[0], np.cumsum([o.n_events for o in usable])]).astype(np.int64)
    first_ids = {o.index: int(starts[k]) for k, o in enumerate(usable)}
    n_states = sum(o.n_events for o, _ in members)
    dim = members[0][1]["frames"].shape[1]
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ParameterError(f"threshold must be 'auto' or a number >= 0, got {threshold!r}")
        prefix, need = [], IR_MAX_EVENTS
        for _, t in members:
            if need <= 0:
                break
            prefix.append(t["frames"][:need].astype(np.float64))
            need -= prefix[-1].shape[0]
        frames = np.concatenate(prefix)
        value, curve = select_threshold(frames) if frames.shape[0] >= 2 else (0.0, np.zeros((0, 2)))
        source = "ir"
    else:
        value = float(threshold)
        if not np.isfinite(value) or value < 0:
            raise ParameterError(f"threshold must be a finite number >= 0, got {threshold!r}")
        curve, source = np.zeros((0, 2)), "given"
    audio = AudioOracle(value, dim, capacity=n_states + 1)
    token_oracle = FactorOracle(capacity=n_states + 1)
    for outcome, t in members:  # per file; the kernels and column appends do the per-state work
        first = first_ids[outcome.index]
        audio.extend(
            t["frames"].astype(np.float64),
            tokens=t["tokens"],
            columns=t["columns"],
            event_ids=np.arange(first, first + outcome.n_events, dtype=np.int64),
            source=outcome.name,
        )
        token_oracle.extend(t["tokens"])
    stage = OracleMemory.from_memory(config, audio, token_oracle, threshold_source="trained")
    usage = {}
    for v, c in counts.items():
        counts_v = np.zeros(model.vocabulary_size, dtype=np.int64)
        counts_v[: c.size] = c
        total_v = int(counts_v.sum())
        p = counts_v[counts_v > 0] / max(1, total_v)
        entropy = float(-(p * np.log2(p)).sum()) if total_v else 0.0
        usage[v] = {
            "counts": counts_v.tolist(),
            "used": int((counts_v > 0).sum()),
            "used_fraction": float((counts_v > 0).sum() / model.vocabulary_size),
            "entropy_bits": entropy,
            "perplexity": float(2.0**entropy),
        }
    facts = {
        "threshold": value,
        "threshold_source": source,
        "information_rate": total_information_rate(audio.lrs) if audio.n_states > 1 else 0.0,
        "ir_curve": [[float(a), float(b)] for a, b in curve],
        "vocabulary_usage": usage,
        "states": int(audio.n_states - 1),
    }
    return stage.to_model_parts(), facts
