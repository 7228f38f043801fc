"""Shared-memory audio ring: one writer, many readers, absolute 64-bit sample indices, explicit overruns.

Layout of the segment (``multiprocessing.shared_memory``)::

    bytes 0..63   header, eight little-endian uint64 words
                  [0] magic  [1] capacity (samples)  [2] sample rate (Hz)
                  [3] reserved_end: samples the writer has claimed (written before the data)
                  [4] committed: samples fully written (written after the data)
                  [5] writer_closed flag  [6] item size in bytes (4: float32 audio, 1: uint8 message bytes)
                  [7] waiters flag: set by a reader before it sleeps, cleared by the writer when it wakes them
    bytes 64..    float32 samples, ``capacity`` of them; absolute sample ``i`` lives at ``i % capacity``

A reader asks for ``[start, end)`` by absolute index. It is *available* when ``end <= committed``; it is
*overrun* when ``start < reserved_end - capacity`` (the writer has claimed, maybe overwritten, those slots).
Zero-copy windows are validated again after use (:meth:`RingWindow.check_valid`), so data overwritten while
it was being read is reported, never used. Readers block on a Linux futex on the low 32 bits of the
committed counter (woken by every
commit that finds the waiters flag set, so a writer with no sleeping reader makes no system call) and fall
back to short timed waits elsewhere.

Only the creating process unlinks the segment (explicitly, or at its exit through ``atexit``). No process
registers rings with Python's ``resource_tracker`` (it would unlink them when any attaching process exits, and
warns spuriously once Ray shares the process); instead the creator's pid is part of every ring's name and
:func:`remove_stale_rings` deletes segments whose creator is dead (``services/stack.py`` calls it at start), so even a
SIGKILLed owner leaks nothing for long.

>>> ring = AudioRing.create(capacity_samples=1024, sample_rate_hz=48000)
>>> ring.write(np.arange(300, dtype=np.float32))
300
>>> ring.read(10, 13).tolist()
[10.0, 11.0, 12.0]
>>> ring.close(); ring.unlink()
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from shared.errors import ParameterError, RingBufferError, RingOverrunError, RingTimeoutError

__all__ = ["AudioRing", "RingReader", "RingWindow", "RING_NAME_PREFIX", "remove_stale_rings"]

RING_NAME_PREFIX = "musichal_ring_"
_MAGIC = 0x4D55534943484131  # "MUSICHA1"
_HEADER_BYTES = 64
_H_MAGIC, _H_CAPACITY, _H_RATE, _H_RESERVED, _H_COMMITTED, _H_CLOSED, _H_ITEMSIZE, _H_WAITERS = range(8)
assert (_H_RESERVED, _H_COMMITTED, _H_WAITERS) == (3, 4, 7)  # AudioRing.write uses these as literals
_DTYPES = {4: np.dtype(np.float32), 1: np.dtype(np.uint8)}
_MAX_SLEEP_S = 0.02  # a sleeping reader re-checks at least this often, so a missed wake-up costs at most this

_attach_lock = threading.Lock()


# --------------------------------------------------------------------------------------------- futex
class _Futex:
    """Linux futex wait/wake on a 32-bit word in shared memory (inter-process, not FUTEX_PRIVATE)."""

    _SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}
    _FUTEX_WAIT, _FUTEX_WAKE = 0, 1

    class _Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def __init__(self) -> None:
        self.available = False
        if not sys.platform.startswith("linux"):
            return
        number = self._SYS_FUTEX.get(os.uname().machine)
        if number is None:
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._syscall = libc.syscall
        except (OSError, AttributeError):
            return
        self._syscall.restype = ctypes.c_long
        self._number = number
        self.available = True

    def wait(self, address: int, expected: int, timeout_s: float) -> None:
        timeout_s = max(0.0, timeout_s)
        spec = self._Timespec(int(timeout_s), int((timeout_s % 1.0) * 1e9))
        self._syscall(
            ctypes.c_long(self._number),
            ctypes.c_void_p(address),
            ctypes.c_int(self._FUTEX_WAIT),
            ctypes.c_int(expected),
            ctypes.byref(spec),
            None,
            ctypes.c_int(0),
        )

    def wake(self, address: int) -> None:
        self._syscall(self._number, ctypes.c_void_p(address), self._FUTEX_WAKE, 2**31 - 1, None, None, 0)


_FUTEX = _Futex()


def _open_untracked(name: str, *, create: bool = False, size: int = 0) -> shared_memory.SharedMemory:
    """Create or attach a segment without registering it with this process's resource_tracker."""
    try:
        return shared_memory.SharedMemory(name=name, create=create, size=size, track=False)  # type: ignore[call-arg]
    except TypeError:  # Python < 3.13 has no ``track``
        pass
    with _attach_lock:
        original = resource_tracker.register

        def _skip(rname: str, rtype: str) -> None:
            if rtype != "shared_memory":
                original(rname, rtype)

        resource_tracker.register = _skip  # type: ignore[assignment]
        try:
            return shared_memory.SharedMemory(name=name, create=create, size=size)
        finally:
            resource_tracker.register = original  # type: ignore[assignment]


def _unlink_untracked(name: str) -> None:
    try:
        from _posixshmem import shm_unlink  # type: ignore[import-not-found]
    except ImportError:  # Windows: the segment goes away with its last handle
        return
    try:
        shm_unlink("/" + name.lstrip("/"))
    except FileNotFoundError:
        pass


def remove_stale_rings(*, shm_dir: str = "/dev/shm") -> list[str]:
    """Delete MusicHal ring segments whose creating process no longer exists; returns their names."""
    removed = []
    try:
        names = os.listdir(shm_dir)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(RING_NAME_PREFIX):
            continue
        parts = name[len(RING_NAME_PREFIX) :].split("_")
        pid_text = parts[1] if parts and parts[0] == "msg" and len(parts) > 1 else parts[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # creator alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _unlink_untracked(name)
        removed.append(name)
    return removed


# --------------------------------------------------------------------------------------------- window
@dataclass
class RingWindow:
    """A zero-copy view of ``[start, end)``: one segment, or two when the window wraps around."""

    ring: AudioRing
    start: int
    end: int
    segments: tuple[np.ndarray, ...]

    def is_valid(self) -> bool:
        """True while no sample of the window can have been overwritten."""
        return self.start >= self.ring.reserved_end - self.ring.capacity

    def check_valid(self) -> None:
        """Raise :class:`RingOverrunError` if the window was (possibly) overwritten since it was taken."""
        if not self.is_valid():
            self.ring._count_overrun()
            raise RingOverrunError(
                f"ring window [{self.start}, {self.end}) was overwritten while in use "
                f"(writer at {self.ring.reserved_end}, capacity {self.ring.capacity})"
            )

    def copy(self) -> np.ndarray:
        """A validated contiguous copy of the window."""
        out = np.concatenate(self.segments) if len(self.segments) > 1 else self.segments[0].copy()
        self.check_valid()
        return out


# --------------------------------------------------------------------------------------------- ring
class AudioRing:
    """Mono float32 ring of ``capacity`` samples in POSIX shared memory. Create once, attach anywhere on the node."""

    def __init__(self, shm: shared_memory.SharedMemory, *, owner: bool) -> None:
        self._shm = shm
        self.owner = owner
        self._header = np.ndarray((8,), dtype=np.uint64, buffer=shm.buf, offset=0)
        if int(self._header[_H_MAGIC]) != _MAGIC:
            self._release_views()
            shm.close()
            raise RingBufferError(f"shared memory {shm.name!r} is not a MusicHal ring")
        self.capacity = int(self._header[_H_CAPACITY])
        self.sample_rate_hz = int(self._header[_H_RATE])
        self.dtype = _DTYPES.get(int(self._header[_H_ITEMSIZE]) or 4, np.dtype(np.float32))
        self._data = np.ndarray((self.capacity,), dtype=self.dtype, buffer=shm.buf, offset=_HEADER_BYTES)
        self._samples = memoryview(
            self._data
        )  # the writer's copy target: slice assignment ~0.1 µs cheaper than numpy's
        self._words = shm.buf[:_HEADER_BYTES].cast("Q")  # plain memoryview: cheaper per access than numpy scalars
        self._seq = np.ndarray(
            (1,), dtype=np.uint32, buffer=shm.buf, offset=8 * _H_COMMITTED
        )  # futex word (little-endian low half)
        self._seq_address = self._seq.ctypes.data
        self._closed = False
        self.overruns = 0  # overruns this process has detected
        # map every page now (one read per page): no page faults later on the real-time path, and the ring's memory
        # is in RSS from the start instead of creeping up as the cursors first go round
        int(np.frombuffer(shm.buf, dtype=np.uint8)[:: mmap.PAGESIZE].sum())

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        capacity_samples: int,
        sample_rate_hz: int,
        name: str | None = None,
        dtype: np.dtype | type = np.float32,
    ) -> AudioRing:
        """Create a new ring (this process becomes the owner, the only one that unlinks it).

        ``dtype`` is float32 for audio; :class:`shared.message_ring.MessageRing` uses uint8.
        """
        dtype = np.dtype(dtype)
        if dtype.itemsize not in _DTYPES or _DTYPES[dtype.itemsize] != dtype:
            raise ParameterError(f"ring dtype must be float32 or uint8, got {dtype}")
        if capacity_samples < 16:
            raise ParameterError(f"ring capacity must be >= 16 samples, got {capacity_samples}")
        if sample_rate_hz <= 0:
            raise ParameterError(f"sample rate must be > 0, got {sample_rate_hz}")
        name = name or f"{RING_NAME_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        try:
            shm = _open_untracked(name, create=True, size=_HEADER_BYTES + dtype.itemsize * capacity_samples)
        except FileExistsError:
            raise RingBufferError(f"shared memory {name!r} already exists") from None
        header = np.ndarray((8,), dtype=np.uint64, buffer=shm.buf, offset=0)
        header[:] = 0
        header[_H_CAPACITY] = capacity_samples
        header[_H_RATE] = sample_rate_hz
        header[_H_ITEMSIZE] = dtype.itemsize
        header[_H_MAGIC] = _MAGIC
        del header
        ring = cls(shm, owner=True)
        atexit.register(ring._unlink_at_exit)
        return ring

    @classmethod
    def attach(cls, name: str) -> AudioRing:
        """Attach to a ring created by another process (late attach is fine: read from ``write_counter``)."""
        try:
            shm = _open_untracked(name)
        except FileNotFoundError:
            raise RingBufferError(f"no shared-memory ring named {name!r}") from None
        return cls(shm, owner=False)

    @classmethod
    def create_for(cls, *, seconds: float, sample_rate_hz: int, name: str | None = None) -> AudioRing:
        return cls.create(
            capacity_samples=int(round(seconds * sample_rate_hz)), sample_rate_hz=sample_rate_hz, name=name
        )

    @property
    def name(self) -> str:
        return self._shm.name

    # -- counters -----------------------------------------------------------------------------
    @property
    def write_counter(self) -> int:
        """Samples committed since creation (the absolute index of the next sample to be written)."""
        return self._words[_H_COMMITTED]

    @property
    def reserved_end(self) -> int:
        return self._words[_H_RESERVED]

    @property
    def oldest_available(self) -> int:
        """Smallest absolute index that can still be read."""
        return max(0, self.reserved_end - self.capacity)

    @property
    def writer_closed(self) -> bool:
        return bool(self._header[_H_CLOSED])

    # -- writer -------------------------------------------------------------------------------
    def write(self, block: np.ndarray) -> int:
        """Append ``block`` (1-D, cast to the ring's dtype; longer than the ring keeps its tail).

        Returns the new write counter. The hot path is a handful of header stores and one slice copy; header
        word indices are literals here (3 reserved, 4 committed, 7 waiters) because it runs once per audio block.
        """
        if type(block) is not np.ndarray or block.ndim != 1:
            block = np.asarray(block, dtype=self.dtype)
            if block.ndim != 1:
                raise ParameterError(f"ring blocks must be 1-D mono, got shape {block.shape}")
        try:
            words = self._words
        except AttributeError:  # views are released on close
            raise RingBufferError("ring is closed") from None
        n = len(block)
        start = words[4]
        capacity = self.capacity
        if n > capacity or n == 0:
            if n == 0:
                return start
            block = np.asarray(block, dtype=self.dtype)[n - capacity :]  # only the newest ``capacity`` survive
            start += n - capacity
            words[4] = start
            n = capacity
        end = start + n
        words[3] = end  # reserved_end first: readers treat these slots as overwritten from now on
        offset = start % capacity
        if n <= capacity - offset:
            try:  # a block of the ring's own dtype (the capture path): buffer-to-buffer copy
                self._samples[offset : offset + n] = block
            except (TypeError, ValueError):  # another dtype or byte order: numpy converts
                self._data[offset : offset + n] = block
        else:
            first = capacity - offset
            self._data[offset:] = block[:first]
            self._data[: n - first] = block[first:]
        words[4] = end  # committed after the data (its low half is the futex word)
        if words[7]:  # a reader sleeps
            self._wake()
        return end

    def _wake(self) -> None:
        self._words[_H_WAITERS] = 0
        if _FUTEX.available:
            _FUTEX.wake(self._seq_address)

    def close_writer(self) -> None:
        """Mark the stream finished; waiting readers wake up and see :attr:`writer_closed`."""
        self._words[_H_CLOSED] = 1
        self._wake()

    # -- readers ------------------------------------------------------------------------------
    def wait_for(self, index: int, *, timeout_s: float) -> int:
        """Block until ``write_counter >= index``; returns the counter. Raises RingTimeoutError on timeout.

        Returns early (with a smaller counter) when the writer closed the stream.
        """
        self._check_open()
        committed = self.write_counter
        if committed >= index:
            return committed
        deadline = time.monotonic() + timeout_s
        while True:
            if _FUTEX.available:
                self._words[_H_WAITERS] = 1  # before reading seq: a commit after this point will wake us
            seq = int(self._seq[0])
            committed = self.write_counter
            if committed >= index or self.writer_closed:
                return committed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RingTimeoutError(
                    f"ring sample {index} not written within {timeout_s:.3f} s (writer at {committed})"
                )
            if _FUTEX.available:
                _FUTEX.wait(self._seq_address, seq, min(remaining, _MAX_SLEEP_S))
            else:  # portable fallback: wait about a quarter of a block at a time
                time.sleep(min(remaining, 0.001))

    def window(self, start: int, end: int, *, timeout_s: float | None = None) -> RingWindow:
        """Zero-copy view of ``[start, end)``; call ``check_valid()`` after use (or use :meth:`read`)."""
        self._check_open()
        if not 0 <= start < end:
            raise ParameterError(f"bad ring range [{start}, {end})")
        if end - start > self.capacity:
            raise ParameterError(f"range of {end - start} samples exceeds ring capacity {self.capacity}")
        committed = self.write_counter
        if end > committed:
            if timeout_s is None:
                raise RingTimeoutError(f"ring samples [{start}, {end}) not yet written (writer at {committed})")
            committed = self.wait_for(end, timeout_s=timeout_s)
            if end > committed:
                raise RingBufferError(f"ring writer closed at {committed} before sample {end}")
        if start < self.reserved_end - self.capacity:
            self._count_overrun()
            raise RingOverrunError(
                f"ring samples [{start}, {end}) already overwritten (oldest available {self.oldest_available})"
            )
        a, b = start % self.capacity, end % self.capacity
        if a < b or b == 0:
            segments: tuple[np.ndarray, ...] = (self._data[a : b or self.capacity],)
        else:
            segments = (self._data[a:], self._data[:b])
        return RingWindow(self, start, end, segments)

    def read(self, start: int, end: int, *, timeout_s: float | None = None) -> np.ndarray:
        """A validated copy of ``[start, end)``."""
        return self.window(start, end, timeout_s=timeout_s).copy()

    def reader(self, *, start: int | None = None) -> RingReader:
        """A cursor starting at ``start`` (default: the current write counter)."""
        return RingReader(self, self.write_counter if start is None else start)

    def _count_overrun(self) -> None:
        self.overruns += 1

    # -- lifetime -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RingBufferError("ring is closed")

    def _release_views(self) -> None:
        for view in ("_samples", "_words"):
            if hasattr(self, view):
                getattr(self, view).release()
        for attr in ("_header", "_samples", "_data", "_seq", "_words"):
            if hasattr(self, attr):
                delattr(self, attr)

    def close(self) -> None:
        """Detach this process (idempotent). Views handed out must be dropped first."""
        if self._closed:
            return
        self._closed = True
        self._release_views()
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a zero-copy view; the mapping goes with the process
            pass

    def unlink(self) -> None:
        """Remove the segment from the system (owner only; idempotent)."""
        if not self.owner:
            raise RingBufferError("only the process that created the ring may unlink it")
        _unlink_untracked(self._shm.name)
        self._unlinked = True

    def _unlink_at_exit(self) -> None:
        if not getattr(self, "_unlinked", False):
            _unlink_untracked(self._shm.name)

    def __enter__(self) -> AudioRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.owner:
            self.unlink()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"at {self.write_counter}"
        return f"AudioRing({self.name!r}, capacity={self.capacity}, {state}, owner={self.owner})"


class RingReader:
    """A reader's own cursor. ``read(n)`` returns the next ``n`` samples; overruns raise and are counted.

    After an overrun, :meth:`skip_to_oldest` or :meth:`skip_to_latest` moves the cursor on and counts the
    samples lost in :attr:`lost_samples`.
    """

    def __init__(self, ring: AudioRing, cursor: int) -> None:
        self.ring = ring
        self.cursor = cursor
        self.lost_samples = 0
        self.overruns = 0

    def available(self) -> int:
        return max(0, self.ring.write_counter - self.cursor)

    def read(self, n: int, *, timeout_s: float = 1.0) -> np.ndarray:
        try:
            data = self.ring.read(self.cursor, self.cursor + n, timeout_s=timeout_s)
        except RingOverrunError:
            self.overruns += 1
            raise
        self.cursor += n
        return data

    def read_available(self, *, max_samples: int | None = None) -> np.ndarray:
        """Everything written since the cursor (possibly empty), without waiting."""
        n = self.available()
        if max_samples is not None:
            n = min(n, max_samples)
        if n == 0:
            return np.zeros(0, dtype=self.ring.dtype)
        return self.read(n, timeout_s=0.0)

    def skip_to_oldest(self) -> int:
        """Move past overwritten samples to the oldest one still held (the loss is counted)."""
        return self._skip_to(self.ring.oldest_available)

    def skip_to_latest(self) -> int:
        """Drop everything not yet read and continue from the newest sample (the loss is counted)."""
        return self._skip_to(self.ring.write_counter)

    def _skip_to(self, index: int) -> int:
        if index > self.cursor:
            self.lost_samples += index - self.cursor
            self.cursor = index
        return self.cursor
