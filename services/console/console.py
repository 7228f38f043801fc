"""The console of a live stack: its state, the feed that fills it and the server that shows it, started and stopped
together (:meth:`services.stack.LiveStack.start` does it when ``[console] enabled``, ``musichal --console``)."""

from __future__ import annotations

from typing import Any

from services.console.feed import LiveFeed
from services.console.server import ConsoleServer, console_token
from services.console.state import ConsoleState
from shared.errors import MusicHalError

__all__ = ["LiveConsole"]


class LiveConsole:
    """State + feed + server for ``stack`` (started; its control hub applies the page's controls)."""

    def __init__(self, stack: Any, *, token: str | None = None) -> None:
        config = stack.config.console
        self.state = ConsoleState(roll_seconds=config.roll_seconds)
        self.feed = LiveFeed(stack, self.state, rate_hz=config.rate_hz)
        hub = stack.control
        if hub is None:
            raise MusicHalError("the console needs the stack's control hub")
        try:
            self.server = ConsoleServer(
                self.state,
                lambda name, value: hub.handle_named(name, value, "console"),
                token=token or console_token(config.token_file),
                host=config.host,
                port=config.port,
                rate_hz=config.rate_hz,
            )
        except BaseException:
            self.feed.close()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        """Pages are told the server is going away; the feed stops reading the rings."""
        self.server.close()
        self.feed.close()
