"""The fitted perception a model file carries: per view an optional PCA (wav2vec views by default) and a k-means
:class:`~services.encoder.quantizer.SymbolQuantizer`.

:class:`PerceptionModel` ``to_model_parts()`` gives ``(meta, arrays)`` for :mod:`shared.model_io` (array names prefixed
``perception.``; the whole file is :mod:`services.model_file`); ``from_model_parts()`` validates and raises
:class:`~shared.errors.ModelFormatError`. The meta records everything live needs to reproduce training's features:
feature kind, views, checkpoint, layer, rates, segmentation config, PCA and quantizer sizes
(:meth:`PerceptionModel.check_compatible` compares it with a live perception module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.encoder.analysis import VIEWS, Analysis
from services.encoder.perception import PerceptionViews
from services.encoder.quantizer import PCAReducer, SymbolQuantizer
from shared.config import INTERNAL_SAMPLE_RATE_HZ, SegmenterConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import Event, Percept

__all__ = ["PERCEPTION_FORMAT", "ARRAY_PREFIX", "PerceptionModel"]

PERCEPTION_FORMAT = 1
ARRAY_PREFIX = "perception."


class PerceptionModel:
    """Fitted perception: per view an optional PCA and a k-means quantizer; tokens and Percepts from analyses.

    Build one with :meth:`HybridPerceptionModule.new_model`, :meth:`fit` it on the trainer's analyses
    (``[views for _, views in analyses]``) and store it with :meth:`to_model_parts`.
    """

    def __init__(
        self,
        *,
        views: Sequence[str] = ("traditional",),
        primary_view: str = "traditional",
        vocabulary_size: int = 64,
        l2_normalize: bool = True,
        seed: int = 0,
        pca_components: int = 0,
        pca_views: Sequence[str] = ("wav2vec",),
        feature_info: Mapping[str, Any] | None = None,
        segmenter: SegmenterConfig | None = None,
        sample_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ,
    ) -> None:
        views = tuple(views)
        if not views or any(view not in VIEWS for view in views) or len(set(views)) != len(views):
            raise ParameterError(f"views must be distinct names from {VIEWS}, got {views}")
        if primary_view not in views:
            raise ParameterError(f"primary view {primary_view!r} is not among the views {views}")
        if int(pca_components) < 0:
            raise ParameterError("pca_components must be >= 0")
        self.views = views
        self.primary_view = primary_view
        self.vocabulary_size = int(vocabulary_size)
        self.l2_normalize = bool(l2_normalize)
        self.seed = int(seed)
        self.pca_components = int(pca_components)
        self.pca_views = tuple(v for v in pca_views if v in views)
        self.feature_info = dict(feature_info or {})
        self.segmenter = segmenter or SegmenterConfig()
        self.sample_rate_hz = int(sample_rate_hz)
        self.pca: dict[str, PCAReducer | None] = {view: None for view in views}
        self.quantizers: dict[str, SymbolQuantizer] = {
            view: SymbolQuantizer(self.vocabulary_size, l2_normalize=self.l2_normalize, seed=self.seed)
            for view in views
        }

    @property
    def is_fitted(self) -> bool:
        return all(q.is_fitted for q in self.quantizers.values())

    @property
    def hybrid(self) -> bool:
        return len(self.views) > 1

    def _stack(self, feature_dicts: Sequence[Mapping[str, np.ndarray]], view: str) -> np.ndarray:
        try:
            return np.stack([np.asarray(d[view], dtype=np.float32) for d in feature_dicts])
        except KeyError:
            raise ParameterError(f"feature dicts lack the {view!r} view") from None
        except ValueError as error:
            raise ParameterError(f"{view} vectors have different lengths: {error}") from None

    def fit(self, feature_dicts: Sequence[Mapping[str, np.ndarray]]) -> PerceptionModel:
        """Fit PCA (for ``pca_views`` when ``pca_components``) and a quantizer per view on ``[{view: vector}]``."""
        if len(feature_dicts) == 0:
            raise ParameterError("cannot fit perception on zero events")
        return self.fit_arrays({view: self._stack(feature_dicts, view) for view in self.views})

    def fit_arrays(self, features: Mapping[str, np.ndarray]) -> PerceptionModel:
        """:meth:`fit` on ``{view: (n, d) array}`` (rows in corpus order) — the trainer's sample."""
        for view in self.views:
            if view not in features:
                raise ParameterError(f"features lack the {view!r} view")
            x = np.asarray(features[view], dtype=np.float32)
            if x.ndim != 2 or x.shape[0] == 0:
                raise ParameterError("cannot fit perception on zero events")
            if view in self.pca_views and self.pca_components and x.shape[0] >= 2 and x.shape[1] > self.pca_components:
                self.pca[view] = PCAReducer(self.pca_components).fit(x)
                x = self.pca[view].transform(x)
            self.quantizers[view].fit(x)
        return self

    def project(self, view: str, vectors: Any) -> np.ndarray:
        """The vectors the quantizer (and the continuous oracle) sees for ``view``: PCA'd when fitted."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        reducer = self.pca.get(view)
        return reducer.transform(x) if reducer is not None else x

    def tokens(
        self, feature_dicts: Sequence[Mapping[str, np.ndarray]], *, views: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``{view: int64 tokens}`` for ``[{view: vector}]`` (all the model's views unless ``views`` is given)."""
        if not self.is_fitted:
            raise ParameterError("perception model is not fitted")
        views = tuple(views) if views is not None else self.views
        if len(feature_dicts) == 0:
            return {view: np.zeros(0, dtype=np.int64) for view in views}
        return {
            view: self.quantizers[view].transform(self.project(view, self._stack(feature_dicts, view)))
            for view in views
        }

    def usage(self, feature_dicts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
        """Vocabulary usage per view (counts, entropy, used fraction) — token collapse shows here."""
        return {view: self.quantizers[view].usage(tokens) for view, tokens in self.tokens(feature_dicts).items()}

    def percepts(
        self, events: Sequence[Event], analyses: Sequence[Analysis], node_id: str = "", *, view: str | None = None
    ) -> list[Percept]:
        """Percepts (token of ``view``, default the primary one; ``traditional_token`` as well when hybrid)."""
        if len(events) != len(analyses):
            raise ParameterError(f"got {len(analyses)} analyses for {len(events)} events")
        view = view or self.primary_view
        if view not in self.views:
            raise ParameterError(f"view {view!r} is not in this model ({self.views})")
        dicts = [views for _, views in analyses]
        wanted = [view] + (
            ["traditional"] if self.hybrid and view != "traditional" and "traditional" in self.views else []
        )
        tokens = self.tokens(dicts, views=wanted)
        projected = self.project(view, self._stack(dicts, view)) if dicts else np.zeros((0, 0), np.float32)
        out = []
        for index, (event, (descriptors, _)) in enumerate(zip(events, analyses)):
            traditional = int(tokens["traditional"][index]) if self.hybrid and "traditional" in tokens else None
            out.append(
                Percept(
                    event_id=event.event_id,
                    token=int(tokens[view][index]),
                    features=projected[index],
                    descriptors=descriptors,
                    view=view,
                    traditional_token=traditional,
                    node_id=node_id,
                )
            )
        return out

    # ------------------------------------------------------------------ compatibility and storage
    def check_compatible(self, perception: PerceptionViews) -> list[str]:
        """Views this live perception can produce for the model; raises ParameterError when none or the
        wav2vec settings differ from training's (layer, rate, normalisation or dimension). The checkpoint's
        identity is its content hash, checked by :func:`services.encoder.spec.resolve_checkpoint` (the same
        weights may live under another name or directory)."""
        live = perception.describe()
        usable = [view for view in self.views if view in live["views"] or view == "traditional"]
        if not usable:
            raise ParameterError(
                f"the model needs view(s) {list(self.views)}; live perception provides {live['views']}"
            )
        if "wav2vec" in self.views and "wav2vec" in live["views"]:
            trained, now = self.feature_info.get("wav2vec") or {}, live["wav2vec"] or {}
            for key in ("layer", "sample_rate_hz", "dimension", "do_normalize"):
                if trained.get(key) != now.get(key):
                    raise ParameterError(
                        f"wav2vec {key} differs between training ({trained.get(key)!r}) and live ({now.get(key)!r})"
                    )
        return usable

    def to_model_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``; array names are prefixed ``perception.``. Deterministic (no timings)."""
        if not self.is_fitted:
            raise ParameterError("perception model is not fitted")
        arrays: dict[str, np.ndarray] = {}
        pca_meta: dict[str, Any] = {}
        quantizer_meta: dict[str, Any] = {}
        for view in self.views:
            for name, array in self.quantizers[view].to_arrays().items():
                arrays[f"{ARRAY_PREFIX}{view}.quantizer.{name}"] = array
            quantizer_meta[view] = self.quantizers[view].meta()
            reducer = self.pca[view]
            pca_meta[view] = reducer.meta() if reducer is not None else None
            if reducer is not None:
                for name, array in reducer.to_arrays().items():
                    arrays[f"{ARRAY_PREFIX}{view}.pca.{name}"] = array
        feature_info = {key: value for key, value in self.feature_info.items()}
        if isinstance(feature_info.get("wav2vec"), dict):  # runtime-only settings do not define the features
            feature_info["wav2vec"] = {k: v for k, v in feature_info["wav2vec"].items() if k not in ("device",)}
        meta = {
            "perception_format": PERCEPTION_FORMAT,
            "feature_kind": self.primary_view,
            "views": list(self.views),
            "primary_view": self.primary_view,
            "hybrid": self.hybrid,
            "sample_rate_hz": self.sample_rate_hz,
            "segmenter": dataclasses.asdict(self.segmenter),
            "features": feature_info,
            "vocabulary_size": self.vocabulary_size,
            "l2_normalize": self.l2_normalize,
            "seed": self.seed,
            "pca_components": self.pca_components,
            "pca_views": list(self.pca_views),
            "pca": pca_meta,
            "quantizers": quantizer_meta,
        }
        return meta, arrays

    @classmethod
    def from_model_parts(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> PerceptionModel:
        """Rebuild and validate; any inconsistency raises ModelFormatError with one line."""
        if not isinstance(meta, Mapping):
            raise ModelFormatError("perception meta must be an object")
        if meta.get("perception_format") != PERCEPTION_FORMAT:
            raise ModelFormatError(
                f"perception_format {meta.get('perception_format')!r} is not supported (expected {PERCEPTION_FORMAT})"
            )
        try:
            model = cls(
                views=list(meta["views"]),
                primary_view=str(meta["primary_view"]),
                vocabulary_size=int(meta["vocabulary_size"]),
                l2_normalize=bool(meta["l2_normalize"]),
                seed=int(meta["seed"]),
                pca_components=int(meta["pca_components"]),
                pca_views=list(meta["pca_views"]),
                feature_info=dict(meta["features"]),
                segmenter=SegmenterConfig(**meta["segmenter"]),
                sample_rate_hz=int(meta["sample_rate_hz"]),
            )
            if meta.get("feature_kind") != model.primary_view:
                raise ModelFormatError(f"feature_kind {meta.get('feature_kind')!r} does not match the primary view")
            for view in model.views:
                prefix = f"{ARRAY_PREFIX}{view}."
                view_arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                model.quantizers[view] = SymbolQuantizer.from_arrays(
                    meta["quantizers"][view],
                    {k[len("quantizer.") :]: v for k, v in view_arrays.items() if k.startswith("quantizer.")},
                )
                pca_meta = meta["pca"].get(view)
                if pca_meta is not None:
                    reducer = PCAReducer.from_arrays(
                        pca_meta, {k[len("pca.") :]: v for k, v in view_arrays.items() if k.startswith("pca.")}
                    )
                    if reducer.output_dimension != model.quantizers[view].dimension:
                        raise ModelFormatError(
                            f"{view}: PCA output ({reducer.output_dimension}) does not match the quantizer input"
                        )
                    model.pca[view] = reducer
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ParameterError) as error:
            raise ModelFormatError(
                f"perception part of the model is malformed: {type(error).__name__}: {error}"
            ) from None
        return model
