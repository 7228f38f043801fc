"""Feature views: which views perception computes per event, and the wav2vec view's module.

* :class:`HybridPerceptionModule` — which views are computed. The ``--hybrid-perception`` flag means: keep
  **both** views per event, the traditional 22-D one always (cheap) and wav2vec when enabled, each with its own
  quantizer, so a live stack that loses the encoder can drop to the traditional view. Without the flag only
  the selected (primary) view is kept. Harmonic descriptors (chroma, f0) always come from the audio. The vectors
  come from :func:`services.encoder.analysis.analyze_windows`; the fitted part is
  :class:`services.encoder.perception_model.PerceptionModel`.
* :class:`Wav2VecPerceptionModule` — the wav2vec view: pooled embeddings per window (+ an optional PCA).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.encoder.analysis import Analysis, analyze_windows
from services.encoder.expression import EXPRESSION_POINTS
from services.encoder.features import FEATURE_DIMENSION, FEATURE_NAMES
from services.encoder.perception_model import PerceptionModel
from services.encoder.quantizer import PCAReducer
from services.encoder.symbolic import describe_symbolic
from services.encoder.wav2vec import Wav2VecMusicEncoder
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import Event

__all__ = ["Wav2VecPerceptionModule", "HybridPerceptionModule"]


class Wav2VecPerceptionModule:
    """Wav2vec view: pooled embeddings per window, plus an optional PCA fitted on a corpus (stored as arrays).

    ``encoder`` may be an already loaded :class:`Wav2VecMusicEncoder`; otherwise one is loaded (and warmed up)
    from ``model`` here.
    """

    def __init__(
        self,
        model: str = "facebook/wav2vec2-base",
        *,
        layer: int = -1,
        use_gpu: bool = False,
        fp16: bool = False,
        int8: bool = False,
        fallback: str = "none",
        pca_components: int = 16,
        torch_threads: int | None = None,
        encoder: Wav2VecMusicEncoder | None = None,
    ) -> None:
        if int(pca_components) < 0:
            raise ParameterError(f"pca_components must be >= 0, got {pca_components}")
        self.encoder = (
            encoder
            if encoder is not None
            else Wav2VecMusicEncoder(
                model,
                layer=layer,
                use_gpu=use_gpu,
                fp16=fp16,
                int8=int8,
                fallback=fallback,
                torch_threads=torch_threads,
            )
        )
        self.pca_components = int(pca_components)
        self.pca: PCAReducer | None = None

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

    def __init__(
        self,
        vocabulary_size: int = 64,
        enable_wav2vec: bool = False,
        wav2vec_model: str = "facebook/wav2vec2-base",
        use_gpu: bool = False,
        hybrid: bool = False,
        *,
        wav2vec_layer: int = -1,
        fp16: bool = False,
        int8: bool = False,
        fallback: str = "none",
        pca_components: int = 0,
        l2_normalize: bool = True,
        seed: int = 0,
        torch_threads: int | None = None,
        wav2vec: Any = None,
        slice_notes: bool = False,
        symbolic: bool = False,
    ) -> None:
        if not 2 <= int(vocabulary_size) <= 65_536:
            raise ParameterError(f"vocabulary_size must be in 2..65536, got {vocabulary_size}")
        self.vocabulary_size = int(vocabulary_size)
        #: the symbolic view alone (features of the notes: services.encoder.symbolic); no wav2vec then
        self.symbolic = bool(symbolic)
        if self.symbolic and (enable_wav2vec or wav2vec is not None or hybrid):
            raise ParameterError("the symbolic view is a view of its own: not with wav2vec or --hybrid-perception")
        self.hybrid = bool(hybrid)
        self.pca_components = int(pca_components)
        self.l2_normalize = bool(l2_normalize)
        self.seed = int(seed)
        self.wav2vec: Wav2VecPerceptionModule | None = None
        if isinstance(wav2vec, Wav2VecMusicEncoder):
            wav2vec = Wav2VecPerceptionModule(encoder=wav2vec, pca_components=pca_components)
        if enable_wav2vec or wav2vec is not None:
            module = wav2vec or Wav2VecPerceptionModule(
                wav2vec_model,
                layer=wav2vec_layer,
                use_gpu=use_gpu,
                fp16=fp16,
                int8=int8,
                fallback=fallback,
                pca_components=pca_components,
                torch_threads=torch_threads,
            )
            if module.encoder.is_fallback:
                warnings.warn(
                    "wav2vec is not available; perception uses the traditional view only", RuntimeWarning, stacklevel=2
                )
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
    def from_config(cls, config: MusicHalConfig, **overrides: Any) -> HybridPerceptionModule:
        """Build from the ``features``, ``wav2vec`` and ``quantizer`` sections."""
        kwargs: dict[str, Any] = dict(
            vocabulary_size=config.quantizer.vocabulary_size,
            enable_wav2vec=config.features.kind == "wav2vec",
            wav2vec_model=config.wav2vec.model,
            use_gpu=config.wav2vec.use_gpu,
            hybrid=config.features.hybrid,
            wav2vec_layer=config.wav2vec.layer,
            fp16=config.wav2vec.fp16,
            int8=config.wav2vec.int8,
            fallback=config.wav2vec.fallback,
            pca_components=config.features.pca_components,
            l2_normalize=config.quantizer.l2_normalize,
            seed=config.quantizer.seed,
            slice_notes=config.features.slice_notes,
            symbolic=config.features.kind == "symbolic",
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def primary_view(self) -> str:
        if self.symbolic:
            return "symbolic"
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
        info = {
            "views": list(self.views),
            "primary_view": self.primary_view,
            "hybrid": self.hybrid,
            "wav2vec": self.wav2vec.encoder.describe() if self.wav2vec is not None else None,
            # every event's descriptors carry its expression (services.encoder.expression); recorded here so that
            # the trainer's feature cache key (which holds this entry) changes with it
            "traditional": {
                "dimension": FEATURE_DIMENSION,
                "names": list(FEATURE_NAMES),
                "expression": {"points": EXPRESSION_POINTS, "f0_reference": "slice f0", "version": 1},
            },
            "slice_notes": self.transcriber.describe() if self.transcriber is not None else None,
        }
        if self.symbolic:  # only then, so an audio perception's record (and cache key) is as it was
            info["symbolic"] = describe_symbolic()
        return info

    def extract_features(self, audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """``{view: vector}`` for one mono window at ``sr``."""
        return analyze_windows([audio], None, sample_rate_hz=sr, perception=self)[0][1]

    def analyze(
        self, windows: Sequence[np.ndarray], events: Sequence[Event] | None, *, sample_rate_hz: int
    ) -> list[Analysis]:
        return analyze_windows(windows, events, sample_rate_hz=sample_rate_hz, perception=self)

    def new_model(self, *, config: MusicHalConfig | None = None) -> PerceptionModel:
        """An unfitted :class:`PerceptionModel` for these views (segmentation/rates taken from ``config``)."""
        config = config or MusicHalConfig()
        return PerceptionModel(
            views=self.views,
            primary_view=self.primary_view,
            vocabulary_size=self.vocabulary_size,
            l2_normalize=self.l2_normalize,
            seed=self.seed,
            pca_components=self.pca_components,
            feature_info=self.describe(),
            segmenter=config.segmenter,
            sample_rate_hz=config.audio.sample_rate_hz,
        )
