"""The encoder actor: a thin Ray wrapper around :class:`services.encoder.stage.EncoderStage`.

* **Local** (same node as the rings): a thread reads events from the events ring, reads each window from the
  audio ring (validated zero-copy view → copy), encodes it and writes the Percept to the percepts ring.
  Backlog beyond ``cluster.max_events_in_flight`` is dropped, oldest first, and counted — never audio.
* **Remote** (another node, placed by a custom resource or a GPU): no rings; the oracle actor sends each window
  by value through Ray (``encode``) with a deadline, resampled on the head to :attr:`input_rate_hz` (16 kHz when
  every view is wav2vec). The perception comes by value too (``perception_spec``: settings and arrays, a few KB,
  read on the head); only the wav2vec checkpoint is resolved on the encoder's own node.

Clock domains: an encoder on another node has its own monotonic clock. A remote Percept therefore carries only
*durations* measured here (``stamps["encode_s"]``) plus the head's own ``t_detected`` passed through untouched;
the encoder never subtracts a head timestamp from its clock. Locally (same node, same clock) it also records the
ring-hop latencies. Control calls (``ready``, ``ping``, ``stats``, ``stop``) run in their own concurrency group,
so they answer while an encode is running.

The model is loaded and the wav2vec encoder warmed up in ``__init__`` — never on the first live event.
Every Percept is stamped with the node that computed it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import ray

from services.encoder.fallback import traditional_stage
from services.encoder.features import FEATURE_DIMENSION
from services.encoder.guard import GuardedEncoder, OverloadGuard
from services.encoder.stage import EncoderStage, stage_from_spec
from services.encoder.symbolic import SYMBOLIC_DIMENSION
from services.encoder.views import HybridPerceptionModule
from services.ray_support import current_node_id, set_torch_threads
from shared.config import MusicHalConfig
from shared.errors import DeviceError, MusicHalError, RingBufferError
from shared.message_ring import MessageRing
from shared.messages import Event, Percept, message_from_bytes
from shared.ring import AudioRing
from shared.stats import LatencyRecorder

__all__ = ["EncoderActor", "build_encoder_stage"]


def build_encoder_stage(config: MusicHalConfig, *, node_id: str = "", spec: Any = None) -> EncoderStage:
    """The encoder's pure stage: from the model's perception record when there is a model (``spec``, sent by value:
    the model file is read once, on the head), else from the config (learning tokens live)."""
    if spec is not None:
        return stage_from_spec(spec, config, node_id=node_id)
    perception = HybridPerceptionModule.from_config(config)
    memory = perception.wav2vec.dimension if perception.wav2vec is not None else FEATURE_DIMENSION
    if perception.symbolic:  # features of the notes (services.encoder.symbolic)
        memory = SYMBOLIC_DIMENSION
    return EncoderStage(perception, None, node_id=node_id, memory_dimension=memory)  # learning live


def input_rate_for(perception: HybridPerceptionModule, analysis_rate_hz: int) -> int:
    """The rate a remote window should travel at: 16 kHz when wav2vec is the only view (it resamples to 16 kHz
    anyway), else the analysis rate (the traditional view and the descriptors are computed at that rate)."""
    if tuple(perception.views) == ("wav2vec",) and perception.wav2vec is not None:
        return int(perception.wav2vec.encoder.target_rate_hz)
    return int(analysis_rate_hz)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, concurrency_groups={"control": 1})
class EncoderActor:
    def __init__(
        self,
        config: MusicHalConfig,
        *,
        perception_spec: Any = None,
        rings: dict[str, str] | None = None,
        local_node_id: str | None = None,
        torch_threads: int = 1,
    ) -> None:
        set_torch_threads(torch_threads)
        self.config = config
        self.node_id = current_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.warning: str | None = None
        t0 = time.monotonic()
        try:  # this node's own preflight: checkpoint, device, model arrays; one line naming the node
            self.spec = perception_spec
            self.stage = build_encoder_stage(config, node_id=self.node_id, spec=perception_spec)
            self.device = self._check_device(config)
            self._warm_up()
            self.guarded = self._make_guard(config)
        except MusicHalError as error:
            raise type(error)(f"encoder node {self.node_ip}: {error}") from None
        self.load_seconds = time.monotonic() - t0
        self.input_rate_hz = input_rate_for(self.stage.perception, config.audio.sample_rate_hz)
        self.latency = LatencyRecorder()
        self.counters = {"encoded": 0, "dropped_backlog": 0, "window_overruns": 0, "remote_calls": 0, "exceptions": 0}
        self.first_exception: str | None = None  # "Type: message" of the first event that failed
        self.error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.local = bool(rings) and local_node_id == self.node_id
        self._thread: threading.Thread | None = None
        if self.local:
            self.audio = AudioRing.attach(rings["audio"])
            self.events = MessageRing.attach(rings["events"])
            self.percepts = MessageRing.attach(rings["percepts"])
            self.reader = self.events.reader()
            self._thread = threading.Thread(target=self._loop, name="musichal-encoder", daemon=True)
            self._thread.start()

    def _check_device(self, config: MusicHalConfig) -> str:
        """The device wav2vec runs on; ``--gpu`` without a GPU here is an error unless ``wav2vec.gpu_fallback``."""
        wav2vec = self.stage.perception.wav2vec
        device = str(wav2vec.encoder.device) if wav2vec is not None else "cpu"
        if config.wav2vec.use_gpu and wav2vec is not None and device == "cpu":
            import os

            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            line = (
                f"--gpu: no CUDA or MPS device is visible to the encoder (CUDA_VISIBLE_DEVICES={visible!r}); "
                "use a node with a GPU, or add --gpu-fallback to run wav2vec on the CPU"
            )
            if not config.wav2vec.gpu_fallback:
                raise DeviceError(line)
            self._warn(line.split(";")[0] + "; running wav2vec on the CPU (--gpu-fallback)")
        return device

    def _warm_up(self) -> None:
        """Run the feature code once on a throwaway window (first calls pay imports and caches), not on a live event."""
        from services.encoder.analysis import analyze_windows

        sr = self.config.audio.sample_rate_hz
        n = int(round(self.config.segmenter.window_ms * 1e-3 * sr))
        noise = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
        analyze_windows([noise], None, sample_rate_hz=sr, perception=self.stage.perception)

    def _make_guard(self, config: MusicHalConfig):
        """The too-slow guard: a traditional-view stage to switch to when the primary (wav2vec) cannot keep up.

        Built when the primary computes wav2vec and the memory can use traditional percepts, or when the
        test-only ``control.test_encoder_delay_ms`` slows the primary down; otherwise the guard only warns.
        """
        control = config.control
        wants = "wav2vec" in self.stage.perception.views or control.test_encoder_delay_ms > 0
        if not control.slow_guard or not wants:
            return None
        fallback = None
        try:
            fallback = traditional_stage(config, spec=self.spec, node_id=self.node_id)
        except Exception:  # the memory cannot use the traditional view: warn only
            fallback = None
        guard = OverloadGuard(window_events=control.slow_window_events, recover_events=control.slow_recover_events)
        return GuardedEncoder(
            self.stage,
            fallback,
            guard,
            deadline_s=config.cluster.encoder_deadline_ms / 1000.0,
            delay_s=control.test_encoder_delay_ms / 1000.0,
            warn=self._warn,
        )

    def _warn(self, line: str) -> None:
        import sys

        self.warning = line
        print(f"musichal: warning: {line}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ local data plane
    def _loop(self) -> None:
        limit = self.config.cluster.max_events_in_flight
        try:
            while not self._stop.is_set():
                payload = self.reader.receive(timeout_s=0.05)
                if payload is None:
                    continue
                backlog = [payload] + self.reader.drain()
                backlog = [e for e in map(message_from_bytes, backlog) if not e.early]  # early views: the oracle's
                if len(backlog) > limit:  # overload: keep the newest events, count the rest
                    self.counters["dropped_backlog"] += len(backlog) - limit
                    backlog = backlog[-limit:]
                for event in backlog:
                    try:
                        window = self.audio.read(event.window_start, event.window_end)
                    except RingBufferError:
                        self.counters["window_overruns"] += 1
                        continue
                    try:
                        percept = self._encode(event, window)
                    except Exception as error:  # this event is lost (answered by the oracle's deadline); counted, shown
                        self._count_exception(error)
                        continue
                    self.percepts.send_message(percept)
        except BaseException as error:
            self.error = f"encoder loop failed: {type(error).__name__}: {error}"

    def _count_exception(self, error: BaseException) -> None:
        self.counters["exceptions"] += 1
        if self.first_exception is None:
            self.first_exception = f"{type(error).__name__}: {error}"

    def _encode(
        self, event: Event, window: np.ndarray, *, lag_s: float | None = None, window_rate_hz: int | None = None
    ) -> Percept:
        """Encode one window. Local (``lag_s`` None): the event's head stamps share this node's clock. Remote: the
        head says how old the event was when sent (``lag_s``, its clock); only durations are measured here."""
        t0 = time.monotonic()
        if self.local and lag_s is None and event.t_detected:
            self.latency.add("detected_to_encoder", t0 - event.t_detected)  # segmenter + events ring
            if event.t_sent:
                self.latency.add("events_ring", t0 - event.t_sent, key=event.event_id)  # the hop alone
        with self._lock:
            if self.guarded is not None:
                percept = self.guarded.process((event, window), lag_s=lag_s, window_rate_hz=window_rate_hz)
            else:
                percept = self.stage.process((event, window), window_rate_hz=window_rate_hz)
        t1 = time.monotonic()
        self.latency.add("encode", t1 - t0)
        self.counters["encoded"] += 1
        if self.local:
            stamps = dict(percept.stamps or {})
            stamps.update({"t_detected": event.t_detected, "t_encoded": t1})
        else:  # another clock: pass the head's stamp through, add durations only
            stamps = {"t_detected": event.t_detected, "encode_s": t1 - t0, "clock": self.node_id}
        return replace(percept, node_id=self.node_id, stamps=stamps)

    # ------------------------------------------------------------------ remote data plane / control
    def encode(
        self, event: Event, window: np.ndarray, *, lag_s: float = 0.0, window_rate_hz: int | None = None
    ) -> Percept:
        """Encode one window sent by value (the remote-encoder hop). ``lag_s``: the event's age when the head sent
        it (head clock); ``window_rate_hz``: the window's rate when the head resampled it (else the event's)."""
        self.counters["remote_calls"] += 1
        try:
            return self._encode(
                event, np.asarray(window, dtype=np.float32), lag_s=max(0.0, float(lag_s)), window_rate_hz=window_rate_hz
            )
        except Exception as error:
            self._count_exception(error)
            raise

    @ray.method(concurrency_group="control")
    def ping(self) -> str:
        """The cheap probe the oracle sends while it considers this encoder down."""
        return self.node_id

    @ray.method(concurrency_group="control")
    def ready(self) -> dict[str, Any]:
        import os

        spec = self.spec
        return {
            "node_id": self.node_id,
            "node_ip": self.node_ip,
            "local": self.local,
            "pid": os.getpid(),
            "load_seconds": round(self.load_seconds, 3),
            "device": self.device,
            "input_rate_hz": self.input_rate_hz,
            "views": list(self.stage.perception.views),
            "memory_dimension": spec.memory_dimension if spec else None,
            "wav2vec": self.stage.perception.wav2vec.encoder.model_name if self.stage.perception.wav2vec else None,
            "warning": self.warning,
        }

    @ray.method(concurrency_group="control")
    def stats(self) -> dict[str, Any]:
        counters = dict(self.counters)
        counters.update({f"stage_{k}": v for k, v in self.stage.counters.items()})
        if self.local:
            counters["message_overruns"] = self.reader.overruns
        guard = None
        if self.guarded is not None:
            guard = {
                "degraded": self.guarded.guard.degraded,
                "using_fallback": self.guarded.using_fallback,
                "max_lag_s": round(self.guarded.guard.max_lag_s, 6),
                **self.guarded.guard.counters,
                **{f"encoded_{k}": v for k, v in self.guarded.counters.items()},
            }
        return {
            "stage": "encoder",
            "node_id": self.node_id,
            "local": self.local,
            "counters": counters,
            "latency_ms": self.latency.summary(),
            "error": self.error,
            "degraded": self.stage.degraded,
            "slow_guard": guard,
            "warning": self.warning,
            "first_exception": self.first_exception,
            "device": self.device,
            "input_rate_hz": self.input_rate_hz,
        }

    @ray.method(concurrency_group="control")
    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.local:
            self.audio.close()
            self.events.close()
            self.percepts.close()
