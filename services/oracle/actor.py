"""The oracle actor: events + percepts in, notes out; it also supervises the encoder hop.

It reads the events ring itself, so it knows every event that should come back as a Percept and gives each a
deadline (``cluster.encoder_deadline_ms``). Percepts arrive through the percepts ring (local encoder) or as Ray
object refs (remote encoder, window sent by value, bounded in flight). An event whose Percept misses its
deadline is answered anyway — from a local traditional analysis of the ring (when the model has, or needs
only, the traditional view) or by autonomous continuation from the oracle — and the encoder is reported lost
until a Percept arrives in time again. A lost encoder is therefore noticed within one event, not after Ray's
node health checks.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import Any, Optional

import ray

from shared.config import MusicHalConfig
from shared.errors import MusicHalError, RingBufferError
from shared.message_ring import MessageRing
from shared.messages import Event, NoteEvent, Percept, message_from_bytes
from shared.ring import AudioRing
from shared.stats import LatencyRecorder
from services.oracle.live import LiveOracle, onset_wall
from services.oracle.stage import OracleStage
from services.ray_support import current_node_id

__all__ = ["OracleActor"]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class OracleActor:
    def __init__(self, config: MusicHalConfig, rings: dict[str, str], *, model_path: Any = None,
                 encoder: Any = None, checkpoint_path: Optional[str] = None, session_log: Optional[str] = None) -> None:
        self.config = config
        self.node_id = current_node_id()
        self.model_path = model_path
        self.checkpoint_path = checkpoint_path
        model_parts = None
        self.perception_model = None
        model_paths = [model_path] if isinstance(model_path, str) else list(model_path or [])
        resume = None
        if model_paths:
            from services.control.corpus import load_corpora

            model_parts, self.perception_model = load_corpora(config, model_paths)  # several: one merged memory
        elif checkpoint_path and os.path.exists(checkpoint_path):
            model_parts = resume = checkpoint_path  # restarted after a crash: resume the live-learned memory
        self._warm_up(config)
        from services.control.session import SessionLog, make_stage

        # a logged session must replay identically: its threshold re-estimates run in the decision sequence
        self.stage = make_stage(config, model_parts) if session_log else OracleStage(config, model=model_parts)
        self.session = SessionLog(session_log, config=config, models=model_paths, resume=resume) if session_log else None
        self.live = LiveOracle(config, self.stage, session=self.session)  # every decision; the actor moves messages
        self.audio = AudioRing.attach(rings["audio"])
        self.events = MessageRing.attach(rings["events"])
        self.percepts = MessageRing.attach(rings["percepts"])
        self.notes = MessageRing.attach(rings["notes"])
        self.events_reader = self.events.reader()
        self.percepts_reader = self.percepts.reader()
        self.encoder = encoder  # a remote encoder's handle; None when the encoder uses the rings
        self.fallback = self._make_fallback()
        self.early_analyser = self._make_fallback(descriptors_only=True)
        self._warm_up_early(config)
        self.refs: dict[int, Any] = {}  # event id -> remote encoder call in flight
        self.latency = LatencyRecorder()
        self.counters = {"events": 0, "early_events": 0, "percepts": 0, "late_percepts": 0, "encoder_misses": 0,
                         "fallback_local": 0, "fallback_autonomous": 0, "dropped_in_flight": 0, "notes": 0,
                         "checkpoints": 0, "encoder_lost_periods": 0, "notes_while_lost": 0, "gated": 0, "controls": 0}
        self.encoder_lost = False
        self.last_encoder_node: Optional[str] = None
        self.error: Optional[str] = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._last_checkpoint = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="musichal-oracle", daemon=True)
        self._thread.start()

    @staticmethod
    def _warm_up(config: MusicHalConfig) -> None:
        """Compile the oracle's numba kernels and walk once on throwaway data before the first live event."""
        import numpy as np

        from shared.messages import EventDescriptors

        scratch = LiveOracle(config, OracleStage(config, background=False))
        rng = np.random.default_rng(0)
        for i in range(8):
            descriptors = EventDescriptors(onset_s=i * 0.5, duration_s=0.5, rms=0.1, velocity=64, f0_hz=220.0 * (1 + i % 3),
                                           f0_confidence=0.9, chroma_peaks=(i % 12,))
            scratch.on_percept(Percept(event_id=i, token=i % 3, features=rng.standard_normal(22).astype(np.float32),
                                       descriptors=descriptors), float(i))
            scratch.learn_queued()
            scratch.tick(float(i) + 0.5)

    def _warm_up_early(self, config: MusicHalConfig) -> None:
        """Run the early analyser once on a throwaway window (its first call otherwise delays the first reaction)."""
        import numpy as np

        if self.early_analyser is None:
            return
        sr = config.audio.sample_rate_hz
        n = max(64, int(config.segmenter.early_ms * sr / 1000) or int(0.06 * sr))
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * np.arange(n) / sr)).astype(np.float32)
        try:
            self.early_analyser.process((Event(event_id=0, onset_sample=0, window_start=0, window_end=n,
                                               sample_rate_hz=sr, early=True), tone))
        except MusicHalError:
            pass

    def _make_fallback(self, *, descriptors_only: bool = False):
        """A local traditional analyser, when its tokens mean something to the model (or no model is loaded).

        ``descriptors_only``: for early views (pitch and chroma of an onset's first ``segmenter.early_ms``, never
        learned), so any model will do.
        """
        from dataclasses import replace as dc_replace

        from services.encoder.perception import HybridPerceptionModule
        from services.encoder.stage import EncoderStage

        model = self.perception_model
        if model is not None and "traditional" not in model.views:
            if not descriptors_only:
                return None
            model = None
        config = self.config
        traditional = dc_replace(config, features=dc_replace(config.features, kind="traditional", hybrid=False))
        try:
            return EncoderStage(HybridPerceptionModule.from_config(traditional), model, node_id=self.node_id)
        except MusicHalError:
            return None

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._take_events()
                self._receive_percepts()
                self._expire()
                with self._lock:
                    notes = self.live.tick(time.monotonic())
                self._send_notes(notes)
                self._maybe_checkpoint()
            except BaseException as error:  # keep playing; report
                self.error = f"oracle loop: {type(error).__name__}: {error}"
                self._stop.wait(0.05)

    def _take_events(self) -> None:
        for payload in self.events_reader.drain():
            event = message_from_bytes(payload)
            if getattr(event, "early", False):
                self._early_view(event)
                continue
            self.counters["events"] += 1
            with self._lock:
                self.live.on_event(event, time.monotonic())
            if self.encoder is not None:
                if len(self.refs) >= self.config.cluster.max_events_in_flight:
                    self.counters["dropped_in_flight"] += 1  # answered by fallback at its deadline
                else:
                    try:
                        window = self.audio.read(event.window_start, event.window_end)
                        self.refs[event.event_id] = self.encoder.encode.remote(event, window)
                    except RingBufferError:
                        pass

    def _early_view(self, event: Event) -> None:
        """An onset's first ``segmenter.early_ms``: traditional pitch and chroma influence the player at once."""
        self.counters["early_events"] += 1
        if self.early_analyser is None:
            return
        try:
            window = self.audio.read(event.window_start, event.window_end)
        except RingBufferError:
            return
        percept = self.early_analyser.process((event, window))
        with self._lock:
            notes = self.live.on_percept(percept, time.monotonic(), event=event, early=True)
        self._send_notes(notes)

    def _wait_timeout(self) -> float:
        with self._lock:
            wait = self.live.seconds_to_next(time.monotonic())
        return max(0.0, min(0.02, wait))  # bounded: events arrive on another ring

    def _receive_percepts(self) -> None:
        timeout = self._wait_timeout()
        if self.encoder is None:
            # wait on the events ring: an onset's early view arrives there and is the reaction's path; full-window
            # percepts (learned, refining) are taken at most one bounded wait later
            if not self.percepts_reader.pending():
                self.events_reader.wait(timeout_s=timeout)
            payload = self.percepts_reader.receive(timeout_s=0.0)
            while payload is not None:
                self._on_percept(message_from_bytes(payload))
                payload = self.percepts_reader.receive(timeout_s=0.0)
            return
        refs = list(self.refs.values())
        if not refs:
            self.events_reader.wait(timeout_s=timeout)  # until the next event (or the next step)
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        for ref in ready:
            event_id = next((k for k, r in self.refs.items() if r == ref), None)
            self.refs.pop(event_id, None)
            try:
                percept = ray.get(ref)
            except Exception:  # the encoder died with this call in flight: its event falls back at the deadline
                continue
            self._on_percept(percept)

    def _on_percept(self, percept: Percept) -> None:
        if not self.live.waiting_for(percept.event_id):
            # the encoder can answer before this loop has read the event itself: read the events ring first
            self._take_events()
        if not self.live.waiting_for(percept.event_id):
            self.counters["late_percepts"] += 1
            self._encoder_back(percept)
            return
        self.counters["percepts"] += 1
        self._encoder_back(percept)
        self._answer(percept)

    def _encoder_back(self, percept: Percept) -> None:
        self.last_encoder_node = percept.node_id
        if self.encoder_lost:
            self.encoder_lost = False

    def _expire(self) -> None:
        with self._lock:
            expired = self.live.expired(time.monotonic())
        for event in expired:
            self.refs.pop(event.event_id, None)
            self.counters["encoder_misses"] += 1
            if not self.encoder_lost:
                self.encoder_lost = True
                self.counters["encoder_lost_periods"] += 1
            percept = None
            if self.fallback is not None:
                try:
                    window = self.audio.read(event.window_start, event.window_end)
                    percept = self.fallback.process((event, window))
                    percept = replace(percept, stamps={"t_detected": event.t_detected})
                    self.counters["fallback_local"] += 1
                except RingBufferError:
                    percept = None
            if percept is not None:
                with self._lock:
                    self.live.pending[event.event_id] = (event, float("inf"))
                self._answer(percept, event=event)
            else:
                self.counters["fallback_autonomous"] += 1  # the player keeps playing on its own clock

    def _answer(self, percept: Percept, *, event: Optional[Event] = None) -> None:
        now = time.monotonic()
        if "t_encoded" in (percept.stamps or {}):
            self.latency.add("encoder_to_oracle", now - percept.stamps["t_encoded"])
        with self._lock:
            if event is None:
                event = self.live.pending[percept.event_id][0]
            if event.t_detected:
                self.latency.add("detected_to_oracle", now - event.t_detected)
            gated_before = self.live.counters["gated"]
            t0 = time.monotonic()
            notes = self.live.on_percept(percept, time.monotonic(), event=event)
            self.latency.add("oracle", time.monotonic() - t0)
            self.counters["gated"] += self.live.counters["gated"] - gated_before
        if event.t_detected:  # every event (the benchmark's per-event series)
            self.latency.add("detected_to_decision", time.monotonic() - event.t_detected)
        self._send_notes(notes)
        with self._lock:
            self.live.learn_queued()  # after the notes left: learning never delays a reaction

    def _send_notes(self, notes: list[NoteEvent]) -> None:
        for note in notes:
            stamps = dict(note.stamps or {})
            stamps["t_decided"] = time.monotonic()
            self.notes.send_message(replace(note, stamps=stamps))
            self.counters["notes"] += 1
            if self.encoder_lost:
                self.counters["notes_while_lost"] += 1

    def _maybe_checkpoint(self) -> None:
        if not self.checkpoint_path or not self.stage.learning:
            return
        now = time.monotonic()
        if now - self._last_checkpoint >= self.config.oracle.checkpoint_seconds:
            self._last_checkpoint = now
            self.checkpoint()

    # ------------------------------------------------------------------ control
    def checkpoint(self, path: Optional[str] = None) -> Optional[str]:
        path = path or self.checkpoint_path
        if not path:
            return None
        with self._lock:
            self.stage.checkpoint(path)
        self.counters["checkpoints"] += 1
        return path

    def ready(self) -> str:
        return self.node_id

    def set_mode(self, mode: str) -> None:
        self.control("mode", mode)

    def set_learning(self, enabled: bool) -> None:
        self.control("learning", bool(enabled))

    def control(self, name: str, value: Any) -> dict[str, Any]:
        """Apply one control in the decision sequence (the decision object's table); logged."""
        with self._lock:
            state = self.live.apply_control(name, value, time.monotonic())
        self.counters["controls"] += 1
        return state

    def control_state(self) -> dict[str, Any]:
        with self._lock:
            return self.live.control_state()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stage_counters = dict(self.stage.stats())
            stage_counters.update(self.live.stats())
            control = self.live.control_state()
        counters = dict(self.counters)
        counters.update({f"stage_{k}": v for k, v in stage_counters.items()})
        counters["pending"] = len(self.live.pending)
        counters["message_overruns"] = self.events_reader.overruns + self.percepts_reader.overruns
        counters["gate_blocked"] = self.live.gate.counters["blocked"]
        return {"stage": "oracle", "node_id": self.node_id, "counters": counters, "latency_ms": self.latency.summary(),
                "encoder_lost": self.encoder_lost, "encoder_node": self.last_encoder_node, "error": self.error,
                "control": control}

    def stop(self, *, checkpoint: bool = True) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if checkpoint and self.checkpoint_path:
            self.checkpoint()
        stats = self.stats()
        if self.session is not None:
            # the decided notes sound to their ends (LiveStack.stop drains midi_out after stopping the oracle)
            self.session.write("stop", t_end=max(time.monotonic(), self.live.last_t_off))
            self.session.close()
        for ring in (self.audio, self.events, self.percepts, self.notes):
            ring.close()
        return stats
