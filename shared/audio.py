"""The one audio front end: any file or device stream → mono float32 at the internal rate, block by block.

Live capture and the offline trainer both push their audio through :class:`StreamingFrontEnd`, so features
computed offline and live see the same samples. Files are decoded with soundfile (wav, flac, ogg, mp3, aiff)
and read in blocks (:func:`iter_file_blocks`), never whole into memory on the way in.

>>> front = StreamingFrontEnd(input_rate_hz=48000, channels=2)
>>> front.process(np.ones((4, 2), dtype=np.float32)).tolist()
[1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shared.config import INTERNAL_SAMPLE_RATE_HZ
from shared.errors import AudioInputError, ParameterError

__all__ = [
    "StreamingFrontEnd",
    "AudioFileInfo",
    "probe_audio_file",
    "iter_file_blocks",
    "load_audio_internal",
    "AUDIO_FILE_SUFFIXES",
]

AUDIO_FILE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
MIN_INPUT_RATE_HZ = 1_000
MAX_INPUT_RATE_HZ = 384_000


class StreamingFrontEnd:
    """Down-mix (or pick one channel), sanitise and resample a stream to the internal rate with soxr.

    Parameters
    ----------
    input_rate_hz, channels:
        Format of the incoming blocks (``(frames,)`` or ``(frames, channels)``).
    output_rate_hz:
        The internal analysis rate (default 48 kHz).
    input_channel:
        Use only this channel instead of the mean of all channels.

    Non-finite samples are replaced by 0 and counted in :attr:`nonfinite_samples` (a live stream must keep
    flowing); file readers reject such files before they get here.
    """

    def __init__(
        self,
        *,
        input_rate_hz: int,
        channels: int = 1,
        output_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ,
        input_channel: int | None = None,
        quality: str = "HQ",
    ) -> None:
        if not MIN_INPUT_RATE_HZ <= int(input_rate_hz) <= MAX_INPUT_RATE_HZ:
            raise ParameterError(
                f"input sample rate must be in {MIN_INPUT_RATE_HZ}..{MAX_INPUT_RATE_HZ} Hz, got {input_rate_hz}"
            )
        if channels < 1:
            raise ParameterError(f"channels must be >= 1, got {channels}")
        if input_channel is not None and not 0 <= input_channel < channels:
            raise ParameterError(f"input channel {input_channel} does not exist (stream has {channels} channel(s))")
        self.input_rate_hz = int(input_rate_hz)
        self.output_rate_hz = int(output_rate_hz)
        self.channels = int(channels)
        self.input_channel = input_channel
        self.quality = quality
        self.nonfinite_samples = 0
        self.input_frames = 0
        self.output_samples = 0
        self._resampler = None
        self.reset()

    def reset(self) -> None:
        """Forget the resampler's history (start of a new stream)."""
        self.input_frames = 0
        self.output_samples = 0
        if self.input_rate_hz != self.output_rate_hz:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.input_rate_hz, self.output_rate_hz, 1, dtype="float32", quality=self.quality
            )
        else:
            self._resampler = None

    def _to_mono(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim == 1:
            if self.channels != 1:
                if block.size % self.channels:
                    raise ParameterError(
                        f"interleaved block of {block.size} samples is not a multiple of {self.channels} channels"
                    )
                block = block.reshape(-1, self.channels)
            else:
                block = block[:, None]
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ParameterError(f"expected blocks of shape (frames, {self.channels}), got {block.shape}")
        if block.dtype.kind in "iu":  # integer PCM → [-1, 1)
            scale = float(2 ** (8 * block.dtype.itemsize - 1))
            block = block.astype(np.float32) / scale
        else:
            block = block.astype(np.float32, copy=False)
        mono = block[:, self.input_channel] if self.input_channel is not None else block.mean(axis=1, dtype=np.float32)
        finite = np.isfinite(mono)
        if not finite.all():
            self.nonfinite_samples += int((~finite).sum())
            mono = np.where(finite, mono, np.float32(0.0))
        return np.ascontiguousarray(mono, dtype=np.float32)

    def process(self, block: np.ndarray, *, last: bool = False, reset: bool = False) -> np.ndarray:
        """Convert one block; pass ``last=True`` with the final block to flush the resampler."""
        if reset:
            self.reset()
        mono = self._to_mono(block)
        self.input_frames += mono.shape[0]
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last).astype(np.float32, copy=False)
        self.output_samples += mono.shape[0]
        return mono

    __call__ = process


class AudioFileInfo:
    """What a file holds, checked before any sample is used."""

    def __init__(self, path: Path, sample_rate_hz: int, channels: int, frames: int, subtype: str) -> None:
        self.path = path
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.frames = frames
        self.subtype = subtype

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz if self.sample_rate_hz else 0.0


def probe_audio_file(path: str | Path) -> AudioFileInfo:
    """Open a file's header; raise AudioInputError with one line if it is missing, corrupt or empty."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a directory, not an audio file")
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises LibsndfileError/RuntimeError for corrupt data
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AudioInputError(f"{path}: not a readable audio file ({reason})") from None
    if info.frames <= 0:
        raise AudioInputError(f"{path}: contains no audio frames")
    if not MIN_INPUT_RATE_HZ <= info.samplerate <= MAX_INPUT_RATE_HZ:
        raise AudioInputError(f"{path}: unsupported sample rate {info.samplerate} Hz")
    return AudioFileInfo(path, int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype))


def iter_file_blocks(
    path: str | Path,
    *,
    block_frames: int = 4096,
    output_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ,
    input_channel: int | None = None,
    front_end: StreamingFrontEnd | None = None,
) -> Iterator[np.ndarray]:
    """Yield the file as internal-rate mono float32 blocks through :class:`StreamingFrontEnd`.

    Raises AudioInputError for unreadable files and for files containing NaN/inf samples.
    """
    import soundfile as sf

    info = probe_audio_file(path)
    front = front_end or StreamingFrontEnd(
        input_rate_hz=info.sample_rate_hz,
        channels=info.channels,
        output_rate_hz=output_rate_hz,
        input_channel=input_channel,
    )
    try:
        blocks = sf.blocks(str(info.path), blocksize=block_frames, dtype="float32", always_2d=True)
        pending: np.ndarray | None = None
        for block in blocks:
            if not np.isfinite(block).all():
                raise AudioInputError(f"{info.path}: contains NaN or infinite samples")
            if pending is not None:
                yield front.process(pending)
            pending = block
        if pending is not None:
            yield front.process(pending, last=True)
    except AudioInputError:
        raise
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AudioInputError(f"{info.path}: decoding failed ({reason})") from None


def load_audio_internal(
    path: str | Path,
    *,
    output_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ,
    input_channel: int | None = None,
    block_frames: int = 4096,
) -> np.ndarray:
    """The whole file as one internal-rate mono array (concatenation of :func:`iter_file_blocks`)."""
    blocks = list(
        iter_file_blocks(path, block_frames=block_frames, output_rate_hz=output_rate_hz, input_channel=input_channel)
    )
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
