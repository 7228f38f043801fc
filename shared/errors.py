"""One exception tree for MusicHal.

Every error a user can meet derives from :class:`MusicHalError`, and its message is one clear line
(entry points print ``str(error)`` and exit non-zero).
"""

from __future__ import annotations

__all__ = [
    "MusicHalError",
    "ParameterError",
    "AudioInputError",
    "RingBufferError",
    "RingOverrunError",
    "RingTimeoutError",
    "ModelFormatError",
    "DeviceError",
    "MidiPortError",
    "check",
    "one_line",
]


class MusicHalError(Exception):
    """Base of every MusicHal error."""


class ParameterError(MusicHalError, ValueError):
    """A value given to a public function or a config field is out of range or of the wrong kind."""


class AudioInputError(MusicHalError):
    """An audio file or stream cannot be used (empty, corrupt, NaN, unsupported)."""


class RingBufferError(MusicHalError):
    """Misuse of the shared-memory ring (bad name, bad range, closed ring)."""


class RingOverrunError(RingBufferError):
    """The requested samples were overwritten by the writer before (or while) they were read."""


class RingTimeoutError(RingBufferError):
    """The requested samples were not written within the wait timeout."""


class ModelFormatError(MusicHalError):
    """A model file is missing, truncated, of the wrong version or inconsistent."""


class DeviceError(MusicHalError):
    """An audio device, compute device or model checkpoint is not available."""


class MidiPortError(DeviceError):
    """A MIDI port or MIDI API is not available."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ParameterError` with ``message`` unless ``condition`` holds (the config and message checks)."""
    if not condition:
        raise ParameterError(message)


def one_line(error: BaseException) -> str:
    """The innermost ``SomeError: message`` line of a (Ray-wrapped) exception, else its type and first line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return one_line(cause)
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head, sep, message = line.partition(": ")
        if sep and head.split(".")[-1].endswith("Error") and " " not in head:
            return message
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
