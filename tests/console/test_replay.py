"""``musichal replay LOG --console``: the logged session shown at its pace (its notes, heard onsets and the player),
the same decisions as without the console, and a page that shows but does not steer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from services.console.replay import ReplayConsole
from services.oracle.player.live import LiveOracle
from services.oracle.player.replay import replay_session
from services.oracle.player.session import SessionLog, make_stage
from shared.config import MusicHalConfig
from shared.messages import EventDescriptors, Percept
from testkit.waiting import wait_until

TOKEN = "r" * 24


def write_log(path) -> float:
    """A 3-second session: 10 onsets, a control change, the player's own steps; returns its length (s)."""
    config = MusicHalConfig().with_overrides({"generation.seed": 2})
    clock = {"t": 100.0}
    log = SessionLog(path, config=config, clock=lambda: clock["t"])
    live = LiveOracle(config, make_stage(config), session=log)
    rng = np.random.default_rng(1)
    t = 100.0
    for i in range(10):
        clock["t"] = t
        d = EventDescriptors(
            onset_s=0.0,
            duration_s=0.3,
            rms=0.1,
            velocity=70,
            f0_hz=0.0,
            f0_confidence=0.0,
            chroma_peaks=((i * 7) % 12,),
            notes=((60 + (i * 7) % 12, 0.0, 0.3, 70, 0.0, 0.0),),
        )
        p = Percept(event_id=i, token=i % 3, features=rng.standard_normal(22).astype(np.float32), descriptors=d)
        live.on_percept(p, t, onset_t=t - 0.03)
        live.learn_queued()
        if i == 6:
            live.apply_control("mode", "lead", t)
        live.tick(t + 0.15)
        t += 0.3
    clock["t"] = t
    log.write("stop")
    log.close()
    return t - 100.0


def test_replay_console_shows_the_session_at_its_pace_and_only_shows(tmp_path):
    log = tmp_path / "s.jsonl"
    length_s = write_log(log)
    config = MusicHalConfig().with_overrides({"console.port": 0}).console
    speed = 2.0
    started = time.monotonic()
    console = ReplayConsole(log, config, token=TOKEN, speed=speed)
    try:
        assert console.done.wait(30) and console.error is None
        took = time.monotonic() - started
        auth = {"Authorization": f"Bearer {TOKEN}"}
        base = f"http://127.0.0.1:{console.server.port}"
        with urllib.request.urlopen(urllib.request.Request(base + "/api/state", headers=auth), timeout=10) as answer:
            state = json.loads(answer.read())
        post = urllib.request.Request(
            base + "/api/control", data=json.dumps({"name": "mode", "value": "imitate"}).encode(), headers=auth
        )
        try:
            urllib.request.urlopen(post, timeout=10)
            refused = None
        except urllib.error.HTTPError as error:
            refused = (error.code, json.loads(error.read())["error"])
    finally:
        console.close()
    assert took >= length_s / speed * 0.9  # at the logged pace (here twice as fast), not all at once
    plain = replay_session(log)
    assert console.result is not None and console.result.identical and plain.identical
    assert [n.note_id for n in console.result.notes] == [n.note_id for n in plain.notes]  # same decisions
    assert state["source"] == "replay"
    assert {n["id"] for n in state["played"]} == {n.note_id for n in plain.notes} and state["played"]
    assert [h["pitches"] for h in state["heard"]] == [[60 + (i * 7) % 12] for i in range(10)]
    assert all(h["gated"] is False for h in state["heard"])
    assert state["controls"]["mode"] == "lead" and state["player"]["n_states"] >= 10
    assert state["health"]["events"] == 10 and state["health"]["notes"] == len(plain.notes)
    assert refused is not None and refused[0] == 400 and "only shows" in refused[1]


def test_musichal_replay_console_prints_its_url_serves_and_stops_on_ctrl_c(tmp_path):
    log = tmp_path / "s.jsonl"
    write_log(log)
    repo = Path(__file__).resolve().parent.parent.parent
    env = dict(os.environ, HOME=str(tmp_path), PYTHONUNBUFFERED="1")  # its token file under this HOME
    out = open(tmp_path / "out.txt", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "launch", "replay", str(log), "--console", "--console-port", "0"],
        cwd=repo,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:

        def url() -> str | None:
            out.seek(0)
            lines = [line for line in out.read().splitlines() if "console on http://127.0.0.1:" in line]
            return lines[0].split("console on ")[1].split(" ")[0] if lines else None

        assert wait_until(lambda: url() is not None or process.poll() is not None, 60), "no URL printed"
        assert process.poll() is None, open(tmp_path / "out.txt").read()
        token = (tmp_path / ".config" / "musichal" / "console-token").read_text().strip()
        assert url().endswith(f"/?token={token}")
        api = url().split("/?")[0] + "/api/state"
        with urllib.request.urlopen(urllib.request.Request(api, headers={"Authorization": f"Bearer {token}"})) as a:
            assert json.loads(a.read())["source"] == "replay"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        out.close()
