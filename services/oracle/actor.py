"""The oracle actor: events + percepts in, notes out; it also supervises the encoder hop.

Every decision is :class:`services.oracle.player.live.LiveOracle`'s (pure): the events waiting for their percepts and
their deadlines, the gate, mute, the controls, the session log and the clocked player. This actor only moves
messages between the rings (or the remote encoder) and that object, and waits on the events ring with the
player's next step as the timeout.

It reads the events ring itself, so it knows every event that should come back as a Percept and hands each to
the decision object with a deadline (``cluster.encoder_deadline_ms``; for a remote encoder the link's adaptive
one). An onset's *early view* (``Event.early``) is analysed here at once (traditional pitch and chroma) and only
influences the player; it is never sent to the encoder. Percepts arrive through the percepts ring (local
encoder) or as Ray object refs (remote encoder, window sent by value, bounded in flight). An event whose Percept
misses its deadline is answered anyway — from a local traditional analysis of the ring (when the model has, or
needs only, the traditional view) or by the player continuing on its own clock — and the encoder is reported
lost until a Percept arrives in time again. A lost encoder is therefore noticed within one event, not after
Ray's node health checks.

The remote hop's flow control is :class:`services.encoder.remote.RemoteEncoderLink` (pure): unfinished calls
bounded (expired calls are cancelled and still count until Ray ends them), a deadline adapted to the measured
round trips, and down/probe/resume — after the encoder dies every event is answered locally at once, a cheap
``ping`` goes out now and then, and the first answer resumes sending. Clocks: everything here is on this (the
head's) node's clock; from the encoder only durations (``stamps["encode_s"]``) are used.

MIDI input (``--input-midi``: a ``midi_in`` ring the launcher's MIDI port writes, each record the arrival time and
the message) needs no encoder: :class:`services.encoder.midi_input.LiveNoteInput` makes an early percept at the
note-on that opens an event (the reaction, at once) and the full one when the chord window has passed (learned),
both handed to the decision object as an audio onset's are. The echo gate is off for them unless
``control.midi_input_gate``. While MIDI input is on, the loop waits on the MIDI ring, at most ``MIDI_WAIT_S`` at a
time, and reads the audio events ring between waits (the audio early views may wait that long more).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

import ray

from services.ray_support import current_node_id
from shared.config import MusicHalConfig
from shared.errors import MusicHalError, ParameterError, RingBufferError
from shared.message_ring import MessageRing
from shared.messages import Event, NoteEvent, Percept, message_from_bytes
from shared.ring import AudioRing
from shared.stats import LatencyRecorder

__all__ = ["OracleActor"]

# The memory, the player and the early view (numba, scipy: ~0.25 s of imports) are imported inside the methods that
# use them, in the actor's own process: the driver imports this module only to create the actor, while Ray starts.


#: with MIDI input, the longest wait on the MIDI ring before the audio events ring is read again
MIDI_WAIT_S = 0.005


def _is_cancelled(error: BaseException) -> bool:
    return type(error).__name__ in ("TaskCancelledError",)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class OracleActor:
    def __init__(
        self,
        config: MusicHalConfig,
        rings: dict[str, str],
        *,
        model_path: Any = None,
        encoder: Any = None,
        checkpoint_path: str | None = None,
        session_log: str | None = None,
        encoder_rate_hz: int | None = None,
    ) -> None:
        from services.oracle.memory.corpus import load_corpora
        from services.oracle.memory.store import OracleMemory
        from services.oracle.player.live import LiveOracle
        from services.oracle.player.session import SessionLog, make_stage
        from services.oracle.warm import warm_up

        self.config = config
        self.node_id = current_node_id()
        self.model_path = model_path
        self.checkpoint_path = checkpoint_path
        model_parts = None
        self.perception_model = None
        model_paths = [model_path] if isinstance(model_path, str) else list(model_path or [])
        resume = None
        if model_paths:
            model_parts, self.perception_model = load_corpora(config, model_paths)  # several: one merged memory
        elif checkpoint_path and os.path.exists(checkpoint_path):
            from services.model_file import load_musichal_model

            resumed = load_musichal_model(checkpoint_path)  # restarted after a crash: resume the live-learned memory
            model_parts, self.perception_model, resume = resumed.oracle_parts, resumed.perception, checkpoint_path
        warm_up(config)  # the numba kernels (compiled, or loaded from numba's cache) and one walk
        # a logged session must replay identically: its threshold re-estimates run in the decision sequence
        self.stage = make_stage(config, model_parts) if session_log else OracleMemory(config, model=model_parts)
        self.session = (
            SessionLog(
                session_log,
                config=config,
                models=model_paths,
                resume=resume,
                restarted=ray.get_runtime_context().was_current_actor_reconstructed,  # keep the log so far
            )
            if session_log
            else None
        )
        # every decision; the actor moves messages (steps after a percept are decided at the clock's time)
        self.live = LiveOracle(config, self.stage, session=self.session, clock=time.monotonic)
        self.audio = AudioRing.attach(rings["audio"])
        self.events = MessageRing.attach(rings["events"])
        self.percepts = MessageRing.attach(rings["percepts"])
        self.notes = MessageRing.attach(rings["notes"])
        self.events_reader = self.events.reader()
        self.percepts_reader = self.percepts.reader()
        self.encoder = encoder  # a remote encoder's handle; None when the encoder uses the rings
        self.encoder_rate_hz = int(encoder_rate_hz or config.audio.sample_rate_hz)  # windows travel at this rate
        from services.encoder.remote import PayloadCount, RemoteEncoderLink

        cluster = config.cluster
        self.link = RemoteEncoderLink(
            max_in_flight=cluster.max_events_in_flight,
            floor_s=cluster.encoder_deadline_floor_ms / 1000.0,
            ceiling_s=cluster.encoder_deadline_ms / 1000.0,
            miss_limit=cluster.encoder_miss_limit,
            probe_interval_s=cluster.encoder_probe_ms / 1000.0,
        )
        self._calls: dict[Any, int] = {}  # in-flight encode ref -> event id (expired, cancelled ones included)
        self._refs: dict[int, Any] = {}  # event id -> its encode call, while the event waits for it
        self._probe: Any = None
        self._probe_sent_at = 0.0
        self.payload = PayloadCount()
        # (answered at, event detected at, how) for the last answers made without the encoder; this node's clock
        self.recent_fallbacks: deque[tuple[float, float, str]] = deque(maxlen=64)
        self.verdicts: deque[tuple[int, bool]] = deque(maxlen=64)  # (event id, gated) of the last answers: a console
        self.fallback = self._make_fallback()
        self._warm_up_remote_path(config)
        self._warm_up_early(config)
        from services.encoder.fallback import early_view

        self._early_view_of = early_view  # bound once: the reaction path imports nothing per event
        self.midi_ring = self.midi_reader = self.midi_input = None
        if rings.get("midi_in"):  # --input-midi: notes arrive analysed; tokens from the symbolic perception
            from services.encoder.midi_input import LiveNoteInput, symbolic_stage

            self.midi_ring = MessageRing.attach(rings["midi_in"])
            self.midi_reader = self.midi_ring.reader()
            self.midi_input = LiveNoteInput(
                symbolic_stage(config, self.perception_model, node_id=self.node_id),
                chord_window_s=config.features.chord_window_ms / 1000.0,
                include_drums=config.features.midi_drums,
                sample_rate_hz=config.audio.sample_rate_hz,
                origin_s=time.monotonic(),
                node_id=self.node_id,
            )
        self.latency = LatencyRecorder()
        self.counters = {
            "events": 0,
            "early_events": 0,
            "percepts": 0,
            "late_percepts": 0,
            "encoder_misses": 0,
            "fallback_local": 0,
            "fallback_autonomous": 0,
            "dropped_in_flight": 0,
            "notes": 0,
            "checkpoints": 0,
            "encoder_lost_periods": 0,
            "notes_while_lost": 0,
            "gated": 0,
            "controls": 0,
            "answered_while_down": 0,
            "encoder_deaths": 0,
            "cancelled": 0,
        }
        self.encoder_lost = False
        self.last_encoder_node: str | None = None
        self.error: str | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._last_checkpoint = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="musichal-oracle", daemon=True)
        self._thread.start()

    def _warm_up_remote_path(self, config: MusicHalConfig) -> None:
        """Run the fallback's feature code (and the resampler) once on noise: their first call costs ~0.1-0.5 s
        (imports, caches), which would otherwise land on the first event answered after the encoder is lost."""
        import numpy as np

        sr = config.audio.sample_rate_hz
        noise = np.random.default_rng(0).standard_normal(int(round(config.segmenter.window_ms * 1e-3 * sr)))
        noise = (noise * 0.1).astype(np.float32)
        if self.fallback is not None:
            from services.encoder.analysis import analyze_windows

            analyze_windows([noise], None, sample_rate_hz=sr, perception=self.fallback.perception)
        if self.encoder is not None and self.encoder_rate_hz != sr:
            import soxr

            soxr.resample(noise, sr, self.encoder_rate_hz, quality="HQ")

    def _warm_up_early(self, config: MusicHalConfig) -> None:
        """Run the early view's analysis once on a throwaway window (its first call otherwise delays the first
        reaction)."""
        import numpy as np

        from services.encoder.fallback import early_view

        sr = config.audio.sample_rate_hz
        n = max(64, int(config.segmenter.early_ms * sr / 1000) or int(0.06 * sr))
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * np.arange(n) / sr)).astype(np.float32)
        try:
            early_view(
                Event(event_id=0, onset_sample=0, window_start=0, window_end=n, sample_rate_hz=sr, early=True), tone
            )
        except MusicHalError:
            pass

    def _make_fallback(self):
        """A local traditional analyser, when its tokens mean something to the model (or no model is loaded)."""
        from services.encoder.fallback import traditional_stage

        model = self.perception_model
        memory = model.quantizers[model.primary_view].dimension if model is not None else None
        # no transcription here: this analyser answers in the oracle's own loop, on the reaction path
        config = replace(self.config, features=replace(self.config.features, slice_notes=False))
        try:  # refused (DimensionMismatchError) when the memory holds another view's vectors
            return traditional_stage(config, model, memory_dimension=memory, node_id=self.node_id)
        except MusicHalError:
            return None

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._take_events()
                self._take_midi()
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
                self._early_view(event)  # never sent to the encoder
                continue
            self.counters["events"] += 1
            now = time.monotonic()
            deadline_s = self.link.deadline_s() if self.encoder is not None else None  # None: the configured one
            with self._lock:
                self.live.on_event(event, now, deadline_s=deadline_s)
            if self.encoder is not None:
                self._send_remote(event, now)

    def midi_origin(self, listening_at: float) -> None:
        """MIDI events' onsets count from ``listening_at`` (monotonic), as the audio events' sample clock does."""
        if self.midi_input is not None:
            with self._lock:
                self.midi_input.origin_s = float(listening_at)

    def _take_midi(self) -> None:
        """Every received MIDI message, then the event whose chord window has passed: early percepts influence at
        once, full ones are answered (and learned) as an audio event's percept is."""
        if self.midi_input is None:
            return
        from services.encoder.midi_input import read_midi_record  # imported in __init__ already

        items = []
        for payload in self.midi_reader.drain():
            arrival, message = read_midi_record(payload)
            with self._lock:
                items += self.midi_input.on_message(arrival, message)
        with self._lock:
            items += self.midi_input.due(time.monotonic())
        gate = None if self.config.control.midi_input_gate else False  # None: the echo gate decides
        for event, percept, early in items:
            now = time.monotonic()
            with self._lock:
                if early:
                    notes = self.live.on_percept(percept, now, event=event, early=True, gated=gate)
                else:
                    self.live.on_event(event, now)
                    notes = self.live.on_percept(percept, now, event=event, gated=gate)
            self.latency.add("midi_onset_to_decision" if early else "midi_window_to_decision", now - event.t_detected)
            self._send_notes(notes)
            if not early:
                with self._lock:
                    self.live.learn_queued()

    def _early_view(self, event: Event) -> None:
        """An onset's first ``segmenter.early_ms``: traditional pitch and chroma influence the player at once."""
        self.counters["early_events"] += 1
        t0 = time.monotonic()
        try:
            window = self.audio.read(event.window_start, event.window_end)
            percept = self._early_view_of(event, window, node_id=self.node_id)
        except (RingBufferError, ParameterError):
            return
        t1 = time.monotonic()
        with self._lock:
            notes = self.live.on_percept(percept, t1, event=event, early=True)
        self._send_notes(notes)
        # the reaction path, stage by stage (benchmarks/musical.py): ring hop, analysis, decision and send
        if event.t_detected:
            self.latency.add("early_detected_to_oracle", t0 - event.t_detected)
        self.latency.add("early_analysis", t1 - t0)
        self.latency.add("early_decision", time.monotonic() - t1)

    def _send_remote(self, event: Event, now: float) -> None:
        """Send one window to the remote encoder, or answer at once when it is down or the in-flight cap is full."""
        if not self.link.up:
            self.counters["answered_while_down"] += 1
            self._answer_without_encoder(event)
            return
        if not self.link.can_send():
            self.counters["dropped_in_flight"] += 1  # unfinished calls at the cap: answered locally now
            self._answer_without_encoder(event)
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
        lag_s = event.age_s(now)  # both on this node's clock
        ref = self.encoder.encode.remote(event, window, lag_s=lag_s, window_rate_hz=rate)
        with self._lock:  # the link's state and the payload change under the lock stats() reads them under
            self.link.sent(ref, time.monotonic())
            self.payload.add(window.nbytes)
        self._calls[ref] = event.event_id
        self._refs[event.event_id] = ref

    def _wait_timeout(self) -> float:
        with self._lock:
            now = time.monotonic()
            wait = self.live.seconds_to_next(now)  # the next step or a pending deadline
            if self.midi_input is not None:  # the open MIDI event's chord window, and the audio events between
                due = self.midi_input.seconds_to_due(now)
                wait = min(wait, MIDI_WAIT_S, due if due is not None else MIDI_WAIT_S)
        return max(0.0, min(0.02, wait))  # bounded: events arrive on another ring

    def _receive_percepts(self) -> None:
        timeout = self._wait_timeout()
        if self.encoder is None:
            # wait on the events ring: an onset's early view arrives there and is the reaction's path; full-window
            # percepts (learned, refining) are taken at most one bounded wait later
            if self.midi_reader is not None:
                if not (self.percepts_reader.pending() or self.events_reader.pending()):
                    self.midi_reader.wait(timeout_s=timeout)  # bounded by MIDI_WAIT_S (_wait_timeout)
            elif not self.percepts_reader.pending():
                self.events_reader.wait(timeout_s=timeout)
            payload = self.percepts_reader.receive(timeout_s=0.0)
            while payload is not None:
                self._on_percept(message_from_bytes(payload))
                payload = self.percepts_reader.receive(timeout_s=0.0)
            return
        self._maybe_probe()
        refs = list(self._calls) + ([self._probe] if self._probe is not None else [])
        if not refs:
            self.events_reader.wait(timeout_s=timeout)  # until the next event (or the next step / deadline)
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
        if event_id is not None and self._refs.get(event_id) == ref:
            del self._refs[event_id]
        try:
            percept = ray.get(ref)
        except Exception as error:
            with self._lock:
                if _is_cancelled(error):
                    self.counters["cancelled"] += 1
                    self.link.failed(ref, encoder_dead=False)
                    return
                was_up = self.link.up  # the encoder died with this call in flight: answer everything it held, now
                self.link.failed(ref, encoder_dead=True)
                died = was_up and not self.link.up
                if died:
                    self.counters["encoder_deaths"] += 1
            if died:
                self._encoder_down()
            if event_id is not None:
                event = self._take_waiting(event_id)
                if event is not None:
                    self._answer_without_encoder(event)
            return
        in_time = event_id is not None and self.live.waiting_for(event_id)
        encode_s = (percept.stamps or {}).get("encode_s")
        with self._lock:
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

    def _take_waiting(self, event_id: int) -> Event | None:
        """Take an event off the decision object's waiting list (it is answered here, not by its percept)."""
        self._refs.pop(event_id, None)
        with self._lock:
            return self.live.take(event_id)

    def _encoder_down(self) -> None:
        """The encoder died: every event still waiting on it is answered locally now (its calls are cancelled)."""
        if not self.encoder_lost:
            self.encoder_lost = True
            self.counters["encoder_lost_periods"] += 1
        for event_id, ref in list(self._refs.items()):
            self._cancel(ref)
            event = self._take_waiting(event_id)
            if event is not None:
                self._answer_without_encoder(event)

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
                with self._lock:
                    self.link.probe_failed()
            return
        if self.link.should_probe(now):
            self._probe = self.encoder.ping.remote()
            self._probe_sent_at = now
            with self._lock:
                self.link.probe_sent(now)

    def _probe_done(self, ref: Any) -> None:
        self._probe = None
        try:
            node = ray.get(ref)
        except Exception:
            with self._lock:
                self.link.probe_failed()
            return
        with self._lock:
            self.link.probe_answered()
        self.last_encoder_node = node
        self.encoder_lost = False

    def _on_percept(self, percept: Percept) -> None:
        if not self.live.waiting_for(percept.event_id):
            # the encoder can answer before this loop has read the event itself: read the events ring first
            self._take_events()
        if not self.live.waiting_for(percept.event_id):
            self.counters["late_percepts"] += 1
            self._encoder_back(percept)
            return
        self._refs.pop(percept.event_id, None)
        self.counters["percepts"] += 1
        self._encoder_back(percept)
        self._answer(percept)

    def _encoder_back(self, percept: Percept) -> None:
        self.last_encoder_node = percept.node_id
        if self.encoder_lost:
            self.encoder_lost = False

    def _expire(self) -> None:
        now = time.monotonic()
        went_down = False
        # the misses and the link's state change together, under the lock stats() reads them under: a reader never
        # sees the link down with some of the misses that took it down still uncounted
        with self._lock:
            expired = self.live.expired(now)
            if not expired:
                return
            refs = [self._refs.pop(event.event_id, None) for event in expired]
            self.counters["encoder_misses"] += len(expired)
            if not self.encoder_lost:
                self.encoder_lost = True
                self.counters["encoder_lost_periods"] += 1
            if self.encoder is not None:
                was_up = self.link.up
                for _ in expired:
                    self.link.expired(now)
                went_down = was_up and not self.link.up
        for event, ref in zip(expired, refs):
            self._answer_without_encoder(event)
            if ref is not None:
                self._cancel(ref)
        if went_down:  # down: nothing else waits on it (a probe decides when to resume)
            self._encoder_down()

    def _answer_without_encoder(self, event: Event) -> None:
        """Answer one event with the local traditional analysis, else let the player continue on its own clock."""
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
            self._answer(percept, event=event)
        else:
            with self._lock:
                self.live.take(event.event_id)  # nothing will answer it; the player keeps its own clock
            self.counters["fallback_autonomous"] += 1
        self.recent_fallbacks.append(
            (time.monotonic(), event.t_detected, "local" if percept is not None else "autonomous")
        )

    def _answer(self, percept: Percept, *, event: Event | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if event is None:
                event = self.live.pending_event(percept.event_id)
            if "t_encoded" in (percept.stamps or {}):
                self.latency.add("encoder_to_oracle", now - percept.stamps["t_encoded"], key=event.event_id)
            if event.t_detected:
                self.latency.add("detected_to_oracle", now - event.t_detected)
            gated_before = self.live.counters["gated"]
            t0 = time.monotonic()
            # an event answered without its percept was taken off the waiting list: it is still this event's answer
            notes = self.live.on_percept(percept, time.monotonic(), event=event, announced=True)
            self.latency.add("oracle", time.monotonic() - t0)
            gated = self.live.counters["gated"] - gated_before
            self.counters["gated"] += gated
            self.verdicts.append((event.event_id, bool(gated)))
        if event.t_detected:  # every event (the benchmark's per-event series)
            self.latency.add("detected_to_decision", time.monotonic() - event.t_detected, key=event.event_id)
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
    def checkpoint(self, path: str | None = None) -> str | None:
        path = path or self.checkpoint_path
        if not path:
            return None
        with self._lock:
            self.stage.checkpoint(path, perception=self.perception_model)  # a model file: --model path plays it
        self.counters["checkpoints"] += 1
        return path

    def ready(self) -> str:
        return self.node_id

    def control(self, name: str, value: Any) -> dict[str, Any]:
        """Apply one control in the decision sequence (the decision object's table); logged."""
        with self._lock:
            state = self.live.apply_control(name, value, time.monotonic())
        self.counters["controls"] += 1
        return state

    def control_state(self) -> dict[str, Any]:
        with self._lock:
            return self.live.control_state()

    def console_view(self) -> dict[str, Any]:
        """The player as a console shows it (:mod:`services.oracle.player.view`, read only) and the echo gate's
        last verdicts; the lock is held only to take the snapshot (scalars and a view of the activity)."""
        from services.oracle.player.view import finish_view, player_snapshot

        with self._lock:
            snapshot = player_snapshot(self.live, time.monotonic())
        view = finish_view(snapshot)  # the strip, outside the lock
        view["verdicts"] = list(self.verdicts)
        return view

    def stats(self) -> dict[str, Any]:
        remote = None
        with self._lock:  # one moment: the counters and the link's state change under this lock together
            stage_counters = dict(self.stage.stats())
            stage_counters.update(self.live.stats())
            control = self.live.control_state()
            pending = len(self.live.pending)
            counters = dict(self.counters)
            if self.encoder is not None:
                remote = {
                    **self.link.summary(),
                    **self.payload.summary(),
                    "window_rate_hz": self.encoder_rate_hz,
                    "down_since": self.link.down_since,
                    "recent_fallbacks": list(self.recent_fallbacks),
                }
        counters.update({f"stage_{k}": v for k, v in stage_counters.items()})
        counters["pending"] = pending
        counters["message_overruns"] = self.events_reader.overruns + self.percepts_reader.overruns
        if self.midi_input is not None:
            counters.update({f"midi_{k}": v for k, v in self.midi_input.counters.items()})
            counters["message_overruns"] += self.midi_reader.overruns
        counters["gate_blocked"] = self.live.gate.counters["blocked"]
        return {
            "stage": "oracle",
            "node_id": self.node_id,
            "counters": counters,
            "latency_ms": self.latency.summary(),
            "encoder_lost": self.encoder_lost,
            "encoder_node": self.last_encoder_node,
            "error": self.error,
            "control": control,
            "remote_encoder": remote,
        }

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
        for ring in (self.audio, self.events, self.percepts, self.notes, self.midi_ring):
            if ring is not None:
                ring.close()
        return stats
