"""What the decision object shows a console: the memory as a strip of states with the live influence over it, the
state being played, its transposition and last move, tempo and beat, the live settings (pure, read only).

:func:`player_snapshot` is cheap (references and scalars: what the oracle actor takes under its lock);
:func:`finish_view` makes the strip from it outside the lock; :func:`player_view` does both. Nothing here changes
the :class:`~services.oracle.player.live.LiveOracle` it reads, so reading it between decisions, live (the oracle
actor's ``console_view``) or in a replay, leaves every later decision as it would have been.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["player_view", "player_snapshot", "finish_view", "activity_strip", "STRIP_BINS"]

#: the memory strip's resolution: a memory with more states is shown as this many bins (each its maximum)
STRIP_BINS = 256


def activity_strip(activity: np.ndarray, *, bins: int = STRIP_BINS) -> list[float]:
    """``activity`` over the states as at most ``bins`` values in 0..1 (each bin the maximum of its states, scaled by
    the largest magnitude; a negative activity — contrast — is shown by its magnitude).

    >>> activity_strip(np.array([0.0, 1.0, 2.0, 4.0]), bins=2)
    [0.25, 1.0]
    """
    a = np.abs(np.asarray(activity, dtype=np.float64))
    if a.size == 0:
        return []
    if a.size > bins:
        edges = np.linspace(0, a.size, bins + 1).astype(np.int64)
        a = np.maximum.reduceat(a, edges[:-1])
    top = float(a.max())
    return [round(float(v) / top, 3) if top > 0 else 0.0 for v in a]


def player_snapshot(live: Any, now: float) -> dict[str, Any]:
    """The player's state at ``now`` (monotonic seconds on the deciding host) without the strip: scalars, the
    settings and a read-only view of the activity (``"activity"``, for :func:`finish_view`)."""
    player = live.player
    tempo = live.tempo
    next_beat = tempo.next_beat(now) if tempo.period_s is not None else None
    next_step = player.next_step_s
    activity = player.activity_view()
    return {
        "t": now,
        "n_states": int(activity.size),
        "state": int(player.state),
        "transpose": int(player.transpose),
        "last_move": player.last_kind,
        "steps": {k: int(player.counters[k]) for k in ("steps", "forward", "jump", "rests", "transpositions")},
        "activity": activity,
        "next_step_s": None if next_step is None else round(float(next_step) - now, 4),
        "bpm": None if tempo.bpm is None else round(float(tempo.bpm), 2),
        "next_beat_s": None if next_beat is None else round(float(next_beat) - now, 4),
        "beat_period_s": tempo.period_s,
        "muted": bool(live.muted),
        "learning": bool(live.stage.learning),
        "settings": live.control_state(),
        "gate": {"enabled": bool(live.gate.enabled), **{k: int(v) for k, v in live.gate.counters.items()}},
    }


def finish_view(snapshot: dict[str, Any], *, bins: int = STRIP_BINS) -> dict[str, Any]:
    """A JSON-able view: the snapshot with its activity turned into the strip."""
    view = dict(snapshot)
    activity = view.pop("activity")
    view["strip"] = activity_strip(activity, bins=bins)
    view["strip_states_per_bin"] = max(1.0, activity.size / bins)
    return view


def player_view(live: Any, now: float, *, bins: int = STRIP_BINS) -> dict[str, Any]:
    """:func:`player_snapshot` and :func:`finish_view` in one call (a replay, tests)."""
    return finish_view(player_snapshot(live, now), bins=bins)
