"""The oracle actor: events + percepts in, notes out; it also supervises the encoder hop.

It reads the events ring itself, so it knows every event that should come back as a Percept and gives each a
deadline (``cluster.encoder_deadline_ms``). Percepts arrive through the percepts ring (local encoder) or as Ray
object refs (remote encoder, window sent by value, bounded in flight). An event whose Percept misses its
deadline is answered anyway — from a local traditional analysis of the ring (when the model has, or needs
only, the traditional view) or by autonomous continuation from the oracle — and the encoder is reported lost
until a Percept arrives in time again. A lost encoder is therefore noticed within one event, not after Ray's
node health checks.

The remote hop's flow control is :class:`services.encoder.remote.RemoteEncoderLink` (pure): unfinished calls
bounded (expired calls are cancelled and still count until Ray ends them), a deadline adapted to the measured
round trips, and down/probe/resume — after the encoder dies every event is answered locally at once, a cheap
``ping`` goes out now and then, and the first answer resumes sending. Clocks: everything here is on this (the
head's) node's clock; from the encoder only durations (``stamps["encode_s"]``) are used.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Optional

import ray

from shared.config import MusicHalConfig
from shared.errors import MusicHalError, RingBufferError
from shared.message_ring import MessageRing
from shared.messages import Event, NoteEvent, Percept, message_from_bytes
from shared.ring import AudioRing
from shared.stats import LatencyRecorder
from services.oracle.stage import OracleStage
from services.ray_support import current_node_id

__all__ = ["OracleActor"]


@dataclass
class _Pending:
    event: Event
    deadline: float
    ref: Any = None
    sent_at: float = 0.0


def _is_cancelled(error: BaseException) -> bool:
    return type(error).__name__ in ("TaskCancelledError",)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class OracleActor:
    def __init__(self, config: MusicHalConfig, rings: dict[str, str], *, model_path: Any = None,
                 encoder: Any = None, checkpoint_path: Optional[str] = None, session_log: Optional[str] = None,
                 encoder_rate_hz: Optional[int] = None) -> None:
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
            from services.model_file import load_musichal_model

            resumed = load_musichal_model(checkpoint_path)  # restarted after a crash: resume the live-learned memory
            model_parts, self.perception_model, resume = resumed.oracle_parts, resumed.perception, checkpoint_path
        self._warm_up(config)
        from services.control.gate import FeedbackGate
        from services.control.session import SessionLog, make_stage

        # a logged session must replay identically: its threshold re-estimates run in the decision sequence
        self.stage = make_stage(config, model_parts) if session_log else OracleStage(config, model=model_parts)

        control = config.control
        self.gate = FeedbackGate(pre_ms=control.gate_pre_ms, release_ms=control.gate_release_ms, enabled=control.input_gate)
        self.muted = False
        self.session = SessionLog(session_log, config=config, models=model_paths, resume=resume) if session_log else None
        self.audio = AudioRing.attach(rings["audio"])
        self.events = MessageRing.attach(rings["events"])
        self.percepts = MessageRing.attach(rings["percepts"])
        self.notes = MessageRing.attach(rings["notes"])
        self.events_reader = self.events.reader()
        self.percepts_reader = self.percepts.reader()
        self.encoder = encoder  # a remote encoder's handle; None when the encoder uses the rings
        self.encoder_rate_hz = int(encoder_rate_hz or config.audio.sample_rate_hz)  # windows travel at this rate
        from services.encoder.remote import RemoteEncoderLink

        cluster = config.cluster
        self.link = RemoteEncoderLink(max_in_flight=cluster.max_events_in_flight,
                                      floor_s=cluster.encoder_deadline_floor_ms / 1000.0,
                                      ceiling_s=cluster.encoder_deadline_ms / 1000.0, miss_limit=cluster.encoder_miss_limit,
                                      probe_interval_s=cluster.encoder_probe_ms / 1000.0)
        self._calls: dict[Any, int] = {}  # in-flight encode ref -> event id (expired, cancelled ones included)
        self._probe: Any = None
        self._probe_sent_at = 0.0
        self.payload = {"windows_sent": 0, "bytes_sent": 0}
        from collections import deque

        # (answered at, event detected at, how) for the last answers made without the encoder; this node's clock
        self.recent_fallbacks: deque[tuple[float, float, str]] = deque(maxlen=64)
        self.fallback = self._make_fallback()
        self._warm_up_remote_path(config)
        self.pending: "OrderedDict[int, _Pending]" = OrderedDict()
        self.latency = LatencyRecorder()
        self.counters = {"events": 0, "percepts": 0, "late_percepts": 0, "encoder_misses": 0, "fallback_local": 0,
                         "fallback_autonomous": 0, "dropped_in_flight": 0, "notes": 0, "checkpoints": 0,
                         "encoder_lost_periods": 0, "notes_while_lost": 0, "gated": 0, "controls": 0,
                         "answered_while_down": 0, "encoder_deaths": 0, "cancelled": 0}
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

        scratch = OracleStage(config)
        rng = np.random.default_rng(0)
        for i in range(8):
            descriptors = EventDescriptors(onset_s=i * 0.5, duration_s=0.5, rms=0.1, velocity=64, f0_hz=220.0 * (1 + i % 3),
                                           f0_confidence=0.9, chroma_peaks=(i % 12,))
            scratch.process(Percept(event_id=i, token=i % 3, features=rng.standard_normal(22).astype(np.float32),
                                    descriptors=descriptors), now_s=float(i))

    def _warm_up_remote_path(self, config: MusicHalConfig) -> None:
        """Run the fallback's feature code (and the resampler) once on noise: their first call costs ~0.1-0.5 s
        (imports, caches), which would otherwise land on the first event answered after the encoder is lost."""
        import numpy as np

        sr = config.audio.sample_rate_hz
        noise = np.random.default_rng(0).standard_normal(int(round(config.segmenter.window_ms * 1e-3 * sr)))
        noise = (noise * 0.1).astype(np.float32)
        if self.fallback is not None:
            from services.encoder.perception import analyze_windows

            analyze_windows([noise], None, sample_rate_hz=sr, perception=self.fallback.perception)
        if self.encoder is not None and self.encoder_rate_hz != sr:
            import soxr

            soxr.resample(noise, sr, self.encoder_rate_hz, quality="HQ")

    def _make_fallback(self):
        """A local traditional analyser, when its tokens mean something to the model (or no model is loaded)."""
        from dataclasses import replace as dc_replace

        from services.encoder.perception import HybridPerceptionModule
        from services.encoder.stage import EncoderStage

        model = self.perception_model
        if model is not None and "traditional" not in model.views:
            return None
        config = self.config
        if model is None and config.features.kind == "wav2vec":
            return None  # a memory learned live from wav2vec vectors cannot use traditional ones
        traditional = dc_replace(config, features=dc_replace(config.features, kind="traditional", hybrid=False))
        memory = model.quantizers[model.primary_view].dimension if model is not None else None
        try:  # refused (DimensionMismatchError) when the memory holds another view's vectors
            return EncoderStage(HybridPerceptionModule.from_config(traditional), model, node_id=self.node_id,
                                memory_dimension=memory)
        except MusicHalError:
            return None

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        deadline_s = self.config.cluster.encoder_deadline_ms / 1000.0
        while not self._stop.is_set():
            try:
                self._take_events(deadline_s)
                self._receive_percepts()
                self._expire()
                self._maybe_checkpoint()
            except BaseException as error:  # keep playing; report
                self.error = f"oracle loop: {type(error).__name__}: {error}"
                self._stop.wait(0.05)

    def _take_events(self, deadline_s: float) -> None:
        for payload in self.events_reader.drain():
            event = message_from_bytes(payload)
            self.counters["events"] += 1
            if self.session is not None:
                self.session.write("event", event_id=event.event_id, onset_sample=event.onset_sample,
                                   t_detected=event.t_detected)
            now = time.monotonic()
            pending = _Pending(event, now + (self.link.deadline_s() if self.encoder is not None else deadline_s))
            self.pending[event.event_id] = pending
            if self.encoder is not None:
                self._send_remote(pending, now)

    def _send_remote(self, pending: _Pending, now: float) -> None:
        """Send one window to the remote encoder, or answer at once when it is down or the in-flight cap is full."""
        event = pending.event
        if not self.link.up:
            self.counters["answered_while_down"] += 1
            self._answer_without_encoder(self.pending.pop(event.event_id))
            return
        if not self.link.can_send():
            self.counters["dropped_in_flight"] += 1  # unfinished calls at the cap: answered locally now
            self._answer_without_encoder(self.pending.pop(event.event_id))
            return
        try:
            window = self.audio.read(event.window_start, event.window_end)
        except RingBufferError:
            return  # answered by the fallback at its deadline
        rate = None
        if self.encoder_rate_hz != event.sample_rate_hz:  # wav2vec only: send 16 kHz, not 48 kHz
            import soxr

            window = soxr.resample(window, event.sample_rate_hz, self.encoder_rate_hz, quality="HQ").astype("float32")
            rate = self.encoder_rate_hz
        lag_s = max(0.0, now - event.t_detected) if event.t_detected else 0.0  # both on this node's clock
        pending.ref = self.encoder.encode.remote(event, window, lag_s=lag_s, window_rate_hz=rate)
        pending.sent_at = time.monotonic()
        self.link.sent(pending.ref, pending.sent_at)
        self._calls[pending.ref] = event.event_id
        self.payload["windows_sent"] += 1
        self.payload["bytes_sent"] += int(window.nbytes)

    def _wait_timeout(self) -> float:
        if not self.pending:
            return 0.02
        earliest = min(p.deadline for p in self.pending.values())
        return max(0.0, min(0.02, earliest - time.monotonic()))

    def _receive_percepts(self) -> None:
        timeout = self._wait_timeout()
        if self.encoder is None:
            payload = self.percepts_reader.receive(timeout_s=timeout)
            while payload is not None:
                self._on_percept(message_from_bytes(payload))
                payload = self.percepts_reader.receive(timeout_s=0.0)
            return
        self._maybe_probe()
        refs = list(self._calls) + ([self._probe] if self._probe is not None else [])
        if not refs:
            self.events_reader.wait(timeout_s=timeout)  # until the next event (or a pending one's deadline)
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref is self._probe or ref == self._probe:
                self._probe_done(ref)
            else:
                self._encode_done(ref)

    def _encode_done(self, ref: Any) -> None:
        event_id = self._calls.pop(ref, None)
        try:
            percept = ray.get(ref)
        except Exception as error:
            if _is_cancelled(error):
                self.counters["cancelled"] += 1
                self.link.failed(ref, encoder_dead=False)
                return
            was_up = self.link.up  # the encoder died with this call in flight: answer everything it held, now
            self.link.failed(ref, encoder_dead=True)
            if was_up and not self.link.up:
                self.counters["encoder_deaths"] += 1
                self._encoder_down()
            pending = self.pending.pop(event_id, None) if event_id is not None else None
            if pending is not None:
                self._answer_without_encoder(pending)
            return
        in_time = event_id in self.pending
        encode_s = (percept.stamps or {}).get("encode_s")
        rtt = self.link.finished(ref, encode_s=encode_s, in_time=in_time)
        if rtt is not None:
            self.latency.add("remote_round_trip", rtt)  # send -> result, this node's clock
            if encode_s is not None:
                self.latency.add("remote_encode", encode_s)  # measured on the encoder's node
                self.latency.add("remote_transport", max(0.0, rtt - encode_s))
        if in_time:
            self._on_percept(percept)
        else:
            self.counters["late_percepts"] += 1
            self._encoder_back(percept)

    def _encoder_down(self) -> None:
        """The encoder died: every event still waiting on it is answered locally now (its calls are cancelled)."""
        if not self.encoder_lost:
            self.encoder_lost = True
            self.counters["encoder_lost_periods"] += 1
        for event_id in [k for k, p in self.pending.items() if p.ref is not None]:
            pending = self.pending.pop(event_id)
            self._cancel(pending.ref)
            self._answer_without_encoder(pending)

    def _cancel(self, ref: Any) -> None:
        try:
            ray.cancel(ref)  # it stays in flight (counted) until Ray reports it over
        except Exception:
            pass

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if self._probe is not None:
            limit = max(4 * self.link.probe_interval_s, 2 * self.link.ceiling_s)
            if now - self._probe_sent_at > limit:  # no answer (node unreachable): give up on this probe
                self._cancel(self._probe)
                self._probe = None
                self.link.probe_failed()
            return
        if self.link.should_probe(now):
            self._probe = self.encoder.ping.remote()
            self._probe_sent_at = now
            self.link.probe_sent(now)

    def _probe_done(self, ref: Any) -> None:
        self._probe = None
        try:
            node = ray.get(ref)
        except Exception:
            self.link.probe_failed()
            return
        self.link.probe_answered()
        self.last_encoder_node = node
        self.encoder_lost = False

    def _on_percept(self, percept: Percept) -> None:
        if percept.event_id not in self.pending:
            # the encoder can answer before this loop has read the event itself: read the events ring first
            self._take_events(self.config.cluster.encoder_deadline_ms / 1000.0)
        pending = self.pending.pop(percept.event_id, None)
        if pending is None:
            self.counters["late_percepts"] += 1
            self._encoder_back(percept)
            return
        self.counters["percepts"] += 1
        self._encoder_back(percept)
        self._answer(pending.event, percept)

    def _encoder_back(self, percept: Percept) -> None:
        self.last_encoder_node = percept.node_id
        if self.encoder_lost:
            self.encoder_lost = False

    def _expire(self) -> None:
        now = time.monotonic()
        for event_id in [k for k, p in self.pending.items() if p.deadline <= now]:
            pending = self.pending.pop(event_id, None)
            if pending is None:  # answered already when the encoder went down
                continue
            self.counters["encoder_misses"] += 1
            if not self.encoder_lost:
                self.encoder_lost = True
                self.counters["encoder_lost_periods"] += 1
            self._answer_without_encoder(pending)
            if self.encoder is not None:
                was_up = self.link.up
                self.link.expired(now)
                if pending.ref is not None:
                    self._cancel(pending.ref)
                if was_up and not self.link.up:  # down: nothing else waits on it (a probe decides when to resume)
                    self._encoder_down()

    def _answer_without_encoder(self, pending: _Pending) -> None:
        """Answer one event with the local traditional analysis, else by autonomous continuation."""
        percept = None
        if self.fallback is not None:
            try:
                window = self.audio.read(pending.event.window_start, pending.event.window_end)
                percept = self.fallback.process((pending.event, window))
                percept = replace(percept, stamps={"t_detected": pending.event.t_detected})
                self.counters["fallback_local"] += 1
            except RingBufferError:
                percept = None
        if percept is not None:
            self._answer(pending.event, percept)
        else:
            self.counters["fallback_autonomous"] += 1
            self._send_notes(self._respond(), pending.event)
        self.recent_fallbacks.append((time.monotonic(), pending.event.t_detected, "local" if percept is not None else "autonomous"))

    def _answer(self, event: Event, percept: Percept) -> None:
        now = time.monotonic()
        if "t_encoded" in (percept.stamps or {}):
            self.latency.add("encoder_to_oracle", now - percept.stamps["t_encoded"], key=event.event_id)
        if event.t_detected:
            self.latency.add("detected_to_oracle", now - event.t_detected)
        onset_wall = event.t_detected - (event.window_end - 1 - event.onset_sample) / event.sample_rate_hz
        with self._lock:
            t0 = time.monotonic()
            gated = bool(event.t_detected) and self.gate.blocks(onset_wall)  # our own notes heard back
            now_s = time.monotonic()
            if gated:
                self.counters["gated"] += 1
                notes = self.stage.respond(now_s)  # neither learned nor imitated; keep playing
            else:
                notes = self.stage.process(percept, now_s=now_s)
            self.latency.add("oracle", time.monotonic() - t0)
            if self.session is not None:
                from services.control.session import percept_to_record

                self.session.write("percept", now_s=now_s, gated=gated, onset_wall=onset_wall, **percept_to_record(percept))
                self._log_notes(notes)
        if event.t_detected:  # every event, whether or not it starts a phrase (the benchmark's per-event series)
            self.latency.add("detected_to_decision", time.monotonic() - event.t_detected, key=event.event_id)
        self._send_notes(notes, event)

    def _respond(self) -> list[NoteEvent]:
        with self._lock:
            now_s = time.monotonic()
            notes = self.stage.respond(now_s)
            if self.session is not None:
                self.session.write("respond", now_s=now_s)
                self._log_notes(notes)
            return notes

    def _log_notes(self, notes: list[NoteEvent]) -> None:
        if notes:
            from services.control.session import note_to_record

            walk = self.stage.improviser
            self.session.write("notes", notes=[note_to_record(n) for n in notes], last_move=walk.last_kind,
                               last_pivot=int(walk.last_pivot), walk=dict(walk.counters))

    def _send_notes(self, notes: list[NoteEvent], event: Optional[Event]) -> None:
        for index, note in enumerate(notes):
            stamps = dict(note.stamps or {})
            if event is not None and event.t_detected:
                stamps["t_detected"] = event.t_detected
                stamps["onset_wall"] = event.t_detected - (event.window_end - 1 - event.onset_sample) / event.sample_rate_hz
                stamps["first_of_response"] = index == 0
                stamps["input_event_id"] = event.event_id
            stamps["t_decided"] = time.monotonic()
            self.notes.send_message(replace(note, stamps=stamps))
            if not self.muted:
                self.gate.note_sent(note.t_on, note.t_off)
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
            self.stage.checkpoint(path, perception=self.perception_model)  # a model file: --model path plays it
        self.counters["checkpoints"] += 1
        return path

    def ready(self) -> str:
        return self.node_id

    def set_mode(self, mode: str) -> None:
        self.control("mode", mode)

    def set_learning(self, enabled: bool) -> None:
        self.control("learning", bool(enabled))

    def control(self, name: str, value: Any) -> dict[str, Any]:
        """Apply one control (mode, continuity, density, learning, gate, mute) in the decision sequence; logged."""
        with self._lock:
            if name == "mode":
                self.stage.set_mode(value)
            elif name in ("continuity", "density"):
                self.stage.set_generation(**{name: float(value)})
            elif name == "learning":
                self.stage.set_learning(bool(value))
            elif name == "gate":
                self.gate.enabled = bool(value)
            elif name == "mute":
                self.muted = bool(value)  # muted notes do not sound, so they open no gate
            elif name == "profile":
                pass  # midi_out's business; logged for the replay
            else:
                from shared.errors import ParameterError

                raise ParameterError(f"oracle has no control {name!r}")
            self.counters["controls"] += 1
            if self.session is not None:
                self.session.write("control", name=name, value=value)
            return self.control_state()

    def control_state(self) -> dict[str, Any]:
        generation = self.stage.config.generation
        return {"mode": self.stage.improviser.mode, "continuity": generation.continuity, "density": generation.density,
                "learning": self.stage.learning, "gate": self.gate.enabled, "muted": self.muted}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stage_counters = dict(self.stage.stats())
            control = self.control_state()
        counters = dict(self.counters)
        counters.update({f"stage_{k}": v for k, v in stage_counters.items()})
        counters["pending"] = len(self.pending)
        counters["message_overruns"] = self.events_reader.overruns + self.percepts_reader.overruns
        counters["gate_blocked"] = self.gate.counters["blocked"]
        remote = None
        if self.encoder is not None:
            sent = self.payload["windows_sent"]
            remote = {**self.link.summary(), **self.payload, "window_rate_hz": self.encoder_rate_hz,
                      "down_since": self.link.down_since, "recent_fallbacks": list(self.recent_fallbacks),
                      "bytes_per_event": round(self.payload["bytes_sent"] / sent, 1) if sent else None}
        return {"stage": "oracle", "node_id": self.node_id, "counters": counters, "latency_ms": self.latency.summary(),
                "encoder_lost": self.encoder_lost, "encoder_node": self.last_encoder_node, "error": self.error,
                "control": control, "remote_encoder": remote}

    def stop(self, *, checkpoint: bool = True) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if checkpoint and self.checkpoint_path:
            self.checkpoint()
        stats = self.stats()
        if self.session is not None:
            self.session.write("stop")
            self.session.close()
        for ring in (self.audio, self.events, self.percepts, self.notes):
            ring.close()
        return stats
