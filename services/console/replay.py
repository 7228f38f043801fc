"""``musichal replay LOG --console``: a logged session shown on the console at its own pace.

The replay (:func:`services.oracle.player.replay.replay_session`, the same decisions as live) runs on a thread; after
each record it waits until that record's logged time has come on the replay's clock (started at the first record),
then feeds the console's state as the live feed would: heard onsets with their pitches and the gate's verdict,
the notes decided (drawn ahead of the now-line until they sound), the player's view, the settings and counters.
The page shows; it does not steer (a replay plays its logged controls).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from services.console.server import ConsoleServer
from services.console.state import ConsoleState
from services.oracle.player.replay import ReplayResult, replay_session
from services.oracle.player.session import percept_from_record
from services.oracle.player.view import player_view
from shared.config import ConsoleConfig
from shared.signals import library_threads_without_signals

__all__ = ["ReplayConsole"]


class ReplayConsole:
    """Serve the console for a replay of ``log`` at its pace (``speed`` × real time).

    Parameters
    ----------
    log : path
        A session log (``--session-log``).
    config : ConsoleConfig
        Where to serve it (host, port) and the roll's length.
    token : str
    speed : float
        1.0 = the logged pace.
    """

    def __init__(self, log: str | Path, config: ConsoleConfig, *, token: str, speed: float = 1.0) -> None:
        self.log, self.speed = Path(log), float(speed)
        self.state = ConsoleState(roll_seconds=config.roll_seconds)
        self.state.source = "replay"
        self.result: ReplayResult | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._t0: float | None = None  # the log's time at the replay's start
        self._wall0 = time.monotonic()
        self._counters = {"events": 0, "percepts": 0, "notes": 0, "gated": 0}
        self.server = ConsoleServer(
            self.state, None, token=token, host=config.host, port=config.port, rate_hz=config.rate_hz, clock=self.now
        )
        self._thread = threading.Thread(target=self._run, name="musichal-replay-console", daemon=True)
        with library_threads_without_signals():  # Ctrl-C stays the main thread's
            self._thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    def now(self) -> float:
        """The replay's clock: the log's time of the moment shown."""
        if self._t0 is None:
            return 0.0
        return self._t0 + (time.monotonic() - self._wall0) * self.speed

    def _run(self) -> None:
        try:
            self.result = replay_session(self.log, observe=self._observe)
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.done.set()

    def _observe(self, record: dict[str, Any], live: Any, notes: list[Any]) -> None:
        if self._stop.is_set():
            raise InterruptedError("replay console closed")
        t = record.get("now_s", record.get("t"))
        if t is None:
            return
        if self._t0 is None:
            self._t0, self._wall0 = float(t), time.monotonic()
        self._stop.wait(max(0.0, (float(t) - self.now()) / self.speed))  # the logged pace
        state, counters = self.state, self._counters
        if record["kind"] == "percept" and not record.get("early"):
            percept = percept_from_record(record)
            onset = record.get("onset_t", record.get("onset_wall")) or float(t)  # "onset_wall": older logs
            counters["events"] += 1
            counters["percepts"] += 1
            counters["gated"] += bool(record.get("gated"))
            state.add_event(percept.event_id, onset)
            state.add_percept(percept.event_id, percept.descriptors, onset)
            view = player_view(live, float(t))
            view["verdicts"] = [[percept.event_id, bool(record.get("gated"))]]
            state.set_player(view, float(t))
        elif record["kind"] in ("tick", "control"):
            state.set_player(player_view(live, float(t)), float(t))
        for note in notes:
            counters["notes"] += 1
            state.add_note(note)
        controls = live.control_state()
        state.set_controls({**controls, "summary": f"replay of {self.log.name}"})
        state.set_stats(
            {
                "capture": {"counters": {"events": counters["events"]}},
                "oracle": {
                    "counters": {
                        "percepts": counters["percepts"],
                        "stage_learned": live.counters["learned"],
                        "stage_states": int(state.player.get("n_states") or 0),
                        "gated": counters["gated"],
                    }
                },
                "midi_out": {"counters": {"notes_received": counters["notes"]}},
            },
            float(t),
        )

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(timeout=5.0)
