"""A restarted oracle keeps the session log it had written (Ray restarts the actor after a crash; its new log must not
truncate the old one)."""

from __future__ import annotations

from services.oracle.player.session import SessionLog, read_session
from shared.config import MusicHalConfig


def _session(path, *, restarted: bool, steps: int) -> SessionLog:
    log = SessionLog(path, config=MusicHalConfig(), restarted=restarted, clock=lambda: 1.0)
    for i in range(steps):
        log.write("step", i=i)
    log.close()
    return log


def test_a_restart_keeps_the_log_so_far_and_names_it_in_the_new_header(tmp_path):
    path = tmp_path / "s.jsonl"
    _session(path, restarted=False, steps=3)
    first = _session(path, restarted=True, steps=1)  # the oracle crashed and Ray restarted it
    second = _session(path, restarted=True, steps=2)  # and again
    kept_1 = tmp_path / "s.before-restart-1.jsonl"
    kept_2 = tmp_path / "s.before-restart-2.jsonl"
    assert first.previous == kept_1 and second.previous == kept_2
    assert [r["i"] for r in read_session(kept_1) if r["kind"] == "step"] == [0, 1, 2]  # the session before the crash
    assert [r["i"] for r in read_session(kept_2) if r["kind"] == "step"] == [0]
    now = read_session(path)
    assert now[0]["kind"] == "header" and now[0]["previous"] == str(kept_2)
    assert [r["i"] for r in now if r["kind"] == "step"] == [0, 1]


def test_a_new_session_replaces_the_file_as_record_does(tmp_path):
    path = tmp_path / "s.jsonl"
    _session(path, restarted=False, steps=3)
    log = _session(path, restarted=False, steps=1)
    assert log.previous is None and sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]
    assert read_session(path)[0]["previous"] is None
