"""Input sources: what plays audio blocks into :meth:`services.capture.stage.CaptureStage.push`.

Both kinds sit behind one small protocol, :class:`InputSource`, so the capture actor treats them alike:

* the device input, :class:`services.capture.devices.AudioInputStream` (PyAudio in callback mode);
* :class:`FilePlayer`, which plays a file at real-time pace (``--input-file``: demo, tests, rehearsal).

:func:`open_input_source` picks one from the command line's choice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.audio import probe_audio_file
from shared.errors import ParameterError

__all__ = ["InputSource", "FilePlayer", "open_input_source"]


class InputSource(Protocol):
    """An audio input that hands float32 blocks ``(frames, channels)`` to the ``push`` it was built with."""

    kind: str  # how its failures are reported ("input file", "audio input")
    name: str  # the source the events carry (file path, device name)
    sample_rate_hz: int
    channels: int
    error: BaseException | None  # set (from its own thread) when it failed; it stops then

    def start(self) -> InputSource:
        """Begin pushing blocks (from its own thread or callback)."""

    def close(self) -> None:
        """Stop pushing and release the input."""

    def counters(self) -> dict[str, int]:
        """Its own counters, merged into the capture actor's stats."""


def open_input_source(
    push: Callable[..., Any],
    *,
    block_frames: int,
    input_file: str | None = None,
    input_device: Any = None,
    loop: bool = False,
    speed: float = 1.0,
) -> InputSource:
    """A :class:`FilePlayer` for ``input_file``, else the audio input device ``input_device`` (not started yet)."""
    if input_file is not None:
        return FilePlayer(input_file, push, block_frames=block_frames, loop=loop, speed=speed)
    from services.capture.devices import AudioInputStream

    return AudioInputStream(push, device=input_device, block_frames=block_frames)


class FilePlayer:
    """Plays an audio file into a callback at real-time pace, in blocks of ``block_frames`` (a rehearsal input).

    Pacing waits on an Event with a timeout (so :meth:`close` interrupts at once); with ``loop`` the file repeats.
    """

    kind = "input file"

    def __init__(
        self,
        path: str | Path,
        push: Callable[..., int],
        *,
        block_frames: int = 256,
        loop: bool = False,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import soundfile as sf

        self.info = probe_audio_file(path)
        if speed <= 0:
            raise ParameterError(f"speed must be > 0, got {speed}")
        self._sf = sf
        self.path = Path(path)
        self.name = str(path)
        self.sample_rate_hz = self.info.sample_rate_hz
        self.channels = self.info.channels
        self.push = push
        self.block_frames = int(block_frames)
        self.loop = loop
        self.speed = speed
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.blocks_played = 0
        self.late_blocks = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self) -> FilePlayer:
        self._thread = threading.Thread(target=self._run, name="musichal-file-player", daemon=True)
        self._thread.start()
        return self

    def _blocks(self):
        while True:
            blocks = self._sf.blocks(str(self.path), blocksize=self.block_frames, dtype="float32", always_2d=True)
            for block in blocks:
                if not np.isfinite(block).all():
                    raise ParameterError(f"{self.path}: contains NaN or infinite samples")
                yield block
            if not self.loop:
                return

    def _run(self) -> None:
        period = self.block_frames / self.info.sample_rate_hz / self.speed
        due = self.clock()
        try:
            previous = None
            for block in self._blocks():
                if previous is not None:
                    self.push(previous)
                    self.blocks_played += 1
                previous = block
                due += period
                delay = due - self.clock()
                if delay < -period:
                    self.late_blocks += 1
                if self._stop.wait(max(0.0, delay)):
                    return
            if previous is not None:
                self.push(previous, last=True)
                self.blocks_played += 1
        except BaseException as error:  # reported through .error by the actor
            self.error = error
        finally:
            self.done.set()

    def counters(self) -> dict[str, int]:
        return {"late_blocks": self.late_blocks}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
