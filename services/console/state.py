"""The console's state, pure: what the page shows, built from the messages the stack already carries.

:class:`ConsoleState` is fed heard events and their percepts, the notes decided, the player's view
(:func:`services.oracle.player.view.player_view`), the stack's stats and the control hub's snapshot, and turns them
into one JSON-able :meth:`~ConsoleState.frame`: the piano roll of the last ``roll_seconds`` (heard events with their
pitches and echo-gate verdicts, played and scheduled notes per voice), the memory strip, the moves (continuity and
jumps), tempo, the settings, health and the refused controls. The live feed (``services.console.feed``) and
``musichal replay --console`` fill it the same way. Times are monotonic seconds on the driver's host.

>>> state = ConsoleState(roll_seconds=4.0)
>>> state.add_note({"note_id": 1, "pitch": 60, "velocity": 90, "t_on": 10.0, "t_off": 10.5, "voice": "melody",
...                 "source_state": 3})
>>> frame = state.frame(10.2)
>>> [(n["id"], n["pitch"], n["voice"]) for n in frame["played"]]
[(1, 60, 'melody')]
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

from shared.controls import CONTROLS
from shared.pitch import hz_to_midi

__all__ = ["ConsoleState", "control_specs", "health", "MAX_ITEMS"]

#: the most heard events / played notes the roll keeps (besides its time window)
MAX_ITEMS = 2000
#: note ids the page reported drawn, kept with the time their report arrived
DRAWN_KEPT = 2048


def control_specs(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every performer control of the table (:data:`shared.controls.CONTROLS`) as the page builds its widgets from:
    name, kind, bounds (a number's low/high, a choice's options, a range's least span), help, OSC address, CC,
    note and the current value (from ``values``, the hub's)."""
    values = values or {}
    out = []
    for row in CONTROLS.values():
        if not row.performer:
            continue
        bounds = row.bounds
        out.append(
            {
                "name": row.name,
                "kind": row.kind,
                "bounds": list(bounds) if isinstance(bounds, (tuple, list)) else bounds,
                "help": row.help,
                "address": row.address,
                "cc": row.cc,
                "note": row.note,
                "value": _value(values, row.name),
            }
        )
    return out


def _value(values: dict[str, Any], name: str) -> Any:
    if name.startswith("voice/"):
        _, voice, setting = name.split("/")
        return (values.get("voices") or {}).get(voice, {}).get(setting)
    return values.get(name)


def _ms(t: Any) -> float:
    """A time to 0.1 ms: what the page draws (and a frame ~40 % shorter than full float digits)."""
    return round(float(t), 4)


def _counter(stats: dict[str, Any], stage: str, key: str) -> int | None:
    value = (stats.get(stage) or {}).get("counters", {}).get(key)
    return int(value) if isinstance(value, (int, float)) else None


def health(stats: dict[str, Any]) -> dict[str, Any]:
    """The health panel from the stack's stats (:meth:`services.stack.LiveStack.stats`): events, percepts,
    learned, where the encoder runs (or ``LOST``), pipeline latency p50/p99, reaction p95, drops, late MIDI."""
    encoder, oracle, midi = stats.get("encoder") or {}, stats.get("oracle") or {}, stats.get("midi_out") or {}
    if not stats:
        where = None
    elif "unavailable" in encoder or oracle.get("encoder_lost"):
        where = "LOST"
    else:
        node = encoder.get("node_id") or "?"
        where = f"{node[:8]} ({'local' if encoder.get('local') else 'remote'})"
    drops = [
        _counter(stats, stage, key)
        for stage, key in (("encoder", "dropped_backlog"), ("oracle", "dropped_in_flight"), ("capture", "samples_lost"))
    ]
    latency = midi.get("latency_ms") or {}
    pipeline, reaction = latency.get("pipeline") or {}, latency.get("onset_to_note") or {}
    return {
        "events": _counter(stats, "capture", "events"),
        "percepts": _counter(stats, "oracle", "percepts"),
        "learned": _counter(stats, "oracle", "stage_learned"),
        "states": _counter(stats, "oracle", "stage_states"),
        "notes": _counter(stats, "midi_out", "notes_received"),
        "encoder": where,
        "latency_p50_ms": pipeline.get("p50"),
        "latency_p99_ms": pipeline.get("p99"),
        "reaction_p95_ms": reaction.get("p95"),
        "drops": sum(d for d in drops if d is not None) if any(d is not None for d in drops) else None,
        "late_midi": _counter(stats, "midi_out", "scheduler_clocked_late_on_arrival"),
        "clocked_notes": _counter(stats, "midi_out", "scheduler_clocked_notes"),
        "gated": _counter(stats, "oracle", "gated"),
        "encoder_errors": _counter(stats, "encoder", "exceptions"),
        "unavailable": sorted(name for name, s in stats.items() if isinstance(s, dict) and "unavailable" in s),
    }


class ConsoleState:
    """What the console shows, fed by the live feed or a replay; thread-safe (the feed writes, the server reads).

    Parameters
    ----------
    roll_seconds : float
        How much history the piano roll keeps (the notes scheduled ahead are always kept).
    """

    def __init__(self, *, roll_seconds: float = 12.0) -> None:
        self.roll_seconds = float(roll_seconds)
        self._lock = threading.Lock()
        self._heard: OrderedDict[int, dict[str, Any]] = OrderedDict()  # event id -> heard event
        self._played: deque[dict[str, Any]] = deque(maxlen=MAX_ITEMS)
        self._moves: deque[dict[str, Any]] = deque(maxlen=256)
        self._last_state: int | None = None
        self._verdicts: dict[int, bool] = {}
        self._drawn: OrderedDict[int, float] = OrderedDict()
        self.player: dict[str, Any] = {}
        self.player_at: float | None = None
        self.stats: dict[str, Any] = {}
        self.stats_at: float | None = None
        self.controls: dict[str, Any] = {}
        self.source = "live"
        self.seq = 0
        self.counters = {"events": 0, "percepts": 0, "notes": 0, "frames": 0, "feed_errors": 0}

    # ------------------------------------------------------------------ feeding
    def add_event(self, event_id: int, onset_s: float) -> None:
        """A heard onset (its pitches come with its percept)."""
        with self._lock:
            self.counters["events"] += 1
            if event_id not in self._heard:
                self._heard[event_id] = {"id": int(event_id), "t": _ms(onset_s), "pitches": [], "gated": None}
                self._verdict(event_id)
                while len(self._heard) > MAX_ITEMS:
                    self._heard.popitem(last=False)

    def add_percept(self, event_id: int, descriptors: Any, onset_s: float | None = None) -> None:
        """A heard event's analysis: its transcribed notes (slice notes), else its f0 as one pitch."""
        if descriptors is None:
            return
        pitches = sorted({int(n[0]) for n in descriptors.notes})
        if not pitches and descriptors.f0_hz > 0:
            pitches = [int(round(hz_to_midi(descriptors.f0_hz)))]
        with self._lock:
            self.counters["percepts"] += 1
            heard = self._heard.get(event_id)
            if heard is None:
                if onset_s is None:
                    return
                heard = self._heard[event_id] = {"id": int(event_id), "t": _ms(onset_s), "gated": None}
            heard["pitches"] = pitches
            heard["velocity"] = int(descriptors.velocity)
            self._verdict(event_id)

    def add_note(self, note: Any) -> None:
        """A decided note (a NoteEvent or its record): drawn from ``t_on`` to ``t_off``, ahead of now while it is
        scheduled. A melody note's source state extends the moves (a step that is not the next state is a jump)."""
        get = note.get if isinstance(note, dict) else (lambda key, default=None: getattr(note, key, default))
        stamps = get("stamps") or {}
        item = {
            "id": int(get("note_id")),
            "voice": get("voice", "melody"),
            "pitch": int(get("pitch")),
            "vel": int(get("velocity")),
            "on": _ms(get("t_on")),
            "off": _ms(get("t_off")),
            "state": int(get("source_state", -1)),
            "reaction": "reaction" in stamps,
        }
        with self._lock:
            self.counters["notes"] += 1
            self._played.append(item)
            state = item["state"]
            if item["voice"] == "melody" and state >= 0:
                previous = self._last_state
                self._moves.append(
                    {
                        "t": item["on"],
                        "from": previous,
                        "to": state,
                        "jump": previous is not None and state != previous + 1,
                    }
                )
                self._last_state = state

    def set_player(self, view: dict[str, Any], at: float) -> None:
        """The player's view (:func:`~services.oracle.player.view.player_view`), with the gate's verdicts."""
        with self._lock:
            self.player = dict(view)
            self.player_at = float(at)
            for event_id, gated in view.get("verdicts") or ():
                self._verdicts[int(event_id)] = bool(gated)
                self._verdict(int(event_id))
            if len(self._verdicts) > 4 * MAX_ITEMS:
                for key in sorted(self._verdicts)[: len(self._verdicts) - MAX_ITEMS]:
                    del self._verdicts[key]

    def _verdict(self, event_id: int) -> None:
        heard = self._heard.get(event_id)
        if heard is not None and event_id in self._verdicts:
            heard["gated"] = self._verdicts[event_id]

    def set_stats(self, stats: dict[str, Any], at: float) -> None:
        with self._lock:
            self.stats, self.stats_at = stats, float(at)

    def set_controls(self, snapshot: dict[str, Any]) -> None:
        """The control hub's snapshot (values, refusals with their reasons, counters)."""
        with self._lock:
            self.controls = snapshot

    def page_drew(self, note_ids: list[int], at: float) -> None:
        """The page reported these notes drawn; ``at`` is when the report arrived (this host's clock), so a note
        was on screen no later than that."""
        with self._lock:
            for note_id in note_ids:
                self._drawn.setdefault(int(note_id), float(at))
            while len(self._drawn) > DRAWN_KEPT:
                self._drawn.popitem(last=False)

    def drawn(self, last: int = 256) -> list[list[float]]:
        """``[note id, report time]`` of the last notes the page reported drawn."""
        with self._lock:
            return [[i, t] for i, t in list(self._drawn.items())[-last:]]

    def drawn_at(self, note_id: int) -> float | None:
        with self._lock:
            return self._drawn.get(int(note_id))

    # ------------------------------------------------------------------ reading
    def frame(self, now: float) -> dict[str, Any]:
        """Everything the page draws at ``now``: the roll's window, the player, health and controls."""
        since = now - self.roll_seconds
        with self._lock:
            self.seq += 1
            self.counters["frames"] += 1
            heard = [dict(h) for h in self._heard.values() if h["t"] >= since]
            played = [dict(n) for n in self._played if n["off"] >= since]
            moves = [dict(m) for m in self._moves if m["t"] >= since]
            player = dict(self.player)
            controls = dict(self.controls)
            stats, stats_at, player_at = self.stats, self.stats_at, self.player_at
            seq = self.seq
        return {
            "seq": seq,
            "t": now,
            "source": self.source,
            "roll_seconds": self.roll_seconds,
            "heard": heard,
            "played": played,
            "scheduled": sum(1 for n in played if n["on"] > now),
            "moves": moves,
            "player": player,
            "player_age_s": None if player_at is None else round(now - player_at, 3),
            "health": health(stats),
            "stats_age_s": None if stats_at is None else round(now - stats_at, 3),
            "controls": {k: v for k, v in controls.items() if k != "refusals"},
            "refusals": list(controls.get("refusals") or []),
        }
