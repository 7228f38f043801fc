"""The console's web server (aiohttp), in the driver's process on its own thread and event loop.

It only reads :class:`~services.console.state.ConsoleState` and hands control changes to ``apply`` (the control
hub, run on a worker thread): nothing here is on the path from an onset to a note. Every request and WebSocket must
carry the token (``?token=``, ``Authorization: Bearer``, or the cookie the page's first load sets; compared in
constant time), else 401.

Routes: ``GET /`` the page; ``GET /static/<file>``; ``GET /api/state`` (the current frame, the control table and
what the page reported drawn, JSON); ``POST /api/control`` with ``{"name": ..., "value": ...}`` (200 with the
effective change, 400 with a one-line reason for an unknown name or a bad value — kept in the refusals like an OSC
or MIDI one); ``GET /ws`` a WebSocket: a ``hello`` with the control table, then a frame ``rate_hz`` times a second;
the page sends ``{"type": "control", "name", "value", "id"}`` (answered by a ``result``) and ``{"type": "drawn",
"ids": [...]}`` (the notes it has drawn: :meth:`ConsoleState.page_drew`).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from services.console.state import ConsoleState, control_specs
from shared.errors import MusicHalError, ParameterError
from shared.signals import library_threads_without_signals

__all__ = ["ConsoleServer", "console_token", "check_console_address", "COOKIE", "STATIC_FILES"]

COOKIE = "musichal_console"
#: the files the page is made of (services/console/static, shipped in the wheel)
STATIC_FILES = {"index.html": "text/html", "console.js": "application/javascript", "console.css": "text/css"}
#: a one-line 401 body
UNAUTHORIZED = "the console needs its token: open the URL musichal printed (.../?token=...)"


def console_token(path: str | os.PathLike) -> str:
    """The console's token from ``path``; created (random, mode 0600, its folder 0700) when the file is missing.
    Kept, so a page left open reconnects after the stack restarts; delete the file for a new one."""
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    except OSError as error:
        raise ParameterError(f"cannot read the console token {path}: {error.strerror}") from None
    if token:
        if len(token) < 16:
            raise ParameterError(f"the console token in {path} is shorter than 16 characters: delete the file")
        return token
    token = secrets.token_urlsafe(24)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except OSError as error:
        raise ParameterError(f"cannot write the console token {path}: {error.strerror}") from None
    return token


def check_console_address(host: str, port: int) -> None:
    """A one-line ParameterError now when ``host:port`` cannot be listened on (taken, not this machine's), so a
    stack started with the console fails before Ray and the actors start, not after."""
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ParameterError(f"cannot serve the console on {host}:{port}: {error.strerror or error}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ParameterError(f"cannot serve the console on {host}:{port}: {error.strerror or error}") from None


def _static(name: str) -> bytes:
    return resources.files("services.console").joinpath("static", name).read_bytes()


class ConsoleServer:
    """The console's HTTP + WebSocket server on ``host:port`` (port 0: a free one, see :attr:`port`).

    Parameters
    ----------
    state : ConsoleState
        What the page shows (read only here).
    apply : callable, optional
        ``apply(name, value) -> effective changes`` for a control from the page or the API; raises ParameterError
        (400) when refused. None: every control is refused (a replay shows, it does not steer).
    token : str
        Required on every request.
    refresh : callable, optional
        Called (on the server's thread pool) before ``GET /api/state`` answers, to bring the state up to date.
    """

    def __init__(
        self,
        state: ConsoleState,
        apply: Callable[[str, Any], dict[str, Any]] | None,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 8765,
        rate_hz: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        if not token or len(token) < 16:
            raise ParameterError("the console token must have at least 16 characters")
        self.state, self.apply, self.token = state, apply, token
        self.host, self.port = host, int(port)
        self.period_s = 1.0 / float(rate_hz)
        self.clock = clock
        self.refresh = refresh
        self.counters = {"requests": 0, "unauthorized": 0, "websockets": 0, "frames_sent": 0, "controls": 0}
        self._sockets: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="musichal-console", daemon=True)
        with library_threads_without_signals():  # Ctrl-C and SIGTERM stay the main thread's (its pool inherits it)
            self._thread.start()
        if not self._started.wait(timeout=30.0):
            raise MusicHalError("the console server did not start within 30 s")
        if self._error is not None:
            raise ParameterError(f"cannot serve the console on {host}:{port}: {self._error}") from None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    # ------------------------------------------------------------------ the server's thread
    def _run(self) -> None:
        try:
            from aiohttp import web
        except ImportError as error:  # told in one line by __init__
            self._error = error
            self._started.set()
            return
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        @web.middleware
        async def auth(request: Any, handler: Any) -> Any:
            self.counters["requests"] += 1
            if not self._authorized(request):
                self.counters["unauthorized"] += 1
                return web.json_response({"error": UNAUTHORIZED}, status=401)
            return await handler(request)

        app = web.Application(middlewares=[auth], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._file)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_post("/api/control", self._api_control)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            loop.run_until_complete(site.start())
            self.port = int(self._runner.addresses[0][1])
        except BaseException as error:  # the port is taken, the host is not ours …
            self._error = error
            self._started.set()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        from aiohttp import WSCloseCode

        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"musichal stopped")
        await self._runner.cleanup()

    def close(self) -> None:
        """Stop serving (open pages are told the server is going away; they reconnect when it is back)."""
        loop = self._loop
        if loop is not None and self._thread.is_alive() and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------ token
    def _authorized(self, request: Any) -> bool:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        header = request.headers.get("Authorization", "")
        if not given and header.startswith("Bearer "):
            given = header[len("Bearer ") :].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    # ------------------------------------------------------------------ routes
    async def _page(self, request: Any) -> Any:
        from aiohttp import web

        response = web.Response(body=_static("index.html"), content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        # the page's own requests (its script, the WebSocket) carry the token as a same-site cookie
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    async def _file(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["name"]
        if name not in STATIC_FILES:
            return web.json_response({"error": f"no file {name!r}"}, status=404)
        body = _static(name)
        return web.Response(body=body, content_type=STATIC_FILES[name], headers={"Cache-Control": "no-store"})

    def _state(self) -> dict[str, Any]:
        if self.refresh is not None:
            self.refresh()
        frame = self.state.frame(self.clock())
        frame["table"] = control_specs(frame["controls"])
        frame["page"] = {"websockets": len(self._sockets), "drawn": self.state.drawn()}
        frame["server"] = dict(self.counters)
        return frame

    async def _api_state(self, request: Any) -> Any:
        from aiohttp import web

        frame = await asyncio.get_running_loop().run_in_executor(None, self._state)
        return web.Response(body=orjson.dumps(frame), content_type="application/json")

    def _control(self, name: Any, value: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for one control change; runs on a worker thread (the hub waits for the actors)."""
        self.counters["controls"] += 1
        if self.apply is None:
            return 400, {"error": "this console only shows (a replay plays its logged controls)"}
        try:
            effective = self.apply(name, value)
        except ParameterError as error:
            return 400, {"error": str(error)}
        except Exception as error:  # an actor did not answer: the change was not applied everywhere
            return 503, {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        return 200, {"ok": True, "effective": {k: list(v) if isinstance(v, tuple) else v for k, v in effective.items()}}

    async def _api_control(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": 'the body must be JSON: {"name": ..., "value": ...}'}, status=400)
        if not isinstance(body, dict) or "name" not in body:
            return web.json_response({"error": 'the body must be {"name": ..., "value": ...}'}, status=400)
        status, answer = await asyncio.get_running_loop().run_in_executor(
            None, self._control, body["name"], body.get("value")
        )
        return web.Response(body=orjson.dumps(answer), status=status, content_type="application/json")

    async def _websocket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.counters["websockets"] += 1
        sender = asyncio.get_running_loop().create_task(self._send_frames(ws))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._on_message(ws, message.data)
        finally:
            sender.cancel()
            self._sockets.discard(ws)
        return ws

    async def _send_frames(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        frame = self.state.frame(self.clock())
        await ws.send_str(orjson.dumps({"type": "hello", "table": control_specs(frame["controls"])}).decode())
        while not ws.closed:
            started = loop.time()
            frame = self.state.frame(self.clock())
            frame["type"] = "frame"
            try:
                await ws.send_str(orjson.dumps(frame).decode())
            except (ConnectionError, RuntimeError):
                return
            self.counters["frames_sent"] += 1
            await asyncio.sleep(max(0.0, self.period_s - (loop.time() - started)))

    async def _on_message(self, ws: Any, data: str) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "drawn":
            ids = [i for i in message.get("ids") or () if isinstance(i, int)]
            self.state.page_drew(ids, self.clock())
        elif kind == "control":
            status, answer = await asyncio.get_running_loop().run_in_executor(
                None, self._control, message.get("name"), message.get("value")
            )
            result = {"type": "result", "id": message.get("id"), "status": status, **answer}
            await ws.send_str(orjson.dumps(result).decode())
