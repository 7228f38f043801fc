"""The player: how MusicHal decides what to play from its memory (:mod:`services.oracle.memory`).

The live decision object (``live.LiveOracle``: events, percepts, ticks and controls in, notes out; the same live and
in replay), the walk over the memory (``walk.Player``), the three voices (``voices.Ensemble``), per-note
expression (``expression``), the tempo tracker (``tempo``), the echo-aware input gate (``echo``), the session log
(``session``) and its replay (``replay``).
"""

from services.oracle.player.echo import EchoGate
from services.oracle.player.live import LiveOracle
from services.oracle.player.replay import ReplayResult, replay_session
from services.oracle.player.session import SessionLog, read_session
from services.oracle.player.tempo import TempoTracker
from services.oracle.player.voices import Ensemble
from services.oracle.player.walk import Player

__all__ = [
    "EchoGate",
    "Ensemble",
    "LiveOracle",
    "Player",
    "ReplayResult",
    "SessionLog",
    "TempoTracker",
    "read_session",
    "replay_session",
]
