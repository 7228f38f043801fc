"""Wav2Vec 2.0 event embeddings: any Wav2Vec2-architecture checkpoint, mean-pooled hidden states of one layer.

The pipeline per window is exactly Hugging Face's own (so vectors equal ``feature_extractor → model → mean over
time`` within float tolerance):

1. mono (mean of channels for ``(frames, channels)`` input), finite check;
2. resample to the checkpoint's rate (16 kHz) with ``soxr.resample`` (HQ) — never any other rate;
3. the checkpoint's own ``Wav2Vec2FeatureExtractor`` normalisation (zero mean / unit variance when
   ``do_normalize``), done in numpy exactly as the extractor does it;
4. ``Wav2Vec2Model`` forward (``output_hidden_states`` only when a layer other than the last is asked for);
5. mean over time of the chosen layer.

:meth:`Wav2VecMusicEncoder.encode_batch` runs **one forward per group of equal-length windows** (order kept):
windows are never padded, because padding changes the outputs of group-norm models such as wav2vec2-base.

Loading honours the offline cache: a local directory, ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` or an
unreachable hub all mean ``local_files_only=True``. A checkpoint that cannot be found raises one
:class:`~shared.errors.DeviceError` line saying how to provide it. The model is loaded and warmed up with one
forward in the constructor, never on the first live event.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import DeviceError, ParameterError

__all__ = [
    "Wav2VecFeatures",
    "Wav2VecMusicEncoder",
    "load_wav2vec_checkpoint",
    "choose_device",
    "hub_offline",
    "check_wav2vec_available",
    "how_to_provide",
    "model_memory_bytes",
    "MIN_WAV2VEC_SAMPLES",
]

log = logging.getLogger(__name__)

#: The shortest input (at 16 kHz) the wav2vec2 convolutional feature encoder accepts (one 25 ms frame).
MIN_WAV2VEC_SAMPLES = 400
_WARMUP_SECONDS = 0.5


@dataclass(frozen=True)
class Wav2VecFeatures:
    """One pooled embedding.

    Attributes
    ----------
    vector:
        float32 ``(D,)`` mean over time of the chosen layer (22-D traditional features when ``fallback``).
    timestamp:
        Caller's timestamp (seconds), passed through.
    model, layer:
        Which checkpoint and hidden layer produced it.
    num_frames:
        Encoder frames pooled (0 in fallback mode).
    sample_rate_hz:
        Rate the model saw (16 kHz), or the caller's rate in fallback mode.
    fallback:
        True when the traditional features stand in for a model that could not be loaded.
    """

    vector: np.ndarray = field(compare=False)
    timestamp: float = 0.0
    model: str = ""
    layer: int = -1
    num_frames: int = 0
    sample_rate_hz: int = 16_000
    fallback: bool = False


def hub_offline(*, timeout_s: float = 1.0) -> bool:
    """True when the Hugging Face hub must not or cannot be used (offline env flags, or no connection)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return False
    except OSError:
        return True


def choose_device(use_gpu: bool) -> str:
    """CUDA → MPS → CPU when ``use_gpu``; CPU otherwise. Warns when a GPU was asked for but none exists."""
    if not use_gpu:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    warnings.warn(
        "--gpu was requested but no CUDA or MPS device is available; using the CPU", RuntimeWarning, stacklevel=2
    )
    return "cpu"


def check_wav2vec_available(model: str) -> None:
    """Raise DeviceError (one line) when the wav2vec checkpoint is neither a local directory nor in the HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DeviceError(f"wav2vec model directory {model} has no config.json: save it with save_pretrained")
        return
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        raise DeviceError(
            f"wav2vec model directory {model} does not exist: pass a directory saved with save_pretrained, "
            "or a hub name that is in the Hugging Face cache"
        )
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise DeviceError(how_to_provide(model))


def how_to_provide(model: str) -> str:
    return (
        f"wav2vec model {model!r} is not available offline: pass a local directory saved with save_pretrained "
        f"(--wav2vec-model /path/to/dir), or pre-download it into the Hugging Face cache on a machine with network "
        f"access (`huggingface-cli download {model}`) and copy the cache (HF_HOME) here"
    )


def _bin_only(source: str) -> bool:
    """A local directory (or a cached hub snapshot) with ``*.bin`` weights and no ``*.safetensors``."""
    path = Path(source).expanduser()
    if not path.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(source, "config.json")
            path = Path(found).parent if isinstance(found, str) else path
        except Exception:
            return False
    if not path.is_dir():
        return False
    return any(path.glob("*.bin")) and not any(path.glob("*.safetensors"))


def load_wav2vec_checkpoint(model: str, *, local_files_only: bool | None = None) -> tuple[Any, Any, bool]:
    """Load ``(Wav2Vec2Model, Wav2Vec2FeatureExtractor, extractor_found)`` from a hub name or a local directory.

    Raises
    ------
    DeviceError
        One line, saying how to provide the checkpoint, when it cannot be found or read.
    """
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    if not isinstance(model, str) or not model:
        raise ParameterError("wav2vec model must be a non-empty name or directory")
    path = Path(model).expanduser()
    looks_like_path = path.is_absolute() or model.startswith((".", "~"))
    if path.is_dir():
        source, offline = str(path), True
    elif looks_like_path and not path.exists():
        raise DeviceError(
            f"wav2vec model directory {model} does not exist: pass a directory saved with save_pretrained, "
            "or a hub name that is in the Hugging Face cache"
        )
    else:
        source = model
        offline = hub_offline() if local_files_only is None else bool(local_files_only)
    verbosity = hf_logging.get_verbosity()
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        try:  # safetensors only: a pickled .bin checkpoint could run code while loading
            network = Wav2Vec2Model.from_pretrained(source, local_files_only=offline, use_safetensors=True)
        except (OSError, ValueError) as error:
            if _bin_only(source):
                raise DeviceError(
                    f"wav2vec checkpoint {model} has only pickled PyTorch weights (.bin), no .safetensors: "
                    "convert it once where you trust it (Wav2Vec2Model.from_pretrained(dir)"
                    ".save_pretrained(dir, safe_serialization=True))"
                ) from None
            raise DeviceError(
                how_to_provide(model) + f" ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=offline)
            found = True
        except (OSError, ValueError):
            extractor = Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True
            )
            found = False
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()
    return network.eval(), extractor, found


def model_memory_bytes(network: Any) -> int:
    """Bytes held by the model's weights and buffers (int8-packed weights counted at their packed size)."""
    import torch

    total = 0

    def add(value: Any) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, (tuple, list)):
            for item in value:
                add(item)

    for value in network.state_dict().values():
        add(value)
    return int(total)


class Wav2VecMusicEncoder:
    """Mean-pooled Wav2Vec 2.0 embeddings of audio windows (see the module docstring for the pipeline).

    Parameters
    ----------
    model:
        Hub name (``facebook/wav2vec2-base``, ``…-large-robust``, a music fine-tune) or a local directory.
    layer:
        Hidden layer to pool: ``-1`` = last (default), ``0`` = the feature projection output, ``1..L``.
    use_gpu:
        Try CUDA, then MPS; a warning and the CPU when neither exists.
    fp16:
        Half precision on CUDA (ignored with a warning elsewhere).
    int8:
        Dynamic int8 quantisation of the Linear layers on CPU (ignored with a warning on a GPU).
    fallback:
        ``"none"``: a missing model raises DeviceError; ``"traditional"``: warn and produce the 22-D
        traditional features instead.
    torch_threads:
        Set ``torch.set_num_threads`` (process-wide) only when given.
    max_batch_size:
        Split larger equal-length groups into forwards of at most this many windows (None: no limit).

    Attributes
    ----------
    device : str
        ``"cuda"``, ``"mps"`` or ``"cpu"``, chosen once.
    dimension : int
        Length of the vectors (hidden size, or 22 in fallback mode).
    memory_bytes : int
        Parameter + buffer bytes of the loaded model (0 in fallback mode).
    load_seconds : float
        Load + warm-up time.
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
        torch_threads: int | None = None,
        max_batch_size: int | None = None,
        _loaded: tuple[Any, Any] | None = None,
    ) -> None:
        if fallback not in ("none", "traditional"):
            raise ParameterError(f"fallback must be 'none' or 'traditional', got {fallback!r}")
        if torch_threads is not None and int(torch_threads) < 1:
            raise ParameterError(f"torch_threads must be >= 1, got {torch_threads}")
        if max_batch_size is not None and int(max_batch_size) < 1:
            raise ParameterError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model_name = str(model)
        self.layer = int(layer)
        self.fallback_mode = fallback
        self.max_batch_size = max_batch_size
        self.is_fallback = False
        self.fp16 = False
        self.int8 = False
        self.memory_bytes = 0
        self.network: Any = None
        self.feature_extractor: Any = None
        self.target_rate_hz = 16_000
        self.do_normalize = True
        started = time.perf_counter()
        if torch_threads is not None:
            import torch

            torch.set_num_threads(int(torch_threads))
        try:
            if _loaded is not None:
                network, extractor = _loaded
                network = network.eval()
            else:
                network, extractor, found = load_wav2vec_checkpoint(self.model_name)
                if not found:
                    warnings.warn(
                        f"{self.model_name}: no preprocessor_config.json; using the default wav2vec2 "
                        "normalisation (zero mean, unit variance, 16 kHz)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        except DeviceError as error:
            if fallback != "traditional":
                raise
            warnings.warn(f"{error}; falling back to the traditional 22-D features", RuntimeWarning, stacklevel=2)
            self._init_fallback()
            self.load_seconds = time.perf_counter() - started
            return
        self.device = choose_device(use_gpu)
        self._setup(network, extractor, fp16=fp16, int8=int8)
        self.warm_up()
        self.load_seconds = time.perf_counter() - started
        log.info(
            "wav2vec %s loaded on %s (%d-D, layer %d, %.1f MB) in %.2f s",
            self.model_name,
            self.device,
            self.dimension,
            self.layer,
            self.memory_bytes / 1e6,
            self.load_seconds,
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_model(
        cls, network: Any, feature_extractor: Any = None, *, name: str = "in-memory", **kwargs: Any
    ) -> Wav2VecMusicEncoder:
        """Wrap an already built ``Wav2Vec2Model`` (tests, benchmarks) — same pipeline, no loading."""
        if feature_extractor is None:
            from transformers import Wav2Vec2FeatureExtractor

            feature_extractor = Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True
            )
        return cls(name, _loaded=(network, feature_extractor), **kwargs)

    def _init_fallback(self) -> None:
        from services.encoder.features import FEATURE_DIMENSION

        self.is_fallback = True
        self.device = "cpu"
        self.dimension = FEATURE_DIMENSION
        self.num_layers = 0

    def _setup(self, network: Any, extractor: Any, *, fp16: bool, int8: bool) -> None:
        import torch

        config = network.config
        self.num_layers = int(config.num_hidden_layers)
        if not -(self.num_layers + 1) <= self.layer <= self.num_layers:
            raise ParameterError(
                f"layer must be in {-(self.num_layers + 1)}..{self.num_layers} for {self.model_name}, got {self.layer}"
            )
        self.dimension = int(config.hidden_size)
        self.group_norm = getattr(config, "feat_extract_norm", "group") == "group"
        self.feature_extractor = extractor
        self.target_rate_hz = int(getattr(extractor, "sampling_rate", 16_000) or 16_000)
        self.do_normalize = bool(getattr(extractor, "do_normalize", True))
        if fp16 and self.device != "cuda":
            warnings.warn("fp16 is only used on CUDA; running in float32", RuntimeWarning, stacklevel=3)
            fp16 = False
        if int8 and self.device != "cpu":
            warnings.warn(
                "int8 dynamic quantisation is CPU-only; running unquantised on the GPU", RuntimeWarning, stacklevel=3
            )
            int8 = False
        if int8:
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                network = quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
        network = network.to(self.device)
        if fp16:
            network = network.half()
        self.fp16, self.int8 = fp16, int8
        self._dtype = torch.float16 if fp16 else torch.float32
        self.network = network.eval()
        self.memory_bytes = model_memory_bytes(self.network)

    def warm_up(self) -> None:
        """One forward on a dummy window (done by the constructor)."""
        if self.is_fallback:
            return
        dummy = np.zeros(int(_WARMUP_SECONDS * self.target_rate_hz), dtype=np.float32)
        dummy[::97] = 0.01
        self._forward(self._normalize(dummy)[None, :])

    # ------------------------------------------------------------------ pipeline
    def describe(self) -> dict[str, Any]:
        """What a model file must record to reproduce these vectors."""
        return {
            "model": self.model_name,
            "layer": self.layer,
            "dimension": self.dimension,
            "sample_rate_hz": self.target_rate_hz,
            "do_normalize": self.do_normalize,
            "device": self.device,
            "fp16": self.fp16,
            "int8": self.int8,
            "fallback": self.is_fallback,
        }

    def _mono(self, audio: np.ndarray, sr: int) -> np.ndarray:
        if not 1_000 <= int(sr) <= 384_000:
            raise ParameterError(f"sample rate must be in 1000..384000 Hz, got {sr}")
        x = np.asarray(audio)
        if x.dtype.kind not in "fiu":
            raise ParameterError(f"audio must be numeric, got dtype {x.dtype}")
        if x.ndim == 2:
            x = x.astype(np.float32).mean(axis=1, dtype=np.float32)
        elif x.ndim != 1:
            raise ParameterError(f"audio must be (frames,) or (frames, channels), got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if x.size == 0:
            raise ParameterError("audio window is empty")
        if not np.isfinite(x).all():
            raise ParameterError("audio window contains NaN or infinite samples")
        return x

    def _normalize(self, x16: np.ndarray) -> np.ndarray:
        x16 = np.asarray(x16, dtype=np.float32)
        if self.do_normalize:
            x16 = (x16 - x16.mean()) / np.sqrt(x16.var() + 1e-7)
        return np.ascontiguousarray(x16, dtype=np.float32)

    def prepare(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono → 16 kHz (soxr) → the checkpoint's normalisation: the exact model input for one window."""
        x = self._mono(audio, sr)
        if int(sr) != self.target_rate_hz:
            import soxr

            x = soxr.resample(x, int(sr), self.target_rate_hz, quality="HQ").astype(np.float32, copy=False)
        if x.size < MIN_WAV2VEC_SAMPLES:
            raise ParameterError(
                f"audio window too short for wav2vec: {x.size} samples at {self.target_rate_hz} Hz "
                f"(needs >= {MIN_WAV2VEC_SAMPLES}, i.e. 25 ms)"
            )
        return self._normalize(x)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """``(B, T)`` normalised 16 kHz input → ``(B, D)`` float32 pooled vectors; one model call."""
        import torch

        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, dtype=self._dtype)
        with torch.inference_mode():
            if self.layer == -1:
                hidden = self.network(inputs).last_hidden_state
            else:
                hidden = self.network(inputs, output_hidden_states=True).hidden_states[self.layer]
            pooled = hidden.float().mean(dim=1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    def _fallback_features(self, audio: np.ndarray, sr: int, timestamp: float) -> Wav2VecFeatures:
        from services.encoder.features import traditional_features

        x = self._mono(audio, sr)
        return Wav2VecFeatures(
            vector=traditional_features(x, sample_rate_hz=int(sr)),
            timestamp=float(timestamp),
            model="traditional",
            layer=0,
            num_frames=0,
            sample_rate_hz=int(sr),
            fallback=True,
        )

    def encode(self, audio: np.ndarray, sr: int, timestamp: float = 0.0) -> Wav2VecFeatures:
        """Embed one window (``(frames,)`` or ``(frames, channels)`` at ``sr``).

        Raises
        ------
        ParameterError
            Empty, non-finite, badly shaped or too short (< 25 ms) audio, or a bad sample rate.
        """
        if self.is_fallback:
            return self._fallback_features(audio, sr, timestamp)
        x = self.prepare(audio, sr)
        vector = self._forward(x[None, :])[0]
        return Wav2VecFeatures(
            vector=vector,
            timestamp=float(timestamp),
            model=self.model_name,
            layer=self.layer,
            num_frames=self.frames_for(x.size),
            sample_rate_hz=self.target_rate_hz,
        )

    def encode_batch(
        self, segments: Sequence[np.ndarray], sr: int, timestamps: Sequence[float] | None = None
    ) -> list[Wav2VecFeatures]:
        """Embed many windows: one forward per group of equal-length windows (no padding), results in input order."""
        if timestamps is not None and len(timestamps) != len(segments):
            raise ParameterError(f"got {len(timestamps)} timestamps for {len(segments)} segments")
        stamps = [float(t) for t in timestamps] if timestamps is not None else [0.0] * len(segments)
        if self.is_fallback:
            return [self._fallback_features(s, sr, t) for s, t in zip(segments, stamps)]
        prepared = [self.prepare(segment, sr) for segment in segments]
        groups: dict[int, list[int]] = {}
        for index, x in enumerate(prepared):
            groups.setdefault(x.size, []).append(index)
        vectors: list[np.ndarray | None] = [None] * len(prepared)
        for _length, indices in groups.items():
            step = self.max_batch_size or len(indices)
            for begin in range(0, len(indices), step):
                chunk = indices[begin : begin + step]
                pooled = self._forward(np.stack([prepared[i] for i in chunk]))
                for row, index in enumerate(chunk):
                    vectors[index] = pooled[row]
        return [
            Wav2VecFeatures(
                vector=vectors[i],
                timestamp=stamps[i],
                model=self.model_name,
                layer=self.layer,
                num_frames=self.frames_for(prepared[i].size),
                sample_rate_hz=self.target_rate_hz,
            )
            for i in range(len(prepared))
        ]

    def frames_for(self, samples: int) -> int:
        """Encoder frames the convolutional feature encoder makes from ``samples`` 16 kHz samples."""
        if self.network is None:
            return 0
        config = self.network.config
        length = int(samples)
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            length = (length - kernel) // stride + 1
        return max(length, 0)
