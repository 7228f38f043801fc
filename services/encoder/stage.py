"""The encoder stage's pure logic (no Ray): ``(Event, window) → Percept`` through the trainer's own functions.

:class:`EncoderStage` computes features with :func:`~services.encoder.analysis.analyze_windows` and tokens with
:meth:`PerceptionModel.percepts` — the exact calls the trainer makes — so a model trained offline gives the same
tokens live. Two modes:

* **fitted** (a :class:`PerceptionModel` from the model file): tokens from its quantizer(s); when the model is
  hybrid and the wav2vec encoder is lost (an exception from it, or :meth:`EncoderStage.degrade_to_traditional`),
  it keeps going on the traditional view and says so in ``Percept.view`` and :attr:`EncoderStage.counters`.
* **learning live** (no model): an :class:`~services.encoder.quantizer.OnlineQuantizer` per view assigns tokens as
events arrive
  (leader clustering on L2-normalised vectors: a vector farther than ``radius`` from every centroid opens a new
  token until the vocabulary is full, otherwise it takes the nearest). Centroids never move, so a token once
  given keeps its meaning; the result depends only on the order of events (deterministic).

The actor reads the window from the ring (or receives it over Ray) and calls :meth:`EncoderStage.process`
(or :meth:`process_batch` for batched wav2vec).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.encoder.analysis import analyze_windows
from services.encoder.perception_model import PerceptionModel
from services.encoder.quantizer import OnlineQuantizer
from services.encoder.views import HybridPerceptionModule
from shared.errors import ParameterError
from shared.messages import Event, Percept

__all__ = ["EncoderStage", "DimensionMismatchError", "stage_from_spec"]

log = logging.getLogger(__name__)


class DimensionMismatchError(ParameterError):
    """A percept would not have the dimension of the oracle's memory (it is never made)."""


class EncoderStage:
    """``(Event, window) → Percept`` with a fitted :class:`PerceptionModel`, or learning live without one.

    Parameters
    ----------
    perception:
        Computes the views (loads/warms wav2vec when enabled — done before the first event).
    model:
        The fitted perception from the model file, or ``None`` to learn tokens live.
    node_id:
        Stamped into every Percept.
    online_radius:
        Leader-clustering radius (on L2-normalised vectors) while learning live.
    memory_dimension:
        The oracle memory's feature dimension (``PerceptionSpec.memory_dimension``). When given, a percept of
        any other dimension is never made: the constructor refuses a perception that cannot produce it, and
        :meth:`process_batch` raises :class:`DimensionMismatchError` rather than emit one (so it cannot reach
        the oracle). A hybrid model then does not degrade to its traditional view (whose vectors the memory
        cannot use): an encoder failure propagates to the caller, which counts and reports it.
    """

    def __init__(
        self,
        perception: HybridPerceptionModule,
        model: PerceptionModel | None = None,
        *,
        node_id: str = "",
        online_radius: float = 0.35,
        memory_dimension: int | None = None,
    ) -> None:
        self.perception = perception
        self.model = model
        self.node_id = str(node_id)
        self.memory_dimension = int(memory_dimension) if memory_dimension is not None else None
        self.counters: dict[str, int] = {"events": 0, "degraded_events": 0, "encoder_failures": 0}
        self.degraded = False
        if model is not None:
            usable = model.check_compatible(perception)
            if model.primary_view not in perception.views:
                if "traditional" not in model.views:
                    raise ParameterError(
                        f"the model's {model.primary_view} view cannot be computed live and it has no traditional view"
                    )
                log.warning(
                    "model primary view %s is not available live; using its traditional view", model.primary_view
                )
                self.degraded = True
            self._usable = usable
            if self.memory_dimension is not None:
                view = "traditional" if self.degraded else model.primary_view
                produced = model.quantizers[view].dimension
                if produced != self.memory_dimension:
                    raise DimensionMismatchError(
                        f"this perception makes {produced}-D {view} vectors; the model's memory "
                        f"holds {self.memory_dimension}-D ones"
                    )
        self.online = {
            view: OnlineQuantizer(
                perception.vocabulary_size, radius=online_radius, l2_normalize=perception.l2_normalize
            )
            for view in perception.views
        }

    def reset(self) -> None:
        """Forget live-learned tokens (the fitted model and settings stay)."""
        for quantizer in self.online.values():
            quantizer.reset()

    def degrade_to_traditional(self) -> None:
        """Stop using wav2vec (encoder lost); percepts come from the traditional view from now on."""
        if self.model is not None and "traditional" not in self.model.views:
            raise ParameterError("the model has no traditional view to fall back to (train with --hybrid-perception)")
        self.perception.drop_wav2vec()
        self.degraded = True
        self.online = {view: q for view, q in self.online.items() if view == "traditional"} or {
            "traditional": OnlineQuantizer(self.perception.vocabulary_size, l2_normalize=self.perception.l2_normalize)
        }

    def process(
        self, item: tuple[Event, np.ndarray], *, reset: bool = False, window_rate_hz: int | None = None
    ) -> Percept:
        """One ``(event, window)`` → its Percept (``window_rate_hz``: the window's rate when it was resampled,
        e.g. to 16 kHz for a remote wav2vec encoder; default the event's rate)."""
        if reset:
            self.reset()
        try:
            event, window = item
        except (TypeError, ValueError):
            raise ParameterError("EncoderStage.process expects an (Event, window) pair") from None
        return self.process_batch([event], [window], window_rate_hz=window_rate_hz)[0]

    __call__ = process

    def _analyze(
        self, events: Sequence[Event], windows: Sequence[np.ndarray], window_rate_hz: int | None = None
    ) -> list:
        sr = int(window_rate_hz or events[0].sample_rate_hz)
        durations = [np.asarray(w).shape[0] / sr for w in windows]  # live: next onset unknown
        try:
            return analyze_windows(
                windows, events, sample_rate_hz=sr, perception=self.perception, durations_s=durations
            )
        except ParameterError:
            raise
        except Exception as error:  # the wav2vec encoder failed (device lost, OOM …)
            if (
                self.perception.wav2vec is None
                or (self.model is not None and "traditional" not in self.model.views)
                or not self._traditional_fits_memory()
            ):
                raise
            self.counters["encoder_failures"] += 1
            log.warning("wav2vec encoder failed (%s); continuing on the traditional view", error)
            self.degrade_to_traditional()
            return analyze_windows(
                windows, events, sample_rate_hz=sr, perception=self.perception, durations_s=durations
            )

    def _traditional_fits_memory(self) -> bool:
        """Whether percepts of the traditional view can feed the memory (no memory dimension given: unknown, yes)."""
        if self.memory_dimension is None:
            return True
        if self.model is not None:
            return self.model.quantizers["traditional"].dimension == self.memory_dimension
        from services.encoder.features import FEATURE_DIMENSION

        return FEATURE_DIMENSION == self.memory_dimension

    def process_batch(
        self, events: Sequence[Event], windows: Sequence[np.ndarray], *, window_rate_hz: int | None = None
    ) -> list[Percept]:
        """Percepts for many events at once (wav2vec runs one forward per equal-length group)."""
        if len(events) != len(windows):
            raise ParameterError(f"got {len(windows)} windows for {len(events)} events")
        if not events:
            return []
        t_start = time.monotonic()
        analyses = self._analyze(events, windows, window_rate_hz)
        t_features = time.monotonic()
        percepts = self.percepts_for(events, analyses)
        t_ready = time.monotonic()
        for event, percept in zip(events, percepts):
            percept.stamps.update(
                {
                    "t_detected": event.t_detected,
                    "t_encode_start": t_start,
                    "t_features": t_features,
                    "t_ready": t_ready,
                }
            )
        return percepts

    def percepts_for(self, events: Sequence[Event], analyses: Sequence) -> list[Percept]:
        """Tokens for analysed events (the fitted model's, or learned live), dimension-checked and counted: the
        second half of :meth:`process_batch`, also used for events that arrive analysed (MIDI notes)."""
        if self.model is not None:
            view = (
                self.model.primary_view
                if (not self.degraded and self.model.primary_view in self.perception.views)
                else "traditional"
            )
            if view not in self.model.views:
                raise ParameterError(f"view {view} is not in the model")
            percepts = self.model.percepts(events, analyses, self.node_id, view=view)
        else:
            percepts = self._learn_live(events, analyses)
        if self.memory_dimension is not None:
            for percept in percepts:
                size = int(np.asarray(percept.features).size)
                if size != self.memory_dimension:
                    raise DimensionMismatchError(
                        f"a {percept.view} percept of {size} values cannot feed the model's "
                        f"{self.memory_dimension}-D memory"
                    )
        self.counters["events"] += len(percepts)
        if self.degraded:
            self.counters["degraded_events"] += len(percepts)
        return percepts

    def _learn_live(self, events: Sequence[Event], analyses: Sequence) -> list[Percept]:
        view = self.perception.primary_view
        out = []
        for event, (descriptors, vectors) in zip(events, analyses):
            tokens = {name: self.online[name].assign(vector) for name, vector in vectors.items() if name in self.online}
            traditional = tokens.get("traditional") if len(vectors) > 1 else None
            out.append(
                Percept(
                    event_id=event.event_id,
                    token=tokens[view],
                    features=np.asarray(vectors[view], dtype=np.float32),
                    descriptors=descriptors,
                    view=view,
                    traditional_token=traditional,
                    node_id=self.node_id,
                )
            )
        return out


def stage_from_spec(spec: Any, config: Any = None, *, node_id: str = "") -> EncoderStage:
    """The encoder stage a model was trained for, built from its :class:`~services.encoder.spec.PerceptionSpec`.

    Runs on the node that builds the encoder: the wav2vec checkpoint is found and verified there
    (:func:`~services.encoder.spec.resolve_checkpoint`), loaded with the recorded layer (never the
    ``traditional`` fallback of the config) and checked to give the recorded dimension. Only runtime settings
    come from ``config`` (``wav2vec.use_gpu``, ``fp16``, ``int8``). The cheap traditional view alone (the
    fallback) is :func:`services.encoder.fallback.traditional_stage`.
    """
    from services.encoder.spec import DEFAULT_WAV2VEC, resolve_checkpoint
    from shared.config import MusicHalConfig
    from shared.errors import DeviceError

    config = config or MusicHalConfig()
    model = spec.perception_model()
    use_wav2vec = spec.wav2vec is not None
    checkpoint = resolve_checkpoint(spec) if use_wav2vec else None
    perception = HybridPerceptionModule(
        vocabulary_size=spec.vocabulary_size,
        enable_wav2vec=use_wav2vec,
        wav2vec_model=checkpoint or DEFAULT_WAV2VEC,
        use_gpu=config.wav2vec.use_gpu,
        hybrid=spec.hybrid and use_wav2vec,
        wav2vec_layer=spec.wav2vec.layer if spec.wav2vec is not None else -1,
        fp16=config.wav2vec.fp16,
        int8=config.wav2vec.int8,
        fallback="none",
        pca_components=0,
        l2_normalize=model.l2_normalize,
        seed=model.seed,
        slice_notes=config.features.slice_notes,
        symbolic="symbolic" in spec.views,
    )
    if use_wav2vec:
        if perception.wav2vec is None:
            raise DeviceError(f"the wav2vec checkpoint {checkpoint} could not be loaded")
        if perception.wav2vec.dimension != spec.wav2vec.dimension:
            raise DeviceError(
                f"the wav2vec checkpoint {checkpoint} gives {perception.wav2vec.dimension}-D vectors; "
                f"the model was trained on {spec.wav2vec.dimension}-D"
            )
    return EncoderStage(perception, model, node_id=node_id, memory_dimension=spec.memory_dimension)
