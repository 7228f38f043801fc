"""The live decision object: everything the oracle decides, pure and clock-driven (no Ray, no rings).

:class:`LiveOracle` owns the events waiting for their percepts (with deadlines), the feedback gate, mute, the
live settings (:attr:`LiveOracle.config`, changed by :meth:`LiveOracle.apply_control` through the control table
:data:`shared.controls.CONTROLS`; the player and the voices are handed their sections), the session-log hook, the
memory (:class:`~services.oracle.memory.store.OracleMemory`) and the voices
(:class:`~services.oracle.player.voices.Ensemble`: the
melody :class:`~services.oracle.player.walk.Player` and the bass and comping that follow it). Its methods take the time
``now`` (``time.monotonic`` seconds live; logged values on replay) and return notes:

- :meth:`on_event` — an input event arrived (it must be answered by a percept before its deadline);
- :meth:`on_percept` — a percept: unless the gate blocks it, it influences the player at once, its onset
  feeds the tempo tracker, and (when it is a full-window percept and learning is on) it is queued for
  learning (:meth:`learn_queued`, called once its notes are sent); an *early* percept (the first
  ``segmenter.early_ms`` of an onset, traditional pitch and chroma) only influences;
- :meth:`expired` — events whose percept missed the deadline (the actor answers them from a local analysis
  or lets the player continue on its own);
- :meth:`tick` — the player's clock: the steps due up to ``now + lookahead_s`` (``generation.lookahead_ms``: a
  step on the own clock is decided that long before it sounds; reactions are due at once).

Dynamics follow the musician (``generation.follow_dynamics``): every learned-from percept's velocity feeds a
:class:`~services.encoder.expression.DynamicsFollower` (half-life ``generation.dynamics_half_life_s`` of onset
time); each note's velocity and MPE pressure are scaled by its average over the memory's mean velocity, so playing
softer than the memory makes MusicHal softer (0.25–1.6×; 1 before any input).

The oracle actor only moves messages between rings and this object; ``musichal replay`` drives the same object
from the session log (percepts, ticks and controls at their logged times), so replay equals live by
construction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from services.encoder.expression import DynamicsFollower
from services.oracle.player.echo import EchoGate
from services.oracle.player.expression import with_dynamics
from services.oracle.player.session import note_to_record, percept_to_record
from services.oracle.player.tempo import TempoTracker
from services.oracle.player.voices import Ensemble
from services.oracle.player.walk import live_profile
from shared.config import MusicHalConfig
from shared.controls import CONTROLS, control
from shared.errors import ParameterError
from shared.messages import Event, NoteEvent, Percept

__all__ = ["LiveOracle"]


def onset_time(event: Event) -> float:
    """Monotonic time of the event's onset (from its detection stamp and window)."""
    return event.t_detected - (event.window_end - 1 - event.onset_sample) / event.sample_rate_hz


class LiveOracle:
    """Pure decision object of the live oracle (see the module docstring).

    Parameters
    ----------
    config : MusicHalConfig
        The start settings; :attr:`config` is the one owner of the live settings from then on (every control
        replaces it, and the player and the voices are handed its sections).
    stage : OracleMemory
        The memory (learning, threshold, checkpoints).
    session : SessionLog, optional
        Every input, decision and control is written to it in decision order.
    clock : callable, optional
        The live clock (``time.monotonic``): :meth:`on_percept` then decides the steps due after the percept at
        the clock's time, not at the percept's ``now`` (taking in a percept takes time; a clocked step decided
        at a stale time would leave with less than its look-ahead). Replay and tests leave it None.
    """

    def __init__(
        self, config: MusicHalConfig, stage: Any, *, session: Any = None, clock: Callable[[], float] | None = None
    ) -> None:
        if not isinstance(config, MusicHalConfig):
            raise ParameterError("config must be a shared.config.MusicHalConfig")
        self.config = config
        self.stage = stage
        self.ensemble = Ensemble(stage, config.generation, config.voices)
        self.player = self.ensemble.player  # the melody: the clock the other voices follow
        control = config.control
        self.gate = EchoGate(
            mode=control.gate_mode,
            pre_ms=control.gate_pre_ms,
            release_ms=control.gate_release_ms,
            enabled=bool(control.input_gate),
        )
        self.muted = False
        self.session = session
        self.clock = clock
        self.deadline_s = config.cluster.encoder_deadline_ms / 1000.0
        self.pending: OrderedDict[int, tuple[Event, float]] = OrderedDict()
        self.tempo = TempoTracker()
        self.player.beat = self.tempo
        self._tracked_id = -1
        self._to_learn: list[Percept] = []
        self.last_t_off = 0.0  # when the last decided note ends
        self.dynamics = DynamicsFollower(half_life_s=config.generation.dynamics_half_life_s)
        self._velocity_sum, self._velocity_rows = 0, 1  # the memory's velocities (row 0 is a placeholder)
        self._velocity_store: Any = None
        self.counters = {
            "events": 0,
            "percepts": 0,
            "early": 0,
            "unannounced": 0,
            "gated": 0,
            "learned": 0,
            "notes": 0,
            "steps": 0,
            "controls": 0,
            "missed": 0,
        }

    # ------------------------------------------------------------------ inputs
    def on_event(self, event: Event, now: float, *, deadline_s: float | None = None) -> None:
        """An input event whose percept must arrive by ``now + deadline_s`` (default ``cluster.encoder_deadline_ms``;
        the actor passes a remote encoder link's adaptive deadline)."""
        self.counters["events"] += 1
        self.pending[event.event_id] = (event, now + (self.deadline_s if deadline_s is None else float(deadline_s)))
        if self.session is not None:
            self.session.write(
                "event", event_id=event.event_id, onset_sample=event.onset_sample, t_detected=event.t_detected
            )

    def waiting_for(self, event_id: int) -> bool:
        return event_id in self.pending

    def pending_event(self, event_id: int) -> Event | None:
        """The event still waiting for ``event_id``'s percept (it stays waiting), or None."""
        pending = self.pending.get(event_id)
        return None if pending is None else pending[0]

    def take(self, event_id: int) -> Event | None:
        """Stop waiting for ``event_id``'s percept (the caller answers it another way); its event, or None."""
        pending = self.pending.pop(event_id, None)
        return None if pending is None else pending[0]

    def expired(self, now: float) -> list[Event]:
        """Pop and return the events whose deadline has passed."""
        out = [k for k, (_, deadline) in self.pending.items() if deadline <= now]
        self.counters["missed"] += len(out)
        return [self.pending.pop(k)[0] for k in out]

    def on_percept(
        self,
        percept: Percept,
        now: float,
        *,
        event: Event | None = None,
        early: bool = False,
        gated: bool | None = None,
        onset_t: float | None = None,
        announced: bool = False,
        tick_at: float | None = None,
    ) -> list[NoteEvent]:
        """A percept (``early``: the onset's first view, influence only); returns the notes now due.

        ``event`` is the percept's event when known (else the pending one is used); ``gated`` and ``onset_t`` (the
        onset time) override the gate's verdict and the event's onset (replay passes the logged ones);
        ``announced``: the event did arrive through :meth:`on_event` and was taken off the waiting list (expired
        or :meth:`take`-n) because this percept answers it another way (a local analysis). A full
        percept is queued for learning: call :meth:`learn_queued` once its notes are sent. The steps then due
        are decided at ``tick_at`` (replay passes the logged time), else at the clock's time, else at ``now``.
        """
        if not isinstance(percept, Percept):
            raise ParameterError("on_percept takes a shared.messages.Percept")
        if not early:
            pending = self.pending.pop(percept.event_id, None)
            if pending is None and not announced:
                self.counters["unannounced"] += 1  # no on_event before (replay, tests)
            elif pending is not None and event is None:
                event = pending[0]
        if onset_t is None:
            onset_t = onset_time(event) if event is not None and event.t_detected else now
        if gated is None:
            gated = bool(event is not None and event.t_detected) and self._echo(onset_t, percept.descriptors)
        self.counters["early" if early else "percepts"] += 1
        if gated:
            self.counters["gated"] += 1
        else:
            d = percept.descriptors
            self.player.listen(
                now=now,
                token=None if early else percept.token,
                f0_hz=0.0 if d is None else d.f0_hz,
                chroma_peaks=() if d is None else d.chroma_peaks,
                notes=() if d is None else d.notes,
                event_id=percept.event_id,
                onset_t=onset_t,
                detected=event.t_detected if event is not None and event.t_detected else None,
            )
            if self._tracked_id != percept.event_id:  # one onset, two views: tracked once
                self._tracked_id = percept.event_id
                self.tempo.note(onset_t)  # estimated after the notes are out (learn_queued), or when read
            if not early:
                self._to_learn.append(percept)
                if d is not None:
                    self.dynamics.update(onset_t, d.velocity)
        if tick_at is None:
            tick_at = now if self.clock is None else max(now, self.clock())
        if self.session is not None:
            self.session.write(
                "percept",
                now_s=now,
                tick_s=tick_at,
                gated=gated,
                early=early,
                onset_t=onset_t,
                **percept_to_record(percept),
            )
        return self.tick(tick_at)

    def _echo(self, onset_t: float, d: Any) -> bool:
        """The gate's verdict on an onset: its slice notes when transcribed, else its pitch-class profile (f0 and
        chroma peaks) against the notes MusicHal is sounding then (``control.gate_mode``)."""
        if d is None:
            return self.gate.blocks(onset_t)
        profile = live_profile(d.f0_hz, tuple(d.chroma_peaks))
        return self.gate.blocks(
            onset_t,
            notes=d.notes or None,
            chroma=profile if profile.any() else None,
            window_s=self.config.segmenter.window_ms / 1000.0,
        )

    def learn_queued(self) -> int:
        """Learn the percepts taken since the last call (after their notes left: learning never delays a
        reaction); returns how many were learned. Replay calls it right after :meth:`on_percept` as live does."""
        self.tempo.settle()  # the tempo estimates of the onsets heard since (off the reaction path, same results)
        learned = 0
        while self._to_learn:
            percept = self._to_learn.pop(0)
            before = self.stage.counters["learned"]
            self.stage.learn(percept)
            learned += self.stage.counters["learned"] - before
        self.counters["learned"] += learned
        return learned

    # ------------------------------------------------------------------ the clock
    @property
    def lookahead_s(self) -> float:
        """``generation.lookahead_ms`` in seconds (the player's current settings)."""
        return self.player.lookahead_s

    def tick(self, now: float) -> list[NoteEvent]:
        """The player's steps due up to ``now + lookahead``; their notes (empty when none is due)."""
        if not self.player.due(now, self.lookahead_s):
            return []
        notes, steps = self.ensemble.tick(now, lookahead_s=self.lookahead_s)
        if notes and self.config.generation.follow_dynamics:
            scale = self.dynamics_scale()
            notes = [with_dynamics(note, scale) for note in notes]
        self.counters["steps"] += steps
        self.counters["notes"] += len(notes)
        for note in notes:
            self.last_t_off = max(self.last_t_off, note.t_off)
        if not self.muted:
            for note in notes:
                self.gate.note_sent(note.t_on, note.t_off, pitch=note.pitch)
        if self.session is not None:
            self.session.write("tick", now_s=now)
            if notes:
                self.session.write(
                    "notes",
                    notes=[note_to_record(n) for n in notes],
                    last_move=self.player.last_kind,
                    walk=dict(self.player.counters),
                )
        return notes

    def dynamics_scale(self) -> float:
        """The musician's dynamics: the followed input velocity over the memory's mean velocity (1 before input)."""
        store = self.stage.store
        n = 0 if store is None else len(store.velocity)
        if store is not self._velocity_store or n < self._velocity_rows:  # a new memory (reset, a model): count again
            self._velocity_sum, self._velocity_rows, self._velocity_store = 0, 1, store
        if n > self._velocity_rows:
            self._velocity_sum += int(np.frombuffer(store.velocity, dtype=np.int64)[self._velocity_rows : n].sum())
            self._velocity_rows = n
        if self._velocity_rows > 1:
            self.dynamics.reference = min(127.0, max(1.0, self._velocity_sum / (self._velocity_rows - 1)))
        return self.dynamics.scale

    def seconds_to_next(self, now: float) -> float:
        """How long the caller may wait before something is due (the next step or a pending deadline)."""
        wait = self.player.seconds_to_next(now, self.lookahead_s)
        if self.pending:
            wait = min(wait, max(0.0, min(d for _, d in self.pending.values()) - now))
        return wait

    # ------------------------------------------------------------------ controls
    def apply_control(self, name: str, value: Any, now: float | None = None) -> dict[str, Any]:
        """Apply one control of the table (:data:`shared.controls.CONTROLS`) that the oracle owns; it takes effect at
        the next step. A control with a config key sets it in :attr:`config`; ``learning`` and ``mute`` are the
        memory's and this object's own state. Logged."""
        row = control(name)
        if "oracle.control" not in row.routes:
            raise ParameterError(
                f"the oracle has no control {name!r}; its controls: "
                + ", ".join(n for n, r in CONTROLS.items() if "oracle.control" in r.routes)
            )
        value = row.parse(value)
        if row.key is not None:
            self._settings(row.set_in(self.config, value))
        elif row.name == "learning":
            self.stage.learning = value
        elif row.name == "mute":
            self.muted = value
        else:
            raise ParameterError(f"control {row.name!r} sets no config key and the oracle has no setter for it")
        self.counters["controls"] += 1
        if self.session is not None:
            self.session.write(
                "control", name=name, value=list(value) if isinstance(value, tuple) else value, now_s=now
            )
        return self.control_state()

    def _settings(self, config: MusicHalConfig) -> None:
        """New live settings: the player and the voices get their sections (from the next step on)."""
        if config.generation != self.config.generation:
            self.player.set_config(config.generation)
        self.ensemble.voices = config.voices
        self.gate.enabled = bool(config.control.input_gate)
        self.config = config

    def control_state(self) -> dict[str, Any]:
        g = self.config.generation
        return {
            "mode": g.mode,
            "continuity": g.continuity,
            "density": g.density,
            "tempo": g.tempo,
            "range": list(g.melody_range),
            "wait": g.wait_for_input,
            "beat": g.beat_aligned,
            "bpm": None if self.tempo.bpm is None else round(self.tempo.bpm, 2),
            "learning": self.stage.learning,
            "gate": self.gate.enabled,
            "muted": self.muted,
            "voices": self.voices_state(),
        }

    def voices_state(self) -> dict[str, Any]:
        """Each voice: on, range, density (the melody's are the generation settings)."""
        v, g = self.config.voices, self.config.generation
        return {
            "melody": {"on": v.melody, "range": list(g.melody_range), "density": g.density},
            "bass": {"on": v.bass, "range": list(v.bass_range), "density": v.bass_density},
            "comping": {
                "on": v.comping,
                "range": list(v.comping_range),
                "density": v.comping_density,
                "max_polyphony": v.max_polyphony,
            },
        }

    def stats(self) -> dict[str, Any]:
        out = dict(self.counters)
        out.update({f"player_{k}": v for k, v in self.player.counters.items()})
        out.update({f"voices_{k}": v for k, v in self.ensemble.counters.items()})
        out["pending"] = len(self.pending)
        return out
