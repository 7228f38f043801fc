"""Plots of a comparison results dict (matplotlib, headless Agg backend): one PNG with

1. per-window extraction time histograms (traditional, wav2vec single; the batched mean as a line),
2. 2-D PCA of each feature space, points coloured by token,
3. token-usage bars per view,
4. probe scores (pitch-class accuracy with chance, consonance R²).

Everything is drawn from the results dict alone (``projection_2d``, ``tokens``, ``per_window_ms`` …).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ParameterError

__all__ = ["plot_results"]

_VIEWS = ("traditional", "wav2vec")
_COLOURS = {"traditional": "tab:blue", "wav2vec": "tab:orange"}


def plot_results(results: Mapping[str, Any], path: str | Path, *, dpi: int = 100) -> Path:
    """Write the comparison figure to ``path`` (PNG) and return the path.

    Raises
    ------
    ParameterError
        ``results`` lacks the pipelines or probes sections, or ``dpi`` is not positive.
    """
    if dpi <= 0:
        raise ParameterError(f"dpi must be > 0, got {dpi}")
    try:
        pipelines = {view: results["pipelines"][view] for view in _VIEWS}
        probes = results["probes"]
    except (KeyError, TypeError) as error:
        raise ParameterError(f"results lack {error}") from None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 9))
    # 1. timing histograms
    ax = axes[0, 0]
    every = np.concatenate([np.asarray(pipelines[view]["timing"]["per_window_ms"], dtype=float) for view in _VIEWS])
    bins = np.linspace(0.0, max(float(every.max()), 1e-3) * 1.02, min(40, max(8, every.size // 3)))
    for view in _VIEWS:
        samples = np.asarray(pipelines[view]["timing"]["per_window_ms"], dtype=float)
        ax.hist(
            samples,
            bins=bins,
            alpha=0.6,
            color=_COLOURS[view],
            label=f"{view} (p95 {pipelines[view]['timing']['p95_ms']:.1f} ms)",
        )
    batch = pipelines["wav2vec"].get("batch")
    if batch:
        ax.axvline(
            batch["per_window_ms"],
            color="tab:red",
            linestyle="--",
            label=f"wav2vec batched mean {batch['per_window_ms']:.1f} ms",
        )
    ax.set_xlabel("extraction time per window (ms)")
    ax.set_ylabel("windows")
    ax.set_title("Per-window extraction time")
    ax.legend(fontsize=8)
    # 2. PCA scatter per view
    for column, view in zip((1, 2), _VIEWS):
        ax = axes[0, column]
        points = np.asarray(pipelines[view]["projection_2d"], dtype=float).reshape(-1, 2)
        tokens = np.asarray(pipelines[view]["tokens"], dtype=int)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=tokens, cmap="tab20", s=18, edgecolors="none")
        ratio = pipelines[view]["explained_variance_ratio"]
        ax.set_title(f"{view}: 2-D PCA coloured by token")
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} %)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} %)")
        figure.colorbar(scatter, ax=ax, label="token")
    # 3. token usage
    for column, view in zip((0, 1), _VIEWS):
        ax = axes[1, column]
        vocabulary = pipelines[view]["vocabulary"]
        counts = np.asarray(vocabulary["counts"], dtype=int)
        ax.bar(np.arange(counts.size), counts, color=_COLOURS[view])
        warning = "  COLLAPSE" if vocabulary["collapse"] else ""
        ax.set_title(
            f"{view}: {vocabulary['used']}/{vocabulary['vocabulary_size']} tokens, "
            f"H={vocabulary['entropy_bits']:.2f} bits{warning}"
        )
        ax.set_xlabel("token")
        ax.set_ylabel("events")
    # 4. probe scores
    ax = axes[1, 2]
    labels, values, colours = [], [], []
    for view in _VIEWS:
        accuracy = probes["pitch_class"][view]["accuracy"]
        r2 = probes["consonance"][view]["r2"]
        labels += [f"pitch acc\n{view}", f"consonance R²\n{view}"]
        values += [np.nan if accuracy is None else accuracy, np.nan if r2 is None else max(r2, -1.0)]
        colours += [_COLOURS[view]] * 2
    order = [0, 2, 1, 3]
    ax.bar(range(4), [0.0 if np.isnan(values[i]) else values[i] for i in order], color=[colours[i] for i in order])
    for position, index in enumerate(order):
        text = "n/a" if np.isnan(values[index]) else f"{values[index]:.2f}"
        ax.text(position, 0.02, text, ha="center", va="bottom", fontsize=9)
    chance = probes["pitch_class"]["traditional"].get("chance")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label=f"pitch chance {chance:.2f}")
        ax.legend(fontsize=8)
    ax.set_xticks(range(4))
    ax.set_xticklabels([labels[i] for i in order], fontsize=8)
    ax.set_ylim(min(0.0, np.nanmin(values) if not np.all(np.isnan(values)) else 0.0), 1.05)
    ax.set_title(f"Linear probes ({probes['pitch_class']['label_source']})")
    figure.suptitle(
        f"musichal-compare: {Path(str(results.get('input', {}).get('file', ''))).name} "
        f"({results.get('input', {}).get('events', '?')} events)"
    )
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=dpi, format="png")
    plt.close(figure)
    return path
