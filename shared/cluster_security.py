"""Rules for joining a Ray cluster safely (pure: no Ray import)."""

from __future__ import annotations

import os
from pathlib import Path

from shared.errors import MusicHalError

__all__ = ["LOOPBACK_HOSTS", "require_token_auth"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _address_host(address: str) -> str:
    text = address.split("://", 1)[-1]
    if text.startswith("["):
        return text[: text.index("]") + 1]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def require_token_auth(address: str | None) -> None:
    """``--ray-address`` to a non-loopback head: refuse unless Ray token authentication is configured here
    (``RAY_AUTH_MODE`` not ``disabled`` and a token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``)."""
    if not address or address == "auto" or _address_host(address) in LOOPBACK_HOSTS:
        return
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if mode != "token" or not (token or (path.is_file() and path.read_text().strip())):
        raise MusicHalError(
            f"--ray-address {address} is not loopback and Ray token auth is not configured: set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the head's token (ray get-auth-token on the head)>"
        )
