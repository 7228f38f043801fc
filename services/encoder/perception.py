"""Perception: one code path from (event, window) to descriptors, feature views, PCA and tokens — offline and live.

* :func:`analyze_windows` — windows + events → ``[(EventDescriptors, {view: vector})]``. The trainer and the
  live encoder both call it; nothing else computes features.
* :func:`analyze_file` — the trainer's path: file → :func:`shared.audio.iter_file_blocks` (the same front end
  as live capture) → :class:`~services.capture.segmenter.OnsetSegmenter` block by block → windows →
  :func:`analyze_windows`.
* :class:`HybridPerceptionModule` — which views are computed. The ``--hybrid-perception`` flag means: keep
  **both** views per event, the traditional 22-D one always (cheap) and wav2vec when enabled, each with its own
  quantizer, so a live stack that loses the encoder can drop to the traditional view. Without the flag only
  the selected (primary) view is kept. Harmonic descriptors (chroma, f0) always come from the audio.
* :class:`PerceptionModel` — the fitted part: per view an optional PCA (wav2vec views by default) and a
  k-means :class:`~services.encoder.quantizer.SymbolQuantizer`. ``to_model_parts()`` gives ``(meta, arrays)``
  for :mod:`shared.model_io` (array names prefixed ``perception.``); ``from_model_parts()`` validates and
  raises :class:`~shared.errors.ModelFormatError`. The meta records everything live needs to reproduce
  training's features: feature kind, views, checkpoint, layer, rates, segmentation config, PCA and quantizer
  sizes (:meth:`PerceptionModel.check_compatible` compares it with a live perception module).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from shared.audio import iter_file_blocks
from shared.config import INTERNAL_SAMPLE_RATE_HZ, MusicHalConfig, SegmenterConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import Event, EventDescriptors, Percept
from services.encoder.expression import EXPRESSION_POINTS, slice_expression
from services.encoder.features import FEATURE_DIMENSION, FEATURE_NAMES, describe_event, traditional_features
from services.encoder.quantizer import PCAReducer, SymbolQuantizer
from services.capture.segmenter import OnsetSegmenter
from services.encoder.wav2vec import Wav2VecMusicEncoder

__all__ = [
    "VIEWS",
    "PERCEPTION_FORMAT",
    "Analysis",
    "Wav2VecPerceptionModule",
    "HybridPerceptionModule",
    "PerceptionModel",
    "analyze_windows",
    "analyze_file",
]

VIEWS = ("traditional", "wav2vec")
PERCEPTION_FORMAT = 1
ARRAY_PREFIX = "perception."

#: One analysed event: its descriptors and a float32 vector per view.
Analysis = tuple[EventDescriptors, dict[str, np.ndarray]]


class Wav2VecPerceptionModule:
    """Wav2vec view: pooled embeddings per window, plus an optional PCA fitted on a corpus (stored as arrays).

    ``encoder`` may be an already loaded :class:`Wav2VecMusicEncoder`; otherwise one is loaded (and warmed up)
    from ``model`` here.
    """

    def __init__(self, model: str = "facebook/wav2vec2-base", *, layer: int = -1, use_gpu: bool = False, fp16: bool = False,
                 int8: bool = False, fallback: str = "none", pca_components: int = 16, torch_threads: Optional[int] = None,
                 encoder: Optional[Wav2VecMusicEncoder] = None) -> None:
        if int(pca_components) < 0:
            raise ParameterError(f"pca_components must be >= 0, got {pca_components}")
        self.encoder = encoder if encoder is not None else Wav2VecMusicEncoder(
            model, layer=layer, use_gpu=use_gpu, fp16=fp16, int8=int8, fallback=fallback, torch_threads=torch_threads)
        self.pca_components = int(pca_components)
        self.pca: Optional[PCAReducer] = None

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def extract_features(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """The pooled embedding (float32 ``(D,)``) of one window."""
        return self.encoder.encode(audio, sr).vector

    def extract_batch(self, windows: Sequence[np.ndarray], sr: int) -> np.ndarray:
        """``(n, D)`` embeddings, batched per equal length (see :meth:`Wav2VecMusicEncoder.encode_batch`)."""
        if len(windows) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([f.vector for f in self.encoder.encode_batch(list(windows), sr)])

    def fit_dimensionality_reduction(self, features: Any) -> PCAReducer:
        """Fit a PCA (``pca_components``, 16 when 0) on ``(n, D)`` embeddings; stored as arrays, not pickled."""
        self.pca = PCAReducer(self.pca_components or 16).fit(features)
        return self.pca

    def reduce(self, features: Any) -> np.ndarray:
        """Apply the fitted PCA (identity when none was fitted)."""
        if self.pca is None:
            return np.atleast_2d(np.asarray(features, dtype=np.float32))
        return self.pca.transform(features)


class HybridPerceptionModule:
    """Chooses and computes the feature views per event (see the module docstring for ``hybrid``).

    Parameters
    ----------
    vocabulary_size:
        Symbols per view quantizer.
    enable_wav2vec:
        Make wav2vec the primary view (the encoder is loaded and warmed up here).
    wav2vec_model, use_gpu, wav2vec_layer, fp16, int8, fallback, torch_threads:
        Passed to :class:`Wav2VecMusicEncoder`.
    hybrid:
        Keep both views (traditional always, wav2vec when enabled).
    pca_components:
        PCA size applied to the wav2vec view before quantizing (0: none).
    wav2vec:
        An already built :class:`Wav2VecPerceptionModule` or :class:`Wav2VecMusicEncoder` (tests, reuse).
    """

    def __init__(self, vocabulary_size: int = 64, enable_wav2vec: bool = False, wav2vec_model: str = "facebook/wav2vec2-base",
                 use_gpu: bool = False, hybrid: bool = False, *, wav2vec_layer: int = -1, fp16: bool = False,
                 int8: bool = False, fallback: str = "none", pca_components: int = 0, l2_normalize: bool = True,
                 seed: int = 0, torch_threads: Optional[int] = None, wav2vec: Any = None, slice_notes: bool = False) -> None:
        if not 2 <= int(vocabulary_size) <= 65_536:
            raise ParameterError(f"vocabulary_size must be in 2..65536, got {vocabulary_size}")
        self.vocabulary_size = int(vocabulary_size)
        self.hybrid = bool(hybrid)
        self.pca_components = int(pca_components)
        self.l2_normalize = bool(l2_normalize)
        self.seed = int(seed)
        self.wav2vec: Optional[Wav2VecPerceptionModule] = None
        if isinstance(wav2vec, Wav2VecMusicEncoder):
            wav2vec = Wav2VecPerceptionModule(encoder=wav2vec, pca_components=pca_components)
        if enable_wav2vec or wav2vec is not None:
            module = wav2vec or Wav2VecPerceptionModule(
                wav2vec_model, layer=wav2vec_layer, use_gpu=use_gpu, fp16=fp16, int8=int8, fallback=fallback,
                pca_components=pca_components, torch_threads=torch_threads)
            if module.encoder.is_fallback:
                warnings.warn("wav2vec is not available; perception uses the traditional view only", RuntimeWarning, stacklevel=2)
            else:
                self.wav2vec = module
        self.wav2vec_requested = bool(enable_wav2vec or wav2vec is not None)
        #: transcribe each slice's notes and expression (services.encoder.transcription / expression)
        self.slice_notes = bool(slice_notes)
        self.transcriber = None
        if self.slice_notes:
            from services.encoder.transcription import default_transcriber

            self.transcriber = default_transcriber()

    @classmethod
    def from_config(cls, config: MusicHalConfig, **overrides: Any) -> "HybridPerceptionModule":
        """Build from the ``features``, ``wav2vec`` and ``quantizer`` sections."""
        kwargs: dict[str, Any] = dict(
            vocabulary_size=config.quantizer.vocabulary_size, enable_wav2vec=config.features.kind == "wav2vec",
            wav2vec_model=config.wav2vec.model, use_gpu=config.wav2vec.use_gpu, hybrid=config.features.hybrid,
            wav2vec_layer=config.wav2vec.layer, fp16=config.wav2vec.fp16, int8=config.wav2vec.int8,
            fallback=config.wav2vec.fallback, pca_components=config.features.pca_components,
            l2_normalize=config.quantizer.l2_normalize, seed=config.quantizer.seed,
            slice_notes=config.features.slice_notes)
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def primary_view(self) -> str:
        return "wav2vec" if self.wav2vec is not None else "traditional"

    @property
    def views(self) -> tuple[str, ...]:
        if self.hybrid and self.wav2vec is not None:
            return ("traditional", "wav2vec")
        return (self.primary_view,)

    def drop_wav2vec(self) -> None:
        """Forget the encoder (it was lost): from now on only the traditional view is computed."""
        self.wav2vec = None

    def describe(self) -> dict[str, Any]:
        """Feature settings a model must match (recorded in the model meta)."""
        return {"views": list(self.views), "primary_view": self.primary_view, "hybrid": self.hybrid,
                "wav2vec": self.wav2vec.encoder.describe() if self.wav2vec is not None else None,
                # every event's descriptors carry its expression (services.encoder.expression); recorded here so that
                # the trainer's feature cache key (which holds this entry) changes with it
                "traditional": {"dimension": FEATURE_DIMENSION, "names": list(FEATURE_NAMES),
                                "expression": {"points": EXPRESSION_POINTS, "f0_reference": "slice f0", "version": 1}},
                "slice_notes": self.transcriber.describe() if self.transcriber is not None else None}

    def extract_features(self, audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """``{view: vector}`` for one mono window at ``sr``."""
        return analyze_windows([audio], None, sample_rate_hz=sr, perception=self)[0][1]

    def analyze(self, windows: Sequence[np.ndarray], events: Optional[Sequence[Event]], *, sample_rate_hz: int) -> list[Analysis]:
        return analyze_windows(windows, events, sample_rate_hz=sample_rate_hz, perception=self)

    def new_model(self, *, config: Optional[MusicHalConfig] = None) -> "PerceptionModel":
        """An unfitted :class:`PerceptionModel` for these views (segmentation/rates taken from ``config``)."""
        config = config or MusicHalConfig()
        return PerceptionModel(views=self.views, primary_view=self.primary_view, vocabulary_size=self.vocabulary_size,
                               l2_normalize=self.l2_normalize, seed=self.seed, pca_components=self.pca_components,
                               feature_info=self.describe(), segmenter=config.segmenter,
                               sample_rate_hz=config.audio.sample_rate_hz)


def analyze_windows(windows: Sequence[np.ndarray], events: Optional[Sequence[Event]], *, sample_rate_hz: int,
                    perception: HybridPerceptionModule, durations_s: Optional[Sequence[float]] = None) -> list[Analysis]:
    """Descriptors and ``{view: float32 vector}`` for each window — the single feature path (trainer and live).

    ``events`` give onset times (``None``: onsets 0). Durations default to the time to the next event in
    ``events`` and the window length for the last one (live: always the window length until known).

    Raises
    ------
    ParameterError
        Mismatched lengths or bad windows.
    """
    if events is not None and len(events) != len(windows):
        raise ParameterError(f"got {len(windows)} windows for {len(events)} events")
    if durations_s is not None and len(durations_s) != len(windows):
        raise ParameterError(f"got {len(durations_s)} durations for {len(windows)} windows")
    sr = int(sample_rate_hz)
    results: list[Analysis] = []
    vectors: dict[str, list[np.ndarray]] = {view: [] for view in perception.views}
    for index, window in enumerate(windows):
        onset_s = events[index].onset_s if events is not None else 0.0
        if durations_s is not None:
            duration = float(durations_s[index])
        elif events is not None and index + 1 < len(events):
            duration = max(0.0, events[index + 1].onset_s - onset_s)
        else:
            duration = np.asarray(window).shape[0] / sr
        results.append((describe_event(window, sample_rate_hz=sr, onset_s=onset_s, duration_s=duration), {}))
        if "traditional" in vectors:
            vectors["traditional"].append(traditional_features(window, sample_rate_hz=sr))
    # the slice's expression (loudness envelope, f0 curve against its own f0, CC74), for every event: cheap (the
    # centroid comes from the traditional vector when there is one), by the same call offline and live
    traditional = vectors.get("traditional")
    for index, window in enumerate(windows):
        d = results[index][0]
        centroid = float(traditional[index][20]) if traditional is not None and traditional[index].any() else None
        results[index] = (dataclasses.replace(d, **slice_expression(window, sample_rate_hz=sr, reference_hz=d.f0_hz,
                                                                    centroid_feature=centroid)), results[index][1])
    if perception.transcriber is not None and windows:
        # what the slice holds: its notes, by the same call offline and live
        slice_notes = perception.transcriber.transcribe_windows(list(windows), sample_rate_hz=sr)
        for index in range(len(windows)):
            notes = tuple((n.pitch, n.onset_s, n.duration_s, n.velocity, n.bend_cents, n.glide_cents) for n in slice_notes[index])
            results[index] = (dataclasses.replace(results[index][0], notes=notes), results[index][1])
    if "wav2vec" in vectors and windows:
        if perception.wav2vec is None:
            raise ParameterError("the wav2vec view was asked for but no encoder is loaded")
        vectors["wav2vec"] = list(perception.wav2vec.extract_batch(list(windows), sr))
    for view, rows in vectors.items():
        for index, row in enumerate(rows):
            results[index][1][view] = np.asarray(row, dtype=np.float32)
    return results


class _History:
    """The last samples of a stream, addressed by absolute index (the trainer's stand-in for the ring)."""

    def __init__(self) -> None:
        self.data = np.zeros(0, dtype=np.float32)
        self.origin = 0

    def append(self, block: np.ndarray) -> None:
        self.data = np.concatenate([self.data, block])

    def window(self, start: int, end: int) -> np.ndarray:
        if start < self.origin or end > self.origin + self.data.size:
            raise ParameterError(f"window [{start}, {end}) is not in the kept history")
        return self.data[start - self.origin:end - self.origin].copy()

    def keep_last(self, samples: int) -> None:
        drop = self.data.size - samples
        if drop > 0:
            self.data = self.data[drop:]
            self.origin += drop


def analyze_file(path: str | Path, config: MusicHalConfig, perception: HybridPerceptionModule, *,
                 block_frames: int = 4096, window_batches: Optional[list] = None) -> tuple[list[Event], list[Analysis]]:
    """The trainer's path: decode ``path`` block by block through the shared front end, segment with
    :class:`OnsetSegmenter`, analyse the windows in batches of ``config.wav2vec.batch_size``.

    Durations are the time to the next onset (the last event: its window length). Raises
    :class:`~shared.errors.AudioInputError` for unreadable files. ``window_batches``, when given, receives each
    batch's windows (copies) as analysed — the trainer hands them to a separate wav2vec stage.
    """
    sr = config.audio.sample_rate_hz
    segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=sr, source=str(path), clock=None)
    history = _History()
    events: list[Event] = []
    analyses: list[Analysis] = []
    batch_events: list[Event] = []
    batch_windows: list[np.ndarray] = []

    def flush() -> None:
        if batch_events:
            if window_batches is not None:
                window_batches.append(list(batch_windows))
            analyses.extend(analyze_windows(batch_windows, batch_events, sample_rate_hz=sr, perception=perception,
                                            durations_s=[e.window_samples / sr for e in batch_events]))
            batch_events.clear()
            batch_windows.clear()

    def take(new_events: list[Event]) -> None:
        for event in new_events:
            events.append(event)
            batch_events.append(event)
            batch_windows.append(history.window(event.window_start, event.window_end))
        if len(batch_events) >= config.wav2vec.batch_size:
            flush()

    for block in iter_file_blocks(path, block_frames=block_frames, output_rate_hz=sr, input_channel=config.audio.input_channel):
        history.append(block)
        take(segmenter.process(block))
        history.keep_last(segmenter.max_lookback_samples)
    take(segmenter.finish())
    flush()
    for index in range(len(events) - 1):
        duration = max(0.0, events[index + 1].onset_s - events[index].onset_s)
        analyses[index] = (dataclasses.replace(analyses[index][0], duration_s=duration), analyses[index][1])
    return events, analyses


class PerceptionModel:
    """Fitted perception: per view an optional PCA and a k-means quantizer; tokens and Percepts from analyses.

    Build one with :meth:`HybridPerceptionModule.new_model`, :meth:`fit` it on the trainer's analyses
    (``[views for _, views in analyses]``) and store it with :meth:`to_model_parts`.
    """

    def __init__(self, *, views: Sequence[str] = ("traditional",), primary_view: str = "traditional",
                 vocabulary_size: int = 64, l2_normalize: bool = True, seed: int = 0, pca_components: int = 0,
                 pca_views: Sequence[str] = ("wav2vec",), feature_info: Optional[Mapping[str, Any]] = None,
                 segmenter: Optional[SegmenterConfig] = None, sample_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ) -> None:
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
        self.pca: dict[str, Optional[PCAReducer]] = {view: None for view in views}
        self.quantizers: dict[str, SymbolQuantizer] = {
            view: SymbolQuantizer(self.vocabulary_size, l2_normalize=self.l2_normalize, seed=self.seed) for view in views}

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

    def fit(self, feature_dicts: Sequence[Mapping[str, np.ndarray]]) -> "PerceptionModel":
        """Fit PCA (for ``pca_views`` when ``pca_components``) and a quantizer per view on ``[{view: vector}]``."""
        if len(feature_dicts) == 0:
            raise ParameterError("cannot fit perception on zero events")
        return self.fit_arrays({view: self._stack(feature_dicts, view) for view in self.views})

    def fit_arrays(self, features: Mapping[str, np.ndarray]) -> "PerceptionModel":
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

    def tokens(self, feature_dicts: Sequence[Mapping[str, np.ndarray]], *,
               views: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
        """``{view: int64 tokens}`` for ``[{view: vector}]`` (all the model's views unless ``views`` is given)."""
        if not self.is_fitted:
            raise ParameterError("perception model is not fitted")
        views = tuple(views) if views is not None else self.views
        if len(feature_dicts) == 0:
            return {view: np.zeros(0, dtype=np.int64) for view in views}
        return {view: self.quantizers[view].transform(self.project(view, self._stack(feature_dicts, view))) for view in views}

    def usage(self, feature_dicts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
        """Vocabulary usage per view (counts, entropy, used fraction) — token collapse shows here."""
        return {view: self.quantizers[view].usage(tokens) for view, tokens in self.tokens(feature_dicts).items()}

    def percepts(self, events: Sequence[Event], analyses: Sequence[Analysis], node_id: str = "", *,
                 view: Optional[str] = None) -> list[Percept]:
        """Percepts (token of ``view``, default the primary one; ``traditional_token`` as well when hybrid)."""
        if len(events) != len(analyses):
            raise ParameterError(f"got {len(analyses)} analyses for {len(events)} events")
        view = view or self.primary_view
        if view not in self.views:
            raise ParameterError(f"view {view!r} is not in this model ({self.views})")
        dicts = [views for _, views in analyses]
        wanted = [view] + (["traditional"] if self.hybrid and view != "traditional" and "traditional" in self.views else [])
        tokens = self.tokens(dicts, views=wanted)
        projected = self.project(view, self._stack(dicts, view)) if dicts else np.zeros((0, 0), np.float32)
        out = []
        for index, (event, (descriptors, _)) in enumerate(zip(events, analyses)):
            traditional = int(tokens["traditional"][index]) if self.hybrid and "traditional" in tokens else None
            out.append(Percept(event_id=event.event_id, token=int(tokens[view][index]), features=projected[index],
                               descriptors=descriptors, view=view, traditional_token=traditional, node_id=node_id))
        return out

    # ------------------------------------------------------------------ compatibility and storage
    def check_compatible(self, perception: HybridPerceptionModule) -> list[str]:
        """Views this live perception can produce for the model; raises ParameterError when none or the
        wav2vec settings differ from training's (layer, rate, normalisation or dimension). The checkpoint's
        identity is its content hash, checked by :func:`services.encoder.spec.resolve_checkpoint` (the same
        weights may live under another name or directory)."""
        live = perception.describe()
        usable = [view for view in self.views if view in live["views"] or view == "traditional"]
        if not usable:
            raise ParameterError(f"the model needs view(s) {list(self.views)}; live perception provides {live['views']}")
        if "wav2vec" in self.views and "wav2vec" in live["views"]:
            trained, now = self.feature_info.get("wav2vec") or {}, live["wav2vec"] or {}
            for key in ("layer", "sample_rate_hz", "dimension", "do_normalize"):
                if trained.get(key) != now.get(key):
                    raise ParameterError(f"wav2vec {key} differs between training ({trained.get(key)!r}) and live ({now.get(key)!r})")
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
    def from_model_parts(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "PerceptionModel":
        """Rebuild and validate; any inconsistency raises ModelFormatError with one line."""
        if not isinstance(meta, Mapping):
            raise ModelFormatError("perception meta must be an object")
        if meta.get("perception_format") != PERCEPTION_FORMAT:
            raise ModelFormatError(f"perception_format {meta.get('perception_format')!r} is not supported (expected {PERCEPTION_FORMAT})")
        try:
            model = cls(views=list(meta["views"]), primary_view=str(meta["primary_view"]),
                        vocabulary_size=int(meta["vocabulary_size"]), l2_normalize=bool(meta["l2_normalize"]),
                        seed=int(meta["seed"]), pca_components=int(meta["pca_components"]),
                        pca_views=list(meta["pca_views"]), feature_info=dict(meta["features"]),
                        segmenter=SegmenterConfig(**meta["segmenter"]), sample_rate_hz=int(meta["sample_rate_hz"]))
            if meta.get("feature_kind") != model.primary_view:
                raise ModelFormatError(f"feature_kind {meta.get('feature_kind')!r} does not match the primary view")
            for view in model.views:
                prefix = f"{ARRAY_PREFIX}{view}."
                view_arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                model.quantizers[view] = SymbolQuantizer.from_arrays(
                    meta["quantizers"][view], {k[len("quantizer."):]: v for k, v in view_arrays.items() if k.startswith("quantizer.")})
                pca_meta = meta["pca"].get(view)
                if pca_meta is not None:
                    reducer = PCAReducer.from_arrays(
                        pca_meta, {k[len("pca."):]: v for k, v in view_arrays.items() if k.startswith("pca.")})
                    if reducer.output_dimension != model.quantizers[view].dimension:
                        raise ModelFormatError(f"{view}: PCA output ({reducer.output_dimension}) does not match the quantizer input")
                    model.pca[view] = reducer
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ParameterError) as error:
            raise ModelFormatError(f"perception part of the model is malformed: {type(error).__name__}: {error}") from None
        return model
