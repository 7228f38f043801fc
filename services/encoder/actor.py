"""The encoder actor: a thin Ray wrapper around :class:`services.encoder.stage.EncoderStage`.

* **Local** (same node as the rings): a thread reads events from the events ring, reads each window from the
  audio ring (validated zero-copy view → copy), encodes it and writes the Percept to the percepts ring.
  Backlog beyond ``cluster.max_events_in_flight`` is dropped, oldest first, and counted — never audio.
* **Remote** (another node, placed by a custom resource or a GPU): no rings; the oracle actor sends each window
  by value through Ray (``encode``) with a deadline.

The model is loaded and the wav2vec encoder warmed up in ``__init__`` — never on the first live event.
Every Percept is stamped with the node that computed it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np
import ray

from shared.config import MusicHalConfig
from shared.errors import RingBufferError
from shared.message_ring import MessageRing
from shared.messages import Event, Percept, message_from_bytes
from shared.ring import AudioRing
from shared.stats import LatencyRecorder
from services.encoder.perception import HybridPerceptionModule
from services.encoder.stage import EncoderStage
from services.ray_support import current_node_id, set_torch_threads

__all__ = ["EncoderActor", "build_encoder_stage"]


def build_encoder_stage(config: MusicHalConfig, model_path: Optional[str], *, node_id: str = "") -> EncoderStage:
    """The encoder's pure stage from the config and (optionally) a model file (shared with the oracle's fallback)."""
    perception_model = None
    if model_path:
        from services.model_file import load_musichal_model

        perception_model = load_musichal_model(model_path).perception
    perception = HybridPerceptionModule.from_config(config)
    return EncoderStage(perception, perception_model, node_id=node_id)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class EncoderActor:
    def __init__(self, config: MusicHalConfig, *, model_path: Optional[str] = None,
                 rings: Optional[dict[str, str]] = None, local_node_id: Optional[str] = None,
                 torch_threads: int = 1) -> None:
        set_torch_threads(torch_threads)
        self.config = config
        self.node_id = current_node_id()
        t0 = time.monotonic()
        self.stage = build_encoder_stage(config, model_path, node_id=self.node_id)
        self._warm_up()
        self.guarded = self._make_guard(config, model_path)
        self.load_seconds = time.monotonic() - t0
        self.latency = LatencyRecorder()
        self.counters = {"encoded": 0, "dropped_backlog": 0, "window_overruns": 0, "remote_calls": 0}
        self.error: Optional[str] = None
        self.warning: Optional[str] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.local = bool(rings) and local_node_id == self.node_id
        self._thread: Optional[threading.Thread] = None
        if self.local:
            self.audio = AudioRing.attach(rings["audio"])
            self.events = MessageRing.attach(rings["events"])
            self.percepts = MessageRing.attach(rings["percepts"])
            self.reader = self.events.reader()
            self._thread = threading.Thread(target=self._loop, name="musichal-encoder", daemon=True)
            self._thread.start()

    def _warm_up(self) -> None:
        """Run the feature code once on a throwaway window (first calls pay imports and caches), not on a live event."""
        from services.encoder.perception import analyze_windows

        sr = self.config.audio.sample_rate_hz
        n = int(round(self.config.segmenter.window_ms * 1e-3 * sr))
        noise = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
        analyze_windows([noise], None, sample_rate_hz=sr, perception=self.stage.perception)

    def _make_guard(self, config: MusicHalConfig, model_path: Optional[str]):
        """The too-slow guard: a traditional-view stage to switch to when the primary (wav2vec) cannot keep up.

        Built when the primary computes wav2vec (and the model has a traditional view), or when the test-only
        ``control.test_encoder_delay_ms`` slows the primary down; otherwise the guard is off.
        """
        from services.control.guard import GuardedEncoder, OverloadGuard

        control = config.control
        wants = "wav2vec" in self.stage.perception.views or control.test_encoder_delay_ms > 0
        if not control.slow_guard or not wants:
            return None
        fallback = None
        try:
            traditional = replace(config, features=replace(config.features, kind="traditional", hybrid=False))
            fallback = build_encoder_stage(traditional, model_path, node_id=self.node_id)
        except Exception:  # the model has no traditional view: warn only
            fallback = None
        guard = OverloadGuard(window_events=control.slow_window_events, recover_events=control.slow_recover_events)
        return GuardedEncoder(self.stage, fallback, guard, deadline_s=config.cluster.encoder_deadline_ms / 1000.0,
                              delay_s=control.test_encoder_delay_ms / 1000.0, warn=self._warn)

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
                    self.percepts.send_message(self._encode(event, window))
        except BaseException as error:
            self.error = f"encoder loop failed: {type(error).__name__}: {error}"

    def _encode(self, event: Event, window: np.ndarray) -> Percept:
        t0 = time.monotonic()
        if event.t_detected:
            self.latency.add("detected_to_encoder", t0 - event.t_detected)  # segmenter + events ring (+ Ray if remote)
        if event.t_sent:
            self.latency.add("events_ring", t0 - event.t_sent)  # the hop alone (+ Ray if remote)
        with self._lock:
            percept = (self.guarded or self.stage).process((event, window))
        t1 = time.monotonic()
        self.latency.add("encode", t1 - t0)
        self.counters["encoded"] += 1
        stamps = dict(percept.stamps or {})
        stamps.update({"t_detected": event.t_detected, "t_encoded": t1})
        return replace(percept, node_id=self.node_id, stamps=stamps)

    # ------------------------------------------------------------------ remote data plane / control
    def encode(self, event: Event, window: np.ndarray) -> Percept:
        """Encode one window sent by value (the remote-encoder hop)."""
        self.counters["remote_calls"] += 1
        return self._encode(event, np.asarray(window, dtype=np.float32))

    def ready(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "local": self.local, "load_seconds": round(self.load_seconds, 3)}

    def stats(self) -> dict[str, Any]:
        counters = dict(self.counters)
        counters.update({f"stage_{k}": v for k, v in self.stage.counters.items()})
        if self.local:
            counters["message_overruns"] = self.reader.overruns
        guard = None
        if self.guarded is not None:
            guard = {"degraded": self.guarded.guard.degraded, "using_fallback": self.guarded.using_fallback,
                     **self.guarded.guard.counters, **{f"encoded_{k}": v for k, v in self.guarded.counters.items()}}
        return {"stage": "encoder", "node_id": self.node_id, "local": self.local, "counters": counters,
                "latency_ms": self.latency.summary(), "error": self.error, "degraded": self.stage.degraded,
                "slow_guard": guard, "warning": self.warning}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.local:
            self.audio.close()
            self.events.close()
            self.percepts.close()
