"""Symbolic quantizer (k-means → tokens) and PCA, fitted with scikit-learn, applied and stored as plain arrays; the live
:class:`OnlineQuantizer` (leader clustering while no model exists).

Fitting uses scikit-learn (``KMeans`` with fixed ``n_init`` and seed; ``MiniBatchKMeans`` for
:meth:`SymbolQuantizer.partial_fit`; ``PCA`` with the full SVD). Everything needed afterwards is kept as numpy
arrays, so live transforms need no scikit-learn object and model files need no pickle
(``to_arrays()``/``meta()``/``from_arrays()``).

Transforms are computed row by row in float64 with element-wise reductions (no BLAS matrix product), so a
window transformed alone live gives exactly the token it got in a training batch.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> data = np.concatenate([rng.normal(0, 0.05, (20, 3)) + c for c in np.eye(3)])
>>> q = SymbolQuantizer(3, l2_normalize=False).fit(data)
>>> len(set(q.transform(data[:20]).tolist()))
1
>>> q.usage(q.transform(data))["used_fraction"]
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from shared.errors import ModelFormatError, ParameterError

__all__ = ["SymbolQuantizer", "PCAReducer", "OnlineQuantizer", "l2_normalize_rows", "usage_stats"]

_CHUNK_ROWS = 256
_N_INIT = 4


def _as_matrix(features: Any, *, name: str = "features", dimension: int | None = None) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ParameterError(f"{name} must be a (n, d) array, got shape {np.shape(features)}")
    if not np.isfinite(x).all():
        raise ParameterError(f"{name} contain NaN or infinite values")
    if dimension is not None and x.shape[1] != dimension:
        raise ParameterError(f"{name} have dimension {x.shape[1]}, the fitted model expects {dimension}")
    return x


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-12)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid per row (ties → lowest index), batching-independent."""
    c = centroids.astype(np.float64)
    out = np.empty(x.shape[0], dtype=np.int64)
    for begin in range(0, x.shape[0], _CHUNK_ROWS):
        rows = x[begin : begin + _CHUNK_ROWS]
        diff = rows[:, None, :] - c[None, :, :]
        out[begin : begin + rows.shape[0]] = np.argmin((diff * diff).sum(axis=2), axis=1)
    return out


def usage_stats(tokens: Any, vocabulary_size: int) -> dict[str, Any]:
    """Counts per token, entropy in bits, perplexity and the used fraction of the vocabulary."""
    tokens = np.asarray(tokens, dtype=np.int64).ravel()
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocabulary_size):
        raise ParameterError(f"tokens must be in 0..{vocabulary_size - 1}")
    counts = np.bincount(tokens, minlength=vocabulary_size)
    total = int(counts.sum())
    if total:
        p = counts[counts > 0] / total
        entropy = float(-(p * np.log2(p)).sum())
    else:
        entropy = 0.0
    return {
        "counts": counts.tolist(),
        "events": total,
        "used": int((counts > 0).sum()),
        "used_fraction": float((counts > 0).sum() / vocabulary_size),
        "entropy_bits": entropy,
        "max_entropy_bits": float(np.log2(vocabulary_size)) if vocabulary_size > 1 else 0.0,
        "perplexity": float(2.0**entropy),
    }


class SymbolQuantizer:
    """k-means vocabulary of ``vocabulary_size`` symbols over feature vectors (optionally L2-normalised).

    With fewer distinct points than ``vocabulary_size`` the vocabulary shrinks to the number of distinct
    points (:attr:`n_centroids`); tokens are always in ``0..n_centroids-1``.
    """

    def __init__(self, vocabulary_size: int = 64, *, l2_normalize: bool = True, seed: int = 0) -> None:
        if not 1 <= int(vocabulary_size) <= 65_536:
            raise ParameterError(f"vocabulary_size must be in 1..65536, got {vocabulary_size}")
        self.vocabulary_size = int(vocabulary_size)
        self.l2_normalize = bool(l2_normalize)
        self.seed = int(seed)
        self.centroids: np.ndarray | None = None  # float32 (n_centroids, d)
        self._minibatch: Any = None
        self._pending: list[np.ndarray] = []

    @property
    def is_fitted(self) -> bool:
        return self.centroids is not None

    @property
    def n_centroids(self) -> int:
        return 0 if self.centroids is None else int(self.centroids.shape[0])

    @property
    def dimension(self) -> int:
        return 0 if self.centroids is None else int(self.centroids.shape[1])

    def _prepare(self, features: Any, *, dimension: int | None = None) -> np.ndarray:
        x = _as_matrix(features, dimension=dimension)
        return l2_normalize_rows(x) if self.l2_normalize else x

    def fit(self, features: Any) -> SymbolQuantizer:
        """Fit k-means (``n_init=4``, fixed seed) on ``(n, d)`` features. Returns self.

        Raises
        ------
        ParameterError
            No rows, non-finite values or a bad shape.
        """
        x = self._prepare(features)
        if x.shape[0] == 0:
            raise ParameterError("cannot fit a quantizer on zero feature vectors")
        distinct = np.unique(x, axis=0)
        if distinct.shape[0] <= self.vocabulary_size:
            self.centroids = distinct.astype(np.float32)
        else:
            from sklearn.cluster import KMeans

            kmeans = KMeans(n_clusters=self.vocabulary_size, n_init=_N_INIT, random_state=self.seed)
            kmeans.fit(x)
            self.centroids = kmeans.cluster_centers_.astype(np.float32)
        self._minibatch = None
        return self

    def partial_fit(self, batch: Any) -> SymbolQuantizer:
        """Update a MiniBatchKMeans with one batch (big corpora); centroids are refreshed after each call.

        Rows are buffered until at least ``vocabulary_size`` have arrived (MiniBatchKMeans needs that many
        for its first step).
        """
        x = self._prepare(batch, dimension=self.dimension or None)
        if x.shape[0] == 0:
            return self
        from sklearn.cluster import MiniBatchKMeans

        if self._minibatch is None:
            self._pending.append(x)
            pending = np.concatenate(self._pending)
            if pending.shape[0] < self.vocabulary_size:
                self.centroids = np.unique(pending, axis=0).astype(np.float32)
                return self
            self._pending = []
            self._minibatch = MiniBatchKMeans(
                n_clusters=self.vocabulary_size,
                random_state=self.seed,
                n_init=3,
                batch_size=max(256, self.vocabulary_size),
            )
            x = pending
        self._minibatch.partial_fit(x)
        self.centroids = self._minibatch.cluster_centers_.astype(np.float32)
        return self

    def transform(self, features: Any) -> np.ndarray:
        """Nearest-centroid token per row (int64); pure numpy.

        Raises
        ------
        ParameterError
            Not fitted, wrong dimension or non-finite values.
        """
        if self.centroids is None:
            raise ParameterError("quantizer is not fitted")
        x = self._prepare(features, dimension=self.dimension)
        return _nearest(x, self.centroids)

    def transform_one(self, vector: Any) -> int:
        """Token of a single vector."""
        return int(self.transform(np.asarray(vector)[None, :] if np.ndim(vector) == 1 else vector)[0])

    def usage(self, tokens: Any) -> dict[str, Any]:
        """Vocabulary usage of ``tokens`` (counts, entropy_bits, perplexity, used_fraction) — collapse shows here."""
        return usage_stats(tokens, max(self.n_centroids, 1))

    # ------------------------------------------------------------------ storage
    def meta(self) -> dict[str, Any]:
        return {
            "kind": "kmeans",
            "vocabulary_size": self.vocabulary_size,
            "n_centroids": self.n_centroids,
            "dimension": self.dimension,
            "l2_normalize": self.l2_normalize,
            "seed": self.seed,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.centroids is None:
            raise ParameterError("quantizer is not fitted")
        return {"centroids": np.ascontiguousarray(self.centroids, dtype=np.float32)}

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SymbolQuantizer:
        """Rebuild from :meth:`meta` and :meth:`to_arrays`; raises ModelFormatError when they disagree."""
        try:
            if meta.get("kind") != "kmeans":
                raise ModelFormatError(f"quantizer kind {meta.get('kind')!r} is not 'kmeans'")
            quantizer = cls(
                int(meta["vocabulary_size"]), l2_normalize=bool(meta["l2_normalize"]), seed=int(meta["seed"])
            )
            centroids = np.asarray(arrays["centroids"])
        except (KeyError, TypeError, ValueError, ParameterError) as error:
            raise ModelFormatError(f"quantizer data is incomplete or malformed: {error}") from None
        if centroids.ndim != 2 or centroids.dtype != np.float32 or not np.isfinite(centroids).all():
            raise ModelFormatError(
                f"quantizer centroids must be finite float32 (k, d), got {centroids.dtype} {centroids.shape}"
            )
        if centroids.shape != (int(meta.get("n_centroids", -1)), int(meta.get("dimension", -1))):
            raise ModelFormatError(
                f"quantizer centroids shape {centroids.shape} does not match meta "
                f"({meta.get('n_centroids')}, {meta.get('dimension')})"
            )
        if centroids.shape[0] > quantizer.vocabulary_size:
            raise ModelFormatError("quantizer has more centroids than its vocabulary size")
        quantizer.centroids = centroids.copy()
        return quantizer


class PCAReducer:
    """PCA fitted with scikit-learn (full SVD), stored as ``mean`` and ``components`` arrays, applied in numpy."""

    def __init__(self, n_components: int = 16) -> None:
        if int(n_components) < 1:
            raise ParameterError(f"n_components must be >= 1, got {n_components}")
        self.n_components = int(n_components)
        self.mean: np.ndarray | None = None  # float32 (d,)
        self.components: np.ndarray | None = None  # float32 (k, d)
        self.explained_variance_ratio: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        return self.components is not None

    @property
    def input_dimension(self) -> int:
        return 0 if self.mean is None else int(self.mean.shape[0])

    @property
    def output_dimension(self) -> int:
        return 0 if self.components is None else int(self.components.shape[0])

    def fit(self, features: Any) -> PCAReducer:
        """Fit on ``(n, d)``; keeps ``min(n_components, n, d)`` components. Needs at least 2 rows."""
        x = _as_matrix(features)
        if x.shape[0] < 2:
            raise ParameterError("PCA needs at least 2 feature vectors")
        from sklearn.decomposition import PCA

        k = min(self.n_components, x.shape[0], x.shape[1])
        pca = PCA(n_components=k, svd_solver="full").fit(x)
        components = pca.components_.copy()
        # deterministic sign: the largest-magnitude loading of each component is positive
        signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
        components *= np.where(signs == 0, 1.0, signs)[:, None]
        self.mean = pca.mean_.astype(np.float32)
        self.components = components.astype(np.float32)
        self.explained_variance_ratio = pca.explained_variance_ratio_.astype(np.float32)
        return self

    def transform(self, features: Any) -> np.ndarray:
        """Project rows (float32 ``(n, k)``), element-wise in float64 so batching never changes a row."""
        if self.components is None or self.mean is None:
            raise ParameterError("PCA is not fitted")
        x = _as_matrix(features, dimension=self.input_dimension) - self.mean.astype(np.float64)
        comp = self.components.astype(np.float64)
        out = np.empty((x.shape[0], comp.shape[0]), dtype=np.float64)
        for begin in range(0, x.shape[0], _CHUNK_ROWS):
            rows = x[begin : begin + _CHUNK_ROWS]
            out[begin : begin + rows.shape[0]] = (rows[:, None, :] * comp[None, :, :]).sum(axis=2)
        return out.astype(np.float32)

    def meta(self) -> dict[str, Any]:
        return {
            "kind": "pca",
            "n_components": self.n_components,
            "input_dimension": self.input_dimension,
            "output_dimension": self.output_dimension,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.components is None or self.mean is None:
            raise ParameterError("PCA is not fitted")
        arrays = {"mean": self.mean, "components": self.components}
        if self.explained_variance_ratio is not None:
            arrays["explained_variance_ratio"] = self.explained_variance_ratio
        return arrays

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> PCAReducer:
        """Rebuild from :meth:`meta`/:meth:`to_arrays`; raises ModelFormatError when they disagree."""
        try:
            if meta.get("kind") != "pca":
                raise ModelFormatError(f"reducer kind {meta.get('kind')!r} is not 'pca'")
            reducer = cls(int(meta["n_components"]))
            mean = np.asarray(arrays["mean"])
            components = np.asarray(arrays["components"])
        except (KeyError, TypeError, ValueError, ParameterError) as error:
            raise ModelFormatError(f"PCA data is incomplete or malformed: {error}") from None
        if (
            mean.ndim != 1
            or components.ndim != 2
            or components.shape[1] != mean.shape[0]
            or components.shape != (int(meta.get("output_dimension", -1)), int(meta.get("input_dimension", -1)))
            or mean.dtype != np.float32
            or components.dtype != np.float32
            or not (np.isfinite(mean).all() and np.isfinite(components).all())
        ):
            raise ModelFormatError(
                f"PCA arrays have inconsistent shapes or types: mean {mean.shape}, components {components.shape}"
            )
        reducer.mean = mean.copy()
        reducer.components = components.copy()
        if "explained_variance_ratio" in arrays:
            reducer.explained_variance_ratio = np.asarray(arrays["explained_variance_ratio"], dtype=np.float32).copy()
        return reducer


class OnlineQuantizer:
    """Deterministic leader clustering that hands out tokens as vectors arrive (used while no model exists).

    >>> q = OnlineQuantizer(4, radius=0.5)
    >>> [q.assign(v) for v in ([1, 0], [0.99, 0.05], [0, 1], [1, 0])]
    [0, 0, 1, 0]
    """

    def __init__(self, vocabulary_size: int = 64, *, radius: float = 0.35, l2_normalize: bool = True) -> None:
        if int(vocabulary_size) < 1:
            raise ParameterError(f"vocabulary_size must be >= 1, got {vocabulary_size}")
        if not radius > 0.0:
            raise ParameterError(f"radius must be > 0, got {radius}")
        self.vocabulary_size = int(vocabulary_size)
        self.radius = float(radius)
        self.l2_normalize = bool(l2_normalize)
        self.reset()

    def reset(self) -> None:
        self.centroids: list[np.ndarray] = []
        self.token_counts = np.zeros(self.vocabulary_size, dtype=np.int64)  # per token (fixed memory, not per event)

    def assign(self, vector: Any) -> int:
        x = np.asarray(vector, dtype=np.float64).ravel()
        if not np.isfinite(x).all():
            raise ParameterError("feature vector contains NaN or infinite values")
        if self.l2_normalize:
            x = l2_normalize_rows(x[None, :])[0]
        if self.centroids and self.centroids[0].shape != x.shape:
            raise ParameterError(f"feature dimension changed from {self.centroids[0].shape[0]} to {x.shape[0]}")
        if self.centroids:
            stacked = np.stack(self.centroids)
            distances = np.sqrt(((stacked - x[None, :]) ** 2).sum(axis=1))
            nearest = int(np.argmin(distances))
            if distances[nearest] <= self.radius or len(self.centroids) >= self.vocabulary_size:
                self.token_counts[nearest] += 1
                return nearest
        self.centroids.append(x)
        self.token_counts[len(self.centroids) - 1] += 1
        return len(self.centroids) - 1

    def usage(self) -> dict[str, Any]:
        return usage_stats(np.repeat(np.arange(self.vocabulary_size), self.token_counts), self.vocabulary_size)
