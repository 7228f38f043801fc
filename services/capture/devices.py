"""Audio input devices through PyAudio (callback mode only: PortAudio 19.6's blocking JACK mode crashes on close)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.errors import DeviceError

__all__ = ["list_input_devices", "list_input_devices_text", "AudioInputStream"]


_ALSA_QUIET: list[Any] = []  # keeps the no-op ALSA error handler alive


def _silence_alsa_probe_messages() -> None:
    """PortAudio's ALSA probe prints dozens of 'ALSA lib ... cannot find card' lines to stderr; drop them."""
    if _ALSA_QUIET:
        return
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("asound")
        if not name:
            return
        handler_type = ctypes.CFUNCTYPE(
            None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
        )
        handler = handler_type(lambda *args: None)
        ctypes.cdll.LoadLibrary(name).snd_lib_error_set_handler(handler)
        _ALSA_QUIET.append(handler)
    except (OSError, AttributeError):
        pass


def _pyaudio():
    try:
        import pyaudio
    except ImportError as error:  # pragma: no cover - pyaudio is a dependency
        raise DeviceError(f"PyAudio is not available ({error}); install portaudio19-dev and pyaudio") from None
    _silence_alsa_probe_messages()
    return pyaudio


def list_input_devices() -> list[dict[str, Any]]:
    """Every device with input channels: index, name, host API, channels, default rate."""
    pyaudio = _pyaudio()
    pa = pyaudio.PyAudio()
    try:
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if info["maxInputChannels"] > 0:
                out.append(
                    {
                        "index": i,
                        "name": info["name"],
                        "host_api": pa.get_host_api_info_by_index(info["hostApi"])["name"],
                        "channels": int(info["maxInputChannels"]),
                        "default_rate_hz": int(info["defaultSampleRate"]),
                    }
                )
        return out
    finally:
        pa.terminate()


def list_input_devices_text() -> str:
    devices = list_input_devices()
    if not devices:
        return "no audio input devices found"
    return "\n".join(
        f"{d['index']:3d}  {d['name']}  [{d['host_api']}]  {d['channels']} ch  {d['default_rate_hz']} Hz"
        for d in devices
    )


def choose_input_device(devices: list[dict[str, Any]], wanted: str | int | None) -> dict[str, Any]:
    if not devices:
        raise DeviceError("no audio input device found (is a sound card or JACK server available?)")
    listing = "; ".join(f"{d['index']}: {d['name']} [{d['host_api']}]" for d in devices)
    if wanted is None:
        jack = [d for d in devices if "JACK" in d["host_api"]]
        return (jack or devices)[0]
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
        index = int(wanted)
        for d in devices:
            if d["index"] == index:
                return d
        raise DeviceError(f"no audio input device with index {index} (available: {listing})")
    matches = [d for d in devices if wanted.lower() in f"{d['name']} {d['host_api']}".lower()]
    if not matches:
        raise DeviceError(f"no audio input device matching {wanted!r} (available: {listing})")
    exact = [d for d in matches if d["name"] == wanted]
    return (exact or matches)[0]


class AudioInputStream:
    """An open PyAudio input in callback mode; the callback hands float32 blocks ``(frames, channels)`` to ``push``
    (an :class:`services.capture.sources.InputSource`)."""

    kind = "audio input"

    def __init__(
        self,
        push: Callable[[np.ndarray], Any],
        *,
        device: str | int | None = None,
        channels: int | None = None,
        block_frames: int = 256,
        sample_rate_hz: int | None = None,
    ) -> None:
        self.push = push
        self.device = choose_input_device(list_input_devices(), device)
        self.channels = int(channels or min(2, self.device["channels"]))
        if not 1 <= self.channels <= self.device["channels"]:
            raise DeviceError(
                f"device {self.device['name']!r} has {self.device['channels']} input channel(s), asked for "
                f"{self.channels}"
            )
        self.sample_rate_hz = int(sample_rate_hz or self.device["default_rate_hz"])
        self.block_frames = block_frames
        self.overflows = 0
        self.error: BaseException | None = None
        self._pa = None
        self._stream = None
        self._lock = threading.Lock()

    def _callback(self, data, frame_count, time_info, status):
        pyaudio = _pyaudio()
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        try:
            self.push(np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels))
        except BaseException as error:  # never raise into PortAudio's thread
            self.error = error
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    def start(self) -> AudioInputStream:
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        try:
            self._stream = self._pa.open(
                format=pyaudio.paFloat32,
                channels=self.channels,
                rate=self.sample_rate_hz,
                input=True,
                input_device_index=self.device["index"],
                frames_per_buffer=self.block_frames,
                stream_callback=self._callback,
            )
            self._stream.start_stream()
        except Exception as error:
            self.close()
            raise DeviceError(f"cannot open audio input {self.device['name']!r}: {error}") from None
        return self

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                try:
                    self._stream.stop_stream()
                    self._stream.close()
                finally:
                    self._stream = None
            if self._pa is not None:
                self._pa.terminate()
                self._pa = None

    @property
    def name(self) -> str:
        return str(self.device["name"])

    def counters(self) -> dict[str, int]:
        return {"input_overflows": self.overflows}
