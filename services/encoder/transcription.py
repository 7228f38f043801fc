"""Polyphonic note transcription of event windows and whole files (Basic Pitch's ONNX model through onnxruntime).

What a slice holds: the notes sounding in one event's analysis window — pitch, onset inside the slice, duration,
velocity, and the pitch bend (cents) of each note. The trainer and the live encoder call the same function,
:func:`transcribe_windows`, on the same windows (the segmenter's ``onset .. onset + window_ms``), so a slice's
notes are identical offline and live (parity test).

The network is Spotify's Basic Pitch (ICASSP 2022, Apache-2.0; ``models/BASIC_PITCH_LICENSE`` and
``models/BASIC_PITCH_NOTICE``): its 230 KB ONNX export is vendored as ``models/basic_pitch_nmp.onnx`` so
neither basic-pitch nor its TensorFlow dependency is installed. The model takes fixed 2 s inputs at 22 050 Hz
(43 844 samples; the constant-Q front end is inside the graph) and returns three posteriorgrams at 86.13 frames/s:
note activity and onsets (88 piano keys) and pitch contours (3 bins per semitone). The note decoding below is a
port of basic-pitch's ``output_to_notes_polyphonic`` (onset peaks ≥ ``onset_threshold`` open a note that lasts
while the activity stays ≥ ``frame_threshold``, with ``energy_tolerance`` frames of grace), without its "melodia
trick" (notes without an onset), which costs precision on piano. Bends are read off the contour posteriorgram
around each note's key (parabolic peak refinement → cents, not rounded to semitones).

Windows shorter than 2 s are placed ``_LEAD_SAMPLES`` into a zero buffer (as basic-pitch pads a file's start), so a
note starting at the window's first sample still shows its onset. A batch of windows is one ONNX call.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import ParameterError

__all__ = [
    "SliceNote",
    "TranscriberConfig",
    "Transcriber",
    "transcribe_windows",
    "transcribe_audio",
    "stitch_slices",
    "default_transcriber",
    "MODEL_PATH",
    "MODEL_RATE_HZ",
]

MODEL_PATH = Path(__file__).resolve().parent / "models" / "basic_pitch_nmp.onnx"
MODEL_RATE_HZ = 22050
_HOP = 256
_INPUT_SAMPLES = 2 * MODEL_RATE_HZ - _HOP  # 43844
_FRAMES = 172
_OVERLAP_FRAMES = 30
_LEAD_SAMPLES = _OVERLAP_FRAMES // 2 * _HOP  # 3840 samples of zeros before the audio (as basic-pitch pads a file)
_LEAD_FRAMES = _OVERLAP_FRAMES // 2
_MIDI_OFFSET = 21
_N_KEYS = 88
_CONTOUR_BINS_PER_SEMITONE = 3
_FRAME_S = _HOP / MODEL_RATE_HZ
_INPUT_NAME = "serving_default_input_2:0"
_OUTPUT_NAMES = (
    "StatefulPartitionedCall:1",
    "StatefulPartitionedCall:2",
    "StatefulPartitionedCall:0",
)  # note, onset, contour


@dataclass(frozen=True, slots=True)
class SliceNote:
    """One transcribed note. ``onset_s`` is relative to the slice (window) start, or to the file start for
    :func:`transcribe_audio`; ``bend_cents`` is the note's median deviation from its key and ``glide_cents`` the change
    from its first to its last third (both from the contour posteriorgram)."""

    pitch: int
    onset_s: float
    duration_s: float
    velocity: int
    bend_cents: float = 0.0
    glide_cents: float = 0.0


@dataclass(frozen=True)
class TranscriberConfig:
    """Decoding thresholds: basic-pitch's defaults except onset 0.6 (on rendered piano chorales, against 0.5: file F1
    0.86 vs 0.84, slice F1 0.76 vs 0.73, musician onsets kept 0.92 vs 0.82) and a 58 ms minimum note (slices are
    short)."""

    onset_threshold: float = 0.6
    frame_threshold: float = 0.3
    min_note_ms: float = 58.0
    energy_tolerance: int = 11
    min_pitch: int = 21
    max_pitch: int = 108
    threads: int = 1

    def __post_init__(self) -> None:
        if not (0.0 < self.onset_threshold < 1.0 and 0.0 < self.frame_threshold < 1.0):
            raise ParameterError("transcription thresholds must be in (0, 1)")
        if not 21 <= self.min_pitch <= self.max_pitch <= 108:
            raise ParameterError(f"need 21 <= min_pitch <= max_pitch <= 108, got {self.min_pitch}, {self.max_pitch}")
        if self.min_note_ms < 0 or self.energy_tolerance < 1 or self.threads < 1:
            raise ParameterError("min_note_ms >= 0, energy_tolerance >= 1 and threads >= 1 are required")


@functools.lru_cache(maxsize=1)
def _model_sha256() -> str:
    return hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()


def _resample(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ParameterError(f"audio must be mono 1-D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ParameterError("audio contains NaN or infinite samples")
    if int(sample_rate_hz) == MODEL_RATE_HZ or x.size == 0:
        return x
    import soxr

    return np.asarray(soxr.resample(x, int(sample_rate_hz), MODEL_RATE_HZ, quality="HQ"), dtype=np.float32)


class Transcriber:
    """The loaded network plus its decoder. Thread-safe (one lock around the ONNX session).

    Raises
    ------
    ParameterError
        When onnxruntime is missing or the model file cannot be loaded (one line).
    """

    def __init__(self, config: TranscriberConfig | None = None, *, model_path: Path | str = MODEL_PATH) -> None:
        self.config = config or TranscriberConfig()
        try:
            import onnxruntime as ort
        except ImportError as error:  # a required dependency: a failure, never a silent fallback
            raise ParameterError(f"transcription needs onnxruntime (pip install onnxruntime): {error}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ParameterError(f"cannot load the transcription model {model_path}: {error}") from None
        self._lock = threading.Lock()

    def describe(self) -> dict:
        """What determines the slice notes (recorded with a model's features; part of the trainer's cache key)."""
        return {"model": "basic-pitch-icassp-2022", "sha256": _model_sha256(), **dataclasses.asdict(self.config)}

    # -- network ---------------------------------------------------------------------------------------------------
    def posteriorgrams(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(note, onset, contour)`` for a ``(n, 43844)`` batch of model-rate chunks."""
        batch = np.ascontiguousarray(chunks, dtype=np.float32)[:, :, None]
        with self._lock:
            note, onset, contour = self._session.run(list(_OUTPUT_NAMES), {_INPUT_NAME: batch})
        return note, onset, contour

    # -- decoding --------------------------------------------------------------------------------------------------
    def decode(
        self,
        note: np.ndarray,
        onset: np.ndarray,
        contour: np.ndarray,
        frame_times: np.ndarray,
        *,
        end_s: float,
        last_frame: int | None = None,
    ) -> list[SliceNote]:
        """Notes from ``(T, 88)`` posteriorgrams whose frame ``t`` lies at ``frame_times[t]`` seconds."""
        cfg = self.config
        n_frames = note.shape[0] if last_frame is None else min(note.shape[0], int(last_frame))
        frames = np.array(note[:n_frames], dtype=np.float64)
        onsets = np.array(onset[:n_frames], dtype=np.float64)
        lo, hi = cfg.min_pitch - _MIDI_OFFSET, cfg.max_pitch - _MIDI_OFFSET + 1
        frames[:, :lo] = 0.0
        frames[:, hi:] = 0.0
        onsets[:, :lo] = 0.0
        onsets[:, hi:] = 0.0
        onsets = _inferred_onsets(onsets, frames)
        if n_frames < 3:
            return []
        is_peak = np.zeros_like(onsets, dtype=bool)
        # a peak is strictly above the frame before and not below the one after: the first frame of a plateau counts
        # (the inferred onsets are rescaled to the network's maximum, so exact ties happen)
        is_peak[1:-1] = (onsets[1:-1] > onsets[:-2]) & (onsets[1:-1] >= onsets[2:])
        peak_t, peak_k = np.nonzero(is_peak & (onsets >= cfg.onset_threshold))
        order = np.lexsort((peak_k, -peak_t))  # backwards in time (as basic-pitch)
        remaining = frames.copy()
        min_len = int(round(cfg.min_note_ms * 1e-3 / _FRAME_S))
        out: list[SliceNote] = []
        for t0, k in zip(peak_t[order], peak_k[order]):
            if t0 >= n_frames - 1:
                continue
            i, grace = t0 + 1, 0
            while i < n_frames - 1 and grace < cfg.energy_tolerance:
                grace = grace + 1 if remaining[i, k] < cfg.frame_threshold else 0
                i += 1
            i -= grace
            if last_frame is not None and n_frames - 1 - i <= cfg.energy_tolerance:
                i = n_frames - 1  # active within the grace span of a window's edge: it sounds to the end of the window
            if i - t0 <= min_len:
                continue
            remaining[t0:i, max(0, k - 1) : k + 2] = 0.0
            amplitude = float(np.mean(frames[t0:i, k]))
            start = float(frame_times[t0])
            stop = float(frame_times[i]) if i < frame_times.size else float(end_s)
            stop = min(stop, float(end_s))
            bend, glide = _bend(contour[t0:i], k)
            out.append(
                SliceNote(
                    pitch=int(k + _MIDI_OFFSET),
                    onset_s=max(0.0, start),
                    duration_s=max(0.0, stop - max(0.0, start)),
                    velocity=int(np.clip(round(127 * amplitude), 1, 127)),
                    bend_cents=bend,
                    glide_cents=glide,
                )
            )
        out.sort(key=lambda n: (n.onset_s, n.pitch))
        return out

    # -- windows and files -----------------------------------------------------------------------------------------
    def transcribe_windows(
        self, windows: Sequence[np.ndarray], *, sample_rate_hz: int, batch_size: int = 16
    ) -> list[tuple[SliceNote, ...]]:
        """Notes of each window (onsets relative to the window start; durations end at the window's end).

        A window longer than 2 s − 174 ms is cut to that length (the model's input); the segmenter's are 500 ms.
        """
        usable = _INPUT_SAMPLES - _LEAD_SAMPLES
        prepared = []
        for window in windows:
            x = _resample(window, sample_rate_hz)[:usable]
            prepared.append(x)
        results: list[tuple[SliceNote, ...]] = []
        frame_times = (np.arange(_FRAMES) * _HOP - _LEAD_SAMPLES) / MODEL_RATE_HZ
        for start in range(0, len(prepared), max(1, int(batch_size))):
            group = prepared[start : start + batch_size]
            chunks = np.zeros((len(group), _INPUT_SAMPLES), dtype=np.float32)
            for row, x in enumerate(group):
                chunks[row, _LEAD_SAMPLES : _LEAD_SAMPLES + x.size] = x
            note, onset, contour = self.posteriorgrams(chunks)
            for row, x in enumerate(group):
                end_s = x.size / MODEL_RATE_HZ
                if x.size == 0 or not np.any(x):
                    results.append(())
                    continue
                last = min(_FRAMES, _LEAD_FRAMES + int(np.ceil(x.size / _HOP)) + 1)
                notes = self.decode(note[row], onset[row], contour[row], frame_times, end_s=end_s, last_frame=last)
                results.append(tuple(n for n in notes if n.onset_s < end_s))
        return results

    def transcribe_audio(self, audio: np.ndarray, *, sample_rate_hz: int, batch_size: int = 8) -> list[SliceNote]:
        """Notes of a whole recording (onsets from its start): basic-pitch's overlapping 2 s chunks, stitched."""
        x = _resample(audio, sample_rate_hz)
        if x.size == 0:
            return []
        overlap = _OVERLAP_FRAMES * _HOP
        hop = _INPUT_SAMPLES - overlap
        padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), x])
        starts = list(range(0, padded.size, hop))
        half = _OVERLAP_FRAMES // 2
        notes, onsets, contours, times = [], [], [], []
        for first in range(0, len(starts), batch_size):
            chunk_starts = starts[first : first + batch_size]
            chunks = np.zeros((len(chunk_starts), _INPUT_SAMPLES), dtype=np.float32)
            for row, s in enumerate(chunk_starts):
                piece = padded[s : s + _INPUT_SAMPLES]
                chunks[row, : piece.size] = piece
            n, o, c = self.posteriorgrams(chunks)
            for row, s in enumerate(chunk_starts):
                notes.append(n[row, half:-half])
                onsets.append(o[row, half:-half])
                contours.append(c[row, half:-half])
                times.append((s - overlap // 2 + np.arange(half, _FRAMES - half) * _HOP) / MODEL_RATE_HZ)
        frame_times = np.concatenate(times)
        end_s = x.size / MODEL_RATE_HZ
        keep = frame_times <= end_s
        return self.decode(
            np.concatenate(notes)[keep],
            np.concatenate(onsets)[keep],
            np.concatenate(contours)[keep],
            frame_times[keep],
            end_s=end_s,
        )


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """basic-pitch's ``get_infered_onsets``: onsets also where the note activity jumps."""
    diffs = []
    for n in range(1, n_diff + 1):
        shifted = np.concatenate([np.zeros((n, frames.shape[1])), frames])
        diffs.append(shifted[n:] - shifted[:-n])
    frame_diff = np.maximum(np.min(diffs, axis=0), 0.0)
    frame_diff[:n_diff] = 0.0
    top = frame_diff.max()
    if top > 0.0:
        frame_diff = onsets.max() * frame_diff / top
    return np.maximum(onsets, frame_diff)


def _bend(contour: np.ndarray, key: int) -> tuple[float, float]:
    """Median deviation (cents) of the contour peak within ±1 semitone of ``key``, and its first→last-third change."""
    if contour.shape[0] == 0:
        return 0.0, 0.0
    centre = key * _CONTOUR_BINS_PER_SEMITONE + 1  # measured: an in-tune note peaks one bin above 3·key
    lo, hi = max(0, centre - _CONTOUR_BINS_PER_SEMITONE), min(contour.shape[1], centre + _CONTOUR_BINS_PER_SEMITONE + 1)
    band = np.asarray(contour[:, lo:hi], dtype=np.float64)
    peak = np.argmax(band, axis=1)
    rows = np.arange(band.shape[0])
    left = band[rows, np.maximum(peak - 1, 0)]
    mid = band[rows, peak]
    right = band[rows, np.minimum(peak + 1, band.shape[1] - 1)]
    denominator = left - 2.0 * mid + right
    shift = np.where(denominator < 0.0, 0.5 * (left - right) / np.where(denominator < 0.0, denominator, 1.0), 0.0)
    cents = (lo + peak + np.clip(shift, -0.5, 0.5) - centre) * (100.0 / _CONTOUR_BINS_PER_SEMITONE)
    third = max(1, cents.size // 3)
    glide = float(np.median(cents[-third:]) - np.median(cents[:third])) if cents.size >= 3 else 0.0
    return round(float(np.median(cents)), 1), round(glide, 1)


def stitch_slices(
    onsets_s: Sequence[float],
    durations_s: Sequence[float],
    slices: Sequence[Sequence[SliceNote]],
    *,
    window_s: float,
    held_tolerance_s: float = 0.05,
) -> list[SliceNote]:
    """The recording's notes read back from its slices (what the memory holds), onsets from the recording's start.

    Slice ``i`` contributes the notes starting before its end (``durations_s[i]``, the time to the next onset, less
    ``held_tolerance_s``). A note at a slice's start whose pitch was still sounding when that slice began (in the
    previous slice's notes) is the same note held on: the earlier note is lengthened instead of a new one starting.
    """
    if not len(onsets_s) == len(durations_s) == len(slices):
        raise ParameterError("onsets, durations and slices must have one entry per slice")
    out: list[SliceNote] = []
    sounding: dict[int, int] = {}  # pitch -> index in out of a note that reached its window's end
    for onset, duration, notes in zip(onsets_s, durations_s, slices):
        reached: dict[int, int] = {}
        end = min(float(window_s), float(duration)) if float(duration) > 0 else float(window_s)
        for n in notes:
            if n.onset_s >= max(end - held_tolerance_s, held_tolerance_s):
                continue  # starts at the next slice's onset: that slice holds it
            start = float(onset) + n.onset_s
            open_ended = n.onset_s + n.duration_s >= end - held_tolerance_s  # still sounding when the next slice starts
            if n.onset_s <= held_tolerance_s and n.pitch in sounding:
                k = sounding[n.pitch]
                prev = out[k]
                out[k] = dataclasses.replace(prev, duration_s=max(prev.duration_s, start + n.duration_s - prev.onset_s))
            else:
                k = len(out)
                out.append(dataclasses.replace(n, onset_s=start))
            if open_ended:
                reached[n.pitch] = k
        sounding = reached
    out.sort(key=lambda n: (n.onset_s, n.pitch))
    return out


_DEFAULT: Transcriber | None = None
_DEFAULT_LOCK = threading.Lock()


def default_transcriber() -> Transcriber:
    """The process-wide transcriber with default settings (loaded once, ~20 ms)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Transcriber()
        return _DEFAULT


def transcribe_windows(
    windows: Sequence[np.ndarray], *, sample_rate_hz: int, transcriber: Transcriber | None = None
) -> list[tuple[SliceNote, ...]]:
    """Each window's notes — the single slice-notes path of the trainer and the live encoder."""
    return (transcriber or default_transcriber()).transcribe_windows(windows, sample_rate_hz=sample_rate_hz)


def transcribe_audio(
    audio: np.ndarray, *, sample_rate_hz: int, transcriber: Transcriber | None = None
) -> list[SliceNote]:
    """A whole recording's notes (for measuring against a score)."""
    return (transcriber or default_transcriber()).transcribe_audio(audio, sample_rate_hz=sample_rate_hz)
