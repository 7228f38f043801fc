"""A JACK dummy server for machines without audio hardware (demo, benchmarks, tests).

``jackd --no-realtime -d dummy -r 48000 -p 256`` gives real-time-paced JACK audio ports (PyAudio's JACK host API) and
JACK MIDI ports (python-rtmidi's JACK API) with no sound card. The server's name follows ``JACK_DEFAULT_SERVER`` like
every JACK client's (the tests run their own, named, servers).

``sync=True`` adds ``--sync``: the server starts a period only once every client has finished the previous one. In
JACK2's default asynchronous mode, on a loaded machine, a JACK MIDI reader behind the live stack received garbled
MIDI: the 122-message start-up burst as 122 copies of its first message, note-offs with another note's bytes (the
encoder-kill test: 6 of 6 runs on async servers, one with the reader SCHED_FIFO; none in 8 runs with ``--sync``).
The price: a killed client stalls a sync server until it is dropped (measured alone: 0.6 s with JACK's default 500 ms
client timeout, 50 s with 5 s; under load a restarted midi_out's panic came 3.3-4.3 s after its restart).

>>> with dummy_jack_server() as server:   # doctest: +SKIP
...     print(server.started_here)
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

from shared.errors import DeviceError

__all__ = ["JACK_DUMMY_COMMAND", "jack_running", "start_dummy_jack", "stop_jack", "dummy_jack_server", "DummyJack"]

JACK_DUMMY_COMMAND = ["jackd", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
JACK_SYNC_OPTION = "--sync"


def jack_running() -> bool:
    """True when a JACK server answers (never starts one)."""
    if shutil.which("jack_wait") is None:
        return False
    result = subprocess.run(["jack_wait", "--check"], capture_output=True, text=True, timeout=10)
    return "running" in result.stdout and "not running" not in result.stdout


def start_dummy_jack(
    *, log_path: str | None = None, timeout_s: float = 15.0, sync: bool = False
) -> subprocess.Popen | None:
    """Start a JACK dummy server unless one runs; returns the process started here (None if one was running).

    ``sync``: synchronous mode (see the module's notes)."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        raise DeviceError("jackd is not installed (Debian/Ubuntu: apt-get install jackd2)")
    if jack_running():
        return None
    scrub_server_registry()
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    command = JACK_DUMMY_COMMAND[:2] + [JACK_SYNC_OPTION] + JACK_DUMMY_COMMAND[2:] if sync else JACK_DUMMY_COMMAND
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ready = subprocess.run(["jack_wait", "--wait", "--timeout", str(int(timeout_s))], capture_output=True, text=True)
    if "available" not in ready.stdout:
        stop_jack(process)
        raise DeviceError(f"the JACK dummy server did not come up: {ready.stdout.strip() or ready.stderr.strip()}")
    return process


def stop_jack(process: subprocess.Popen | None) -> None:
    """Stop a server started by :func:`start_dummy_jack` (None: nothing to do)."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    scrub_server_registry()


_REGISTRY = "/dev/shm/jack-shm-registry"
_REGISTRY_MAGIC = b"KCAJ"
_SERVER_SLOTS, _SLOT_START, _SLOT_BYTES = 8, 24, 264  # JACK2's jack_shm_header_t: 8 x {pid_t pid; char name[257]}


def _is_jackd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"jackd" in cmdline.read().split(b"\0", 1)[0]
    except OSError:
        return False


def scrub_server_registry(path: str = _REGISTRY) -> int:
    """Free the JACK2 server-registry slots of servers that are gone; returns how many were freed.

    A jackd stopped by a signal leaves its slot in libjack's shared registry (8 slots). A slot whose pid is dead is
    reused, but a slot whose pid was recycled by any other process blocks forever: after enough servers on a busy
    machine jackd refuses to start ("Too many servers already active"; measured here after a day of test runs).
    A slot is freed only when its pid is not a running jackd (Linux; nothing happens elsewhere).
    """
    import struct

    try:
        with open(path, "r+b") as registry:
            header = registry.read(_SLOT_START + _SERVER_SLOTS * _SLOT_BYTES)
            if len(header) < _SLOT_START + _SERVER_SLOTS * _SLOT_BYTES or header[:4] != _REGISTRY_MAGIC:
                return 0
            freed = 0
            for slot in range(_SERVER_SLOTS):
                offset = _SLOT_START + slot * _SLOT_BYTES
                pid = struct.unpack_from("<i", header, offset)[0]
                if pid > 0 and not _is_jackd(pid) and header[offset + 4 : offset + 9] == b"jack-":
                    registry.seek(offset)
                    registry.write(b"\0" * _SLOT_BYTES)
                    freed += 1
            return freed
    except OSError:
        return 0


class DummyJack:
    def __init__(self, process: subprocess.Popen | None) -> None:
        self.process = process

    @property
    def started_here(self) -> bool:
        return self.process is not None


@contextlib.contextmanager
def dummy_jack_server(*, log_path: str | None = None) -> Iterator[DummyJack]:
    """Use a running JACK server, or start a dummy one for the block and stop it after."""
    process = start_dummy_jack(log_path=log_path)
    try:
        yield DummyJack(process)
    finally:
        stop_jack(process)
