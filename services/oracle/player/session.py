"""Session log (JSONL) and deterministic replay.

The oracle actor writes one JSON object per line, in the exact order it did things, under its lock:

- ``header``: schema, wall and monotonic start time, the whole config (seeds included), model paths, resume path;
- ``event``: an input event arrived (id, onset sample, detection time);
- ``percept``: the percept the oracle processed (token, features, descriptors, view), ``now_s`` passed to
  the decision object, whether the input gate blocked it (``gated``: neither learned nor listened to) and
  whether it was an onset's early view (``early``: influence only, never learned), and ``tick_s``: when the
  steps due after it were decided (the live clock's time once the percept was taken in);
- ``tick``: the player's clock took steps at ``now_s``;
- ``notes``: the notes decided (ids, pitches, times, oracle states and the player's last move);
- ``control``: a control change applied (``name``, ``value``) with its time;
- ``stop``: the end of the session.

:func:`services.oracle.player.replay.replay_session` feeds the logged percepts, ticks and controls into a fresh
:class:`~services.oracle.player.live.LiveOracle` (this module is what the decision object and the replay share: the
records and the memory they start from).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.oracle.memory.store import OracleMemory
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import EventDescriptors, NoteEvent, Percept

__all__ = [
    "make_stage",
    "SessionLog",
    "SESSION_SCHEMA",
    "read_session",
    "note_to_record",
    "note_from_record",
    "percept_to_record",
    "percept_from_record",
]

SESSION_SCHEMA = "musichal-session/1"


def make_stage(config: MusicHalConfig, model: Any = None):
    """An OracleMemory whose threshold re-estimates run in the background but are adopted at a fixed event count,
    so that its decisions depend only on its inputs: used for logged sessions and their replay."""
    return OracleMemory(config, model=model, background=True, deterministic=True)


def percept_to_record(percept: Percept) -> dict[str, Any]:
    d = percept.descriptors
    return {
        "event_id": percept.event_id,
        "token": percept.token,
        "view": percept.view,
        "features": np.asarray(percept.features, dtype=np.float32).ravel().tolist(),
        "descriptors": None
        if d is None
        else {
            "onset_s": d.onset_s,
            "duration_s": d.duration_s,
            "rms": d.rms,
            "velocity": d.velocity,
            "f0_hz": d.f0_hz,
            "f0_confidence": d.f0_confidence,
            "chroma_peaks": list(d.chroma_peaks),
            "notes": [list(n) for n in d.notes],
            "pressure": list(d.pressure),
            "f0_cents": list(d.f0_cents),
            "timbre": d.timbre,
        },
    }


def percept_from_record(record: dict[str, Any]) -> Percept:
    d = record.get("descriptors")
    descriptors = (
        None
        if d is None
        else EventDescriptors(
            onset_s=d["onset_s"],
            duration_s=d["duration_s"],
            rms=d["rms"],
            velocity=d["velocity"],
            f0_hz=d["f0_hz"],
            f0_confidence=d["f0_confidence"],
            chroma_peaks=tuple(d["chroma_peaks"]),
            notes=tuple(
                (int(n[0]), float(n[1]), float(n[2]), int(n[3]), float(n[4]), float(n[5])) for n in d.get("notes", ())
            ),
            pressure=tuple(int(p) for p in d.get("pressure", ())),
            f0_cents=tuple(float(c) for c in d.get("f0_cents", ())),
            timbre=int(d.get("timbre", 64)),
        )
    )
    return Percept(
        event_id=record["event_id"],
        token=record["token"],
        view=record["view"],
        features=np.asarray(record["features"], dtype=np.float32),
        descriptors=descriptors,
    )


def note_to_record(note: NoteEvent) -> dict[str, Any]:
    return {
        "note_id": note.note_id,
        "pitch": note.pitch,
        "velocity": note.velocity,
        "t_on": note.t_on,
        "t_off": note.t_off,
        "voice": note.voice,
        "source_state": note.source_state,
        "source_event_id": note.source_event_id,
        "bend": note.bend_semitones,
        "pressure": note.pressure,
        "timbre": note.timbre,
        "bend_curve": [list(p) for p in note.bend_curve],
        "pressure_curve": [list(p) for p in note.pressure_curve],
    }


def note_from_record(r: dict[str, Any]) -> NoteEvent:
    return NoteEvent(
        note_id=r["note_id"],
        pitch=r["pitch"],
        velocity=r["velocity"],
        t_on=r["t_on"],
        t_off=r["t_off"],
        voice=r["voice"],
        source_state=r["source_state"],
        source_event_id=r["source_event_id"],
        bend_semitones=r["bend"],
        pressure=r["pressure"],
        timbre=r["timbre"],
        bend_curve=tuple((float(t), float(v)) for t, v in r.get("bend_curve", ())),
        pressure_curve=tuple((float(t), int(v)) for t, v in r.get("pressure_curve", ())),
    )


def keep_aside(path: Path) -> Path | None:
    """Move an existing ``path`` to the first free ``<stem>.before-restart-<k><suffix>`` (k = 1, 2, …) and return
    where it went (None when there was nothing to keep)."""
    if not path.exists():
        return None
    k = 1
    while (kept := path.with_name(f"{path.stem}.before-restart-{k}{path.suffix}")).exists():
        k += 1
    path.rename(kept)
    return kept


class SessionLog:
    """Thread-safe JSONL writer (line-buffered: a crash loses at most the line being written).

    ``restarted``: the oracle was restarted after a crash, and the log at ``path`` holds the session so far: it is
    kept (:func:`keep_aside`, its name in the new header's ``previous``) and a new log starts, which replays on its
    own from the resumed memory. A new session (not a restart) replaces the file, as ``--record`` does."""

    def __init__(
        self,
        path: str | Path,
        *,
        config: MusicHalConfig,
        models: list[str] | tuple[str, ...] = (),
        resume: str | None = None,
        clock=time.monotonic,
        restarted: bool = False,
    ) -> None:
        if not isinstance(config, MusicHalConfig):
            raise ParameterError("config must be a MusicHalConfig")
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self.previous = keep_aside(self.path) if restarted else None
        self._file = open(self.path, "wb", buffering=0)
        self.records = 0
        self.write(
            "header",
            schema=SESSION_SCHEMA,
            wall_time=time.time(),
            t0=clock(),
            config=config.to_dict(),
            seed=config.generation.seed,
            models=[str(m) for m in models],
            resume=resume,
            previous=None if self.previous is None else str(self.previous),
        )

    def write(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "t": self.clock(), **fields}
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with self._lock:
            if self._file is not None:
                self._file.write(line)
                self.records += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_session(path: str | Path) -> list[dict[str, Any]]:
    """All records of a session log; raises ParameterError on a missing file or a bad header."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise ParameterError(f"session log not found: {path}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            if number == len(lines):
                break  # a crash mid-line: keep what is complete
            raise ParameterError(f"{path}:{number}: not JSON") from None
    if not records or records[0].get("kind") != "header" or records[0].get("schema") != SESSION_SCHEMA:
        raise ParameterError(f"{path}: not a MusicHal session log ({SESSION_SCHEMA})")
    return records
