"""Deterministic replay of a session log (:mod:`services.oracle.player.session`).

:func:`replay_session` feeds the logged percepts, ticks and controls into a fresh
:class:`~services.oracle.player.live.LiveOracle` (the object the live oracle actor drives) built from the logged config
and models; the decisions are deterministic, so it reproduces the logged notes exactly (checked).
:func:`services.midi_out.render.render_notes` schedules them like the live MIDI-out (same ordering: due time, then
arrival order) through a :class:`MidiOutStage` into an SMF, so the note messages equal the live recording byte for byte.
A log recorded before a config key was removed replays with that key dropped (:func:`shared.config.drop_removed_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.oracle.memory.corpus import load_corpora
from services.oracle.player.live import LiveOracle
from services.oracle.player.session import make_stage, note_from_record, percept_from_record, read_session
from shared.config import MusicHalConfig, drop_removed_keys
from shared.messages import NoteEvent

__all__ = ["replay_session", "ReplayResult"]


@dataclass
class ReplayResult:
    notes: list[NoteEvent]
    logged_notes: list[NoteEvent]
    controls: list[dict[str, Any]]
    config: MusicHalConfig
    t0: float
    t_end: float | None = None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        def key(n):
            return (
                n.note_id,
                n.pitch,
                n.velocity,
                n.t_on,
                n.t_off,
                n.voice,
                n.source_state,
                n.bend_semitones,
                n.pressure,
                n.timbre,
                n.bend_curve,
                n.pressure_curve,
            )

        return [key(n) for n in self.notes] == [key(n) for n in self.logged_notes]


def replay_session(
    path: str | Path, *, observe: Callable[[dict[str, Any], LiveOracle, list[NoteEvent]], None] | None = None
) -> ReplayResult:
    """Re-run a session's decisions on a fresh :class:`~services.oracle.player.live.LiveOracle` (the live decision
    object)
    at the logged times; returns the notes (and the logged ones to compare). ``observe(record, live, notes)`` is
    called after each record is replayed, with the notes it decided (``musichal replay --console`` paces and shows
    the replay from there; it must not change ``live``)."""
    records = read_session(path)
    header = records[0]
    config = MusicHalConfig.from_mapping(drop_removed_keys(header["config"]))
    model = None
    if header.get("models"):
        model, _ = load_corpora(config, header["models"])
    elif header.get("resume"):
        model = header["resume"]
    live = LiveOracle(config, make_stage(config, model))
    notes: list[NoteEvent] = []
    logged: list[NoteEvent] = []
    controls: list[dict[str, Any]] = []
    counters = {"percepts": 0, "gated": 0, "ticks": 0, "controls": 0}
    t_end = None
    for record in records[1:]:
        kind = record["kind"]
        before = len(notes)
        if kind == "percept":
            counters["percepts"] += 1
            counters["gated"] += bool(record.get("gated"))
            notes += live.on_percept(
                percept_from_record(record),
                record["now_s"],
                early=bool(record.get("early")),
                gated=bool(record.get("gated")),
                onset_t=record.get("onset_t", record.get("onset_wall")),  # "onset_wall": logs before 2026-12-07
                tick_at=record.get("tick_s"),
            )
            live.learn_queued()
        elif kind == "tick":
            counters["ticks"] += 1
            notes += live.tick(record["now_s"])
        elif kind == "control":
            counters["controls"] += 1
            controls.append(record)
            live.apply_control(record["name"], record["value"], record.get("now_s"))
        elif kind == "notes":
            logged += [note_from_record(r) for r in record["notes"]]
        elif kind == "stop":
            t_end = record.get("t_end", record["t"])
        if observe is not None:
            observe(record, live, notes[before:])
    return ReplayResult(
        notes=notes,
        logged_notes=logged,
        controls=controls,
        config=config,
        t0=header["t0"],
        t_end=t_end,
        counters=counters,
    )
