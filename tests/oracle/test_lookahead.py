"""Notes leave ahead: a step on the player's own clock is decided ``generation.lookahead_ms`` before it sounds.

The decision object is driven on a fake clock the way the oracle actor drives it: it ticks when
``seconds_to_next`` says (or later, for a stalled actor) and hands every note it returns to midi_out at that
moment. Reactions (an onset's step, due at once) are stamped ``reaction`` and counted apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.oracle.memory.store import OracleMemory
from services.oracle.player.live import LiveOracle
from services.oracle.player.walk import MIN_LEAD_SHARE
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from tests.oracle.test_player import C_MAJOR, learn_melody, percept

EPS = 1e-9


def make_live(mode: str, *, lookahead_ms: float = 40.0, voices: bool = True) -> LiveOracle:
    config = MusicHalConfig().with_overrides(
        {
            "generation.mode": mode,
            "generation.lookahead_ms": lookahead_ms,
            "voices.bass": voices,
            "voices.comping": voices,
        }
    )
    return LiveOracle(config, OracleMemory(config, background=False))


def drive(live: LiveOracle, onsets: list[float], end: float, *, late_s=lambda: 0.0):
    """Run the actor's loop on a fake clock until ``end``: percepts at ``onsets`` (each answered at its onset),
    ticks when ``seconds_to_next`` says plus ``late_s()``. Returns ``(decided_at, note)`` for every note."""
    out = []
    now, pending = 0.0, list(onsets)
    while now < end:
        if pending and pending[0] <= now:
            t = pending.pop(0)
            i = len(onsets) - len(pending) - 1
            out += [(now, n) for n in live.on_percept(percept(100 + i, C_MAJOR[i % len(C_MAJOR)], t), now)]
            live.learn_queued()
        out += [(now, n) for n in live.tick(now)]
        wait = max(1e-4, live.seconds_to_next(now))
        if pending:
            wait = min(wait, max(1e-4, pending[0] - now))
        now += wait + late_s()
    return out


def split(decided):
    clocked = [(at, n) for at, n in decided if not n.stamps.get("reaction")]
    reactions = [(at, n) for at, n in decided if n.stamps.get("reaction")]
    return clocked, reactions


@pytest.mark.parametrize("mode", ["imitate", "lead"])
def test_clocked_steps_are_handed_over_a_lookahead_before_they_sound(mode):
    live = make_live(mode)
    learn_melody(live, C_MAJOR * 3)
    # the musician plays 3 s (imitate holds, stepping on the onsets), then rests (its own clock takes over)
    onsets = [1.0 + 0.3 * k for k in range(10)]
    clocked, reactions = split(drive(live, onsets, 8.0))
    lookahead = live.lookahead_s
    assert lookahead == pytest.approx(0.04)
    assert len(clocked) >= 10
    leads = np.array([n.t_on - at for at, n in clocked])
    assert leads.min() >= lookahead - EPS, f"a clocked note left {leads.min() * 1000:.2f} ms ahead"
    if mode == "imitate":
        assert reactions, "imitate answers the onsets"
        # reactions are due at once: they do not wait for the look-ahead
        assert max(n.t_on - at for at, n in reactions) < lookahead
        assert {n.voice for _, n in clocked} >= {"melody", "bass"}
    else:
        assert not reactions, "lead keeps its own pulse"


def test_a_stalled_clock_never_sends_a_step_for_the_past():
    """An actor ticking late (up to 2 look-aheads): a clocked step still leaves at least half the look-ahead."""
    live = make_live("lead")
    learn_melody(live, C_MAJOR * 3)
    rng = np.random.default_rng(3)
    lookahead = live.lookahead_s
    clocked, _ = split(drive(live, [], 10.0, late_s=lambda: float(rng.uniform(0.0, 2.0 * lookahead))))
    leads = np.array([n.t_on - at for at, n in clocked])
    assert len(leads) >= 20
    assert leads.min() >= MIN_LEAD_SHARE * lookahead - EPS
    assert np.any(leads >= lookahead - EPS), "a step decided too late sounds a whole look-ahead after its decision"


def test_lookahead_is_one_setting():
    live = make_live("lead", lookahead_ms=120.0, voices=False)
    learn_melody(live, C_MAJOR * 3)
    clocked, _ = split(drive(live, [], 5.0))
    leads = np.array([n.t_on - at for at, n in clocked])
    assert len(leads) >= 10 and np.allclose(leads, 0.12)
    # a control change (density) applies at the next step decided: the step already decided keeps its time
    at_change = clocked[-1][0] + 1e-3
    live.apply_control("density", 2.0, at_change)
    after, _ = split(drive_from(live, at_change, at_change + 2.0))
    first = after[0][1]
    assert first.t_off - first.t_on == pytest.approx(0.125)  # learned duration 0.25 s at density 2
    with pytest.raises(ParameterError):
        MusicHalConfig().with_overrides({"generation.lookahead_ms": 0.0})


def drive_from(live: LiveOracle, start: float, end: float):
    out, now = [], start
    while now < end:
        out += [(now, n) for n in live.tick(now)]
        now += max(1e-4, live.seconds_to_next(now))
    return out


def test_steps_after_a_percept_are_decided_at_the_clock_time_and_replay_identically(tmp_path):
    """Taking in a percept takes time: with the live clock given, the steps due after it are decided at the clock's
    time (a clocked step never leaves less than half the look-ahead, whenever the percepts come), and the session
    log replays to the same notes."""
    from services.oracle.player.replay import replay_session
    from services.oracle.player.session import SessionLog, make_stage

    config = MusicHalConfig().with_overrides({"generation.mode": "lead", "generation.seed": 2})
    fake = {"t": 0.0}
    intake_s = 0.03  # the clock has moved on by the time the percept is taken in
    log = SessionLog(tmp_path / "s.jsonl", config=config, clock=lambda: fake["t"])
    live = LiveOracle(config, make_stage(config), session=log, clock=lambda: fake["t"] + intake_s)
    decided = []
    for k in range(120):  # percepts every 50 ms decide every step (no tick in between)
        fake["t"] = t = 0.05 * k
        decided += [(t + intake_s, n) for n in live.on_percept(percept(k, C_MAJOR[k % 14], t), t)]
        live.learn_queued()
    log.write("stop")
    log.close()
    clocked, _ = split(decided)
    assert len(clocked) >= 10
    assert min(n.t_on - at for at, n in clocked) >= MIN_LEAD_SHARE * live.lookahead_s - EPS
    result = replay_session(tmp_path / "s.jsonl")
    assert result.notes and result.identical
