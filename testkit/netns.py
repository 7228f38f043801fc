"""Network namespaces and ``ray start`` worker nodes, for the netns/cluster tests and ``benchmarks/remote_encoder.py``.

:class:`Namespace` is one network namespace joined to the host by one veth pair with private addresses
(``10.<net>.N.1`` on the host, ``10.<net>.N.2`` inside); names and the subnet include this process's pid, so parallel
runs do not collide. On exit every process still inside the namespace (only what the caller started there) is
killed by pid, and the link and namespace are deleted. A worker joins the head with its token
(``RAY_AUTH_MODE=token``, :func:`auth_token`) and is stopped by process group (:func:`stop_process_group`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["RAY_CLI", "Namespace", "auth_token", "ip", "netns_usable", "stop_process_group"]

_RAY_BIN = Path(sys.executable).with_name("ray")
#: this interpreter's own `ray` CLI (a venv without the console script still has the module)
RAY_CLI = (
    [str(_RAY_BIN)] if _RAY_BIN.is_file() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=check)


def netns_usable() -> str:
    """Empty when root and ``ip netns`` work here, else the reason they do not."""
    if os.geteuid() != 0:
        return "needs root for ip netns / veth"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`ip netns` unavailable: {error}"
    if probe.returncode != 0:
        return f"`ip netns` unavailable: {probe.stderr.strip()}"
    return ""


def auth_token() -> str:
    """The head's Ray auth token: ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` (empty when neither)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path.home() / ".ray" / "auth_token"
    return token or (path.read_text().strip() if path.is_file() else "")


def stop_process_group(process: subprocess.Popen, *, term_wait_s: float = 10.0) -> None:
    """SIGTERM the process group we started (``start_new_session=True``), wait up to ``term_wait_s``, then SIGKILL
    what is left in the group (raylet, workers)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=term_wait_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children left in the group (raylet, workers)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class Namespace:
    """A network namespace ``<prefix>ns<tag>`` with one veth pair (``<prefix>v<tag>h`` / ``<prefix>v<tag>n``) and
    addresses ``10.<net>.N.1`` (host) / ``10.<net>.N.2`` (namespace); a context manager that removes it all."""

    def __init__(self, prefix: str, net: int) -> None:
        tag = os.getpid() % 10000
        self.name, self.host_veth, self.ns_veth = f"{prefix}ns{tag}", f"{prefix}v{tag}h", f"{prefix}v{tag}n"
        subnet = 1 + os.getpid() % 250
        self.host_ip, self.ns_ip = f"10.{net}.{subnet}.1", f"10.{net}.{subnet}.2"

    def shape(self, rate: str) -> None:
        """Limit both directions of the link to ``rate`` (tc token bucket)."""
        for inside in (False, True):
            device = self.ns_veth if inside else self.host_veth
            cmd = [
                "tc",
                "qdisc",
                "add",
                "dev",
                device,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ]
            if inside:
                cmd = ["ip", "netns", "exec", self.name, *cmd]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=15)

    def __enter__(self) -> Namespace:
        try:
            ip("netns", "add", self.name)
            ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth)
            ip("link", "set", self.ns_veth, "netns", self.name)
            ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_veth)
            ip("link", "set", self.host_veth, "up")
            ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_veth)
            ip("netns", "exec", self.name, "ip", "link", "set", self.ns_veth, "up")
            ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for text in ip("netns", "pids", self.name, check=False).stdout.split():  # only what we started in it
            if text.isdigit():
                try:
                    os.kill(int(text), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        ip("link", "del", self.host_veth, check=False)
        ip("netns", "del", self.name, check=False)

    def exists(self) -> bool:
        return self.name in ip("netns", "list", check=False).stdout.split()
