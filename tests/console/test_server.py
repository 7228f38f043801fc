"""The console's server without a stack: the token on every route, the HTTP API (state, control: 400 with one line,
refusals kept whatever their source), the WebSocket (hello with the table, frames, controls, drawn reports), loopback
by default, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import urllib.error
import urllib.request

import psutil
import pytest

from services.console.server import COOKIE, ConsoleServer, console_token
from services.console.state import ConsoleState
from services.control.hub import ControlHub
from shared.config import MusicHalConfig
from shared.controls import CONTROLS
from shared.errors import ParameterError
from testkit.waiting import wait_until

TOKEN = "t" * 20 + "-test-token"


@pytest.fixture
def served():
    applied: list[tuple] = []
    hub = ControlHub(MusicHalConfig(), lambda name, value: applied.append((name, value)))
    state = ConsoleState()
    state.set_controls(hub.snapshot())
    server = ConsoleServer(
        state,
        lambda name, value: hub.handle_named(name, value, "console"),
        token=TOKEN,
        port=0,
        refresh=lambda: state.set_controls(hub.snapshot()),
    )
    try:
        yield server, hub, state, applied
    finally:
        server.close()


def request(server, path, *, body=None, headers=None):
    """(status, headers, body bytes) of one request; no token unless the path or headers carry it."""
    url = f"http://127.0.0.1:{server.port}{path}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_the_token_is_made_private_once_and_kept(tmp_path):
    path = tmp_path / "cfg" / "console-token"
    token = console_token(path)
    assert len(token) >= 16 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert console_token(path) == token  # the same URL after a restart: an open page reconnects
    path.write_text("short\n")
    with pytest.raises(ParameterError, match="shorter than 16 characters: delete the file"):
        console_token(path)


def test_every_route_is_refused_without_the_token(served):
    server, hub, _, applied = served
    for path in ("/", "/static/console.js", "/api/state", "/ws", "/nothing"):
        for suffix in ("", "?token=wrong" + "x" * 20):
            status, _, body = request(server, path + suffix)
            assert status == 401, (path, suffix)
            assert "needs its token" in json.loads(body)["error"]
    status, _, _ = request(server, "/api/control", body={"name": "density", "value": 2.0})
    assert status == 401
    status, _, _ = request(
        server, "/api/control", body={"name": "density", "value": 2.0}, headers={"Cookie": f"{COOKIE}=nope"}
    )
    assert status == 401
    assert applied == [] and hub.snapshot()["density"] == 1.0  # nothing refused was applied
    assert server.counters["unauthorized"] == 12


def test_the_page_loads_with_the_token_and_its_cookie_opens_the_rest(served):
    server, *_ = served
    status, headers, body = request(server, f"/?token={TOKEN}")
    assert status == 200 and b"<title>MusicHal console</title>" in body
    cookie = headers["Set-Cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = request(server, "/static/console.js", headers={"Cookie": f"{COOKIE}={TOKEN}"})
    assert status == 200 and b"new WebSocket" in body and "javascript" in headers["Content-Type"]
    status, _, body = request(server, "/api/state", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    state = json.loads(body)
    assert {c["name"] for c in state["table"]} == {n for n, row in CONTROLS.items() if row.performer}
    assert state["controls"]["mode"] == "imitate" and state["refusals"] == []
    assert request(server, f"/static/secret.py?token={TOKEN}")[0] == 404


def test_api_control_applies_or_answers_400_with_one_line_and_keeps_every_refusal(served):
    server, hub, _, applied = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = request(server, "/api/control", body={"name": "density", "value": 2.5}, headers=auth)
    assert status == 200 and json.loads(body) == {"ok": True, "effective": {"density": 2.5}}
    assert applied == [("density", 2.5)] and hub.snapshot()["density"] == 2.5
    bad = [
        ({"name": "loudness", "value": 1}, "unknown control 'loudness'"),
        ({"name": "density", "value": 9}, "density must be in 0..4, got 9.0"),
        ({"name": "mode", "value": "loud"}, "mode must be one of imitate, contrast, lead, got 'loud'"),
        ({"name": 3}, "a control name is text, got 3"),
        ({"value": 3}, 'the body must be {"name": ..., "value": ...}'),
        (b"{not json", "the body must be JSON"),
    ]
    for payload, reason in bad:
        status, _, body = request(server, "/api/control", body=payload, headers=auth)
        error = json.loads(body)["error"]
        assert status == 400 and reason in error and "\n" not in error, (payload, error)
    assert applied == [("density", 2.5)]  # nothing refused was applied
    hub.handle_osc("/musichal/density", 7.0)  # a refusal from another source shows too
    status, _, body = request(server, "/api/state", headers=auth)
    refusals = json.loads(body)["refusals"]
    assert [(r["source"], r["control"]) for r in refusals] == [
        ("console", "loudness"),
        ("console", "density"),
        ("console", "mode"),
        ("console", "3"),
        ("osc", "density"),
    ]
    assert "density must be in 0..4, got 7.0" in refusals[-1]["reason"]


async def _websocket_session(server, hub, state):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{server.port}/ws?token={TOKEN}") as ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello["type"] == "hello"
            assert {c["name"] for c in hello["table"]} == {n for n, row in CONTROLS.items() if row.performer}
            frames = []
            while len(frames) < 3:
                message = json.loads((await ws.receive(timeout=10)).data)
                if message["type"] == "frame":
                    frames.append(message)
            assert [f["seq"] for f in frames] == sorted({f["seq"] for f in frames})  # new frames, in order
            assert frames[-1]["t"] > frames[0]["t"]
            await ws.send_str(json.dumps({"type": "control", "name": "mode", "value": "lead", "id": 7}))
            await ws.send_str(json.dumps({"type": "control", "name": "density", "value": -1, "id": 8}))
            await ws.send_str(json.dumps({"type": "drawn", "ids": [41, 42]}))
            results = {}
            while len(results) < 2:
                message = json.loads((await ws.receive(timeout=10)).data)
                if message["type"] == "result":
                    results[message["id"]] = message
            assert results[7]["status"] == 200 and results[7]["effective"] == {"mode": "lead"}
            assert results[8]["status"] == 400 and "density must be in 0..4" in results[8]["error"]
        async with session.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:  # no token
            pass
    return True


def test_the_websocket_sends_frames_takes_controls_and_drawn_reports(served):
    import aiohttp

    server, hub, state, _ = served
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(_websocket_session(server, hub, state))
    assert refused.value.status == 401  # the second connection, without the token
    assert hub.snapshot()["mode"] == "lead"
    assert wait_until(lambda: state.drawn_at(42) is not None, timeout_s=10)


def test_loopback_only_by_default_and_a_taken_port_is_one_line(served):
    server, *_ = served
    assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/?token={TOKEN}"
    mine = [c for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    console = [c for c in mine if c.laddr.port == server.port]
    assert [c.laddr.ip for c in console] == ["127.0.0.1"]
    with pytest.raises(ParameterError, match=f"cannot serve the console on 127.0.0.1:{server.port}: ") as error:
        ConsoleServer(ConsoleState(), None, token=TOKEN, port=server.port)
    assert "\n" not in str(error.value)


def test_a_console_host_exposes_it_deliberately_still_with_the_token():
    server = ConsoleServer(ConsoleState(), None, token=TOKEN, host="0.0.0.0", port=0)
    try:
        mine = [c for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.ip for c in mine if c.laddr.port == server.port] == ["0.0.0.0"]
        assert request(server, "/api/state")[0] == 401
        assert request(server, f"/api/state?token={TOKEN}")[0] == 200
    finally:
        server.close()


def test_the_servers_threads_never_take_ctrl_c(served):
    import signal
    import threading

    from shared.signals import threads_taking

    server, *_ = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(server, "/api/control", body={"name": "density", "value": 2.0}, headers=auth)[0] == 200
    assert request(server, "/api/state", headers=auth)[0] == 200  # its worker threads exist now
    takers = threads_taking(signal.SIGINT)
    assert threading.get_native_id() in takers  # the main thread does (this process' other threads are pytest's)
    console = {t.native_id for t in threading.enumerate() if t.name == "musichal-console"}
    assert console and not console & set(takers)
    workers = {t.native_id for t in threading.enumerate() if t.name.startswith("asyncio_")}
    assert workers and not workers & set(takers), takers


def test_a_taken_console_port_is_found_before_the_stack_starts(served):
    from services.console.server import check_console_address

    server, *_ = served
    with pytest.raises(ParameterError, match=f"cannot serve the console on 127.0.0.1:{server.port}: ") as error:
        check_console_address("127.0.0.1", server.port)
    assert "\n" not in str(error.value)
    check_console_address("127.0.0.1", 0)  # any free port: nothing to check
    with pytest.raises(ParameterError, match="cannot serve the console on no-such-host.invalid:8765"):
        check_console_address("no-such-host.invalid", 8765)
