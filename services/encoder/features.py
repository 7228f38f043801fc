"""Per-event descriptors and the 22-D traditional feature vector (pure numpy, one rfft per window).

All functions take one analysis window (mono float32/64, finite) and its sample rate; they are deterministic,
return finite values on silence and raise :class:`~shared.errors.ParameterError` on empty or non-finite input.

The 22 dimensions of :func:`traditional_features` (all in ``[0, 1]``):

====  ==========================  =============================================================================
dim   name                        meaning
====  ==========================  =============================================================================
0-11  chroma C..B                 energy per pitch class (55 Hz – 5 kHz, Hann-windowed spectrum), max = 1
12    ratio_2                     ``log2(f₂ / f₁) / 4`` — 2nd-lowest strong spectral peak over the lowest (0: none)
13    ratio_3                     same for the 3rd-lowest peak
14    ratio_4                     same for the 4th-lowest peak
15    ratio_5                     same for the 5th-lowest peak
16    consonance                  ``1 −`` amplitude-weighted Sethares/Plomp–Levelt roughness of the peak pairs
                                  (normalised by its maximum; 1 = no roughness, one peak counts as consonant)
17    harmonicity                 amplitude share of the peaks lying within 3 % of an integer multiple of the
                                  lowest peak
18    f0_confidence               YIN periodicity confidence (``1 − d'(τ)``) of :func:`estimate_f0`
19    pitch_height                ``log2(f0 / 27.5) / 8`` (0 when unvoiced)
20    spectral_centroid           ``log2(centroid / 50 Hz) / 7``
21    loudness                    ``(rms_dB + 80) / 80``
====  ==========================  =============================================================================

"Strong peaks" are the (up to 8) largest local maxima of the magnitude spectrum within 50 Hz – 5 kHz that
reach 10 % of the largest one, with parabolic frequency refinement. Silence (RMS below −100 dBFS) gives the
zero vector.

>>> import numpy as np
>>> sr = 48000
>>> t = np.arange(sr // 2) / sr
>>> a = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
>>> int(np.argmax(chroma(a, sample_rate_hz=sr)))   # A
9
>>> f0, conf = estimate_f0(a, sample_rate_hz=sr)
>>> round(f0), conf > 0.9
(440, True)
>>> traditional_features(np.zeros(4800, np.float32), sample_rate_hz=sr).tolist() == [0.0] * 22
True
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from shared.errors import ParameterError
from shared.messages import EventDescriptors
from shared.pitch import hz_to_midi_array

__all__ = [
    "FEATURE_DIMENSION",
    "FEATURE_NAMES",
    "chroma",
    "estimate_f0",
    "traditional_features",
    "describe_event",
    "rms_to_velocity",
    "validate_window",
    "magnitude_spectrum",
]

FEATURE_NAMES = (
    "chroma_C",
    "chroma_Cs",
    "chroma_D",
    "chroma_Ds",
    "chroma_E",
    "chroma_F",
    "chroma_Fs",
    "chroma_G",
    "chroma_Gs",
    "chroma_A",
    "chroma_As",
    "chroma_B",
    "ratio_2",
    "ratio_3",
    "ratio_4",
    "ratio_5",
    "consonance",
    "harmonicity",
    "f0_confidence",
    "pitch_height",
    "spectral_centroid",
    "loudness",
)
FEATURE_DIMENSION = len(FEATURE_NAMES)

_CHROMA_FMIN_HZ = 55.0
_CHROMA_FMAX_HZ = 5000.0
_PEAK_FMIN_HZ = 50.0
_PEAK_FMAX_HZ = 5000.0
_MAX_PEAKS = 8
_PEAK_REL = 0.1
_SILENCE_RMS = 1e-5  # -100 dBFS
_SETHARES_MAX = 0.18096  # max of exp(-3.5x) - exp(-5.75x)


def validate_window(window: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """The window as a finite mono float vector (ParameterError otherwise), checked with its rate."""
    if not 1_000 <= int(sample_rate_hz) <= 384_000:
        raise ParameterError(f"sample_rate_hz must be in 1000..384000, got {sample_rate_hz}")
    x = np.asarray(window)
    if x.ndim != 1:
        raise ParameterError(f"window must be mono 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ParameterError("window is empty")
    if x.dtype.kind not in "fiu":
        raise ParameterError(f"window must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ParameterError("window contains NaN or infinite samples")
    return x


@lru_cache(maxsize=32)
def _fft_size(n: int) -> int:
    from scipy.fft import next_fast_len

    return int(next_fast_len(max(int(n), 16), real=True))


@lru_cache(maxsize=32)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 2)[1:-1] if n > 1 else np.ones(1)


@lru_cache(maxsize=32)
def _pitch_class_map(
    n_fft: int, sample_rate_hz: int, fmin_hz: float = _CHROMA_FMIN_HZ
) -> tuple[np.ndarray, np.ndarray]:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    valid = np.nonzero((freqs >= fmin_hz) & (freqs <= _CHROMA_FMAX_HZ))[0]
    midi = hz_to_midi_array(freqs[valid])
    pitch_class = np.mod(np.rint(midi).astype(np.int64), 12)
    return valid, pitch_class


def magnitude_spectrum(x: np.ndarray, sample_rate_hz: int, min_fft: int = 0) -> tuple[np.ndarray, int]:
    """Magnitude spectrum of the Hann-windowed window (zero-padded to a fast length, at least ``min_fft``) and
    that length."""
    n_fft = max(_fft_size(x.size), int(min_fft))
    return np.abs(np.fft.rfft(x * _hann(x.size), n=n_fft)), n_fft


def _chroma_from_spectrum(
    mag: np.ndarray, n_fft: int, sample_rate_hz: int, fmin_hz: float = _CHROMA_FMIN_HZ
) -> np.ndarray:
    valid, pitch_class = _pitch_class_map(n_fft, int(sample_rate_hz), float(fmin_hz))
    energy = np.bincount(pitch_class, weights=mag[valid] ** 2, minlength=12)
    peak = energy.max()
    return (energy / peak if peak > 0.0 else energy).astype(np.float32)


def chroma(
    window: np.ndarray, *, sample_rate_hz: int, min_fft: int = 0, fmin_hz: float = _CHROMA_FMIN_HZ
) -> np.ndarray:
    """12-bin chroma (C..B) of one window: spectral energy per pitch class (from ``fmin_hz`` to 5 kHz), scaled so
    the largest bin is 1.

    ``min_fft`` zero-pads the spectrum of a short window (an early view's 25 ms: 40 Hz bins would put a partial
    in its neighbour's pitch class) so that each partial's energy lands where its frequency is.

    Raises
    ------
    ParameterError
        On empty, non-1-D or non-finite input, or a sample rate outside 1..384 kHz.
    """
    x = validate_window(window, sample_rate_hz)
    if np.sqrt(np.mean(x * x)) < _SILENCE_RMS:
        return np.zeros(12, dtype=np.float32)
    mag, n_fft = magnitude_spectrum(x - x.mean(), int(sample_rate_hz), min_fft)
    return _chroma_from_spectrum(mag, n_fft, int(sample_rate_hz), fmin_hz)


def estimate_f0(
    window: np.ndarray, *, sample_rate_hz: int, fmin_hz: float = 50.0, fmax_hz: float = 2000.0, threshold: float = 0.15
) -> tuple[float, float]:
    """YIN fundamental-frequency estimate of one window: ``(f0_hz, confidence)``; ``(0.0, c)`` when unvoiced.

    Uses a 40 ms integration span starting 20 ms into the window (after the attack) when the window is
    long enough. Confidence is ``1 − d'(τ)`` of the cumulative-mean-normalised difference at the chosen lag.

    Raises
    ------
    ParameterError
        On bad windows (see :func:`chroma`) or ``0 < fmin_hz < fmax_hz`` violated.
    """
    x = validate_window(window, sample_rate_hz)
    if not 0.0 < fmin_hz < fmax_hz:
        raise ParameterError(f"need 0 < fmin_hz < fmax_hz, got {fmin_hz}, {fmax_hz}")
    sr = int(sample_rate_hz)
    tau_min = max(2, int(np.floor(sr / fmax_hz)))
    tau_max = int(np.ceil(sr / fmin_hz))
    span = int(0.04 * sr)
    skip = int(0.02 * sr)
    if x.size < skip + span + tau_max:
        skip = max(0, x.size - span - tau_max)
    x = x[skip:]
    if x.size < span + tau_max:
        tau_max = min(tau_max, x.size // 2)
        span = x.size - tau_max
    if tau_max <= tau_min + 2 or span < tau_min:
        return 0.0, 0.0
    x = x[: span + tau_max] - x[: span + tau_max].mean()
    energy0 = float(np.dot(x[:span], x[:span]))
    if energy0 / span < _SILENCE_RMS**2:
        return 0.0, 0.0
    n = _fft_size(2 * (span + tau_max))
    spec_a = np.fft.rfft(x[:span], n=n)
    spec_b = np.fft.rfft(x, n=n)
    corr = np.fft.irfft(np.conj(spec_a) * spec_b, n=n)[: tau_max + 1]
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    taus = np.arange(tau_max + 1)
    energy_tau = squares[taus + span] - squares[taus]
    diff = np.maximum(energy0 + energy_tau - 2.0 * corr, 0.0)
    cumulative = np.cumsum(diff[1:])
    cmnd = np.ones(tau_max + 1)
    cmnd[1:] = diff[1:] * np.arange(1, tau_max + 1) / np.maximum(cumulative, 1e-300)
    search = cmnd[tau_min:tau_max]
    below = np.nonzero(search < threshold)[0]
    if below.size:
        tau = tau_min + int(below[0])
        while tau + 1 < tau_max and cmnd[tau + 1] < cmnd[tau]:
            tau += 1
    else:
        tau = tau_min + int(np.argmin(search))
    confidence = float(np.clip(1.0 - cmnd[tau], 0.0, 1.0))
    shift = 0.0
    if 1 <= tau < tau_max:
        left, mid, right = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
        denominator = left - 2.0 * mid + right
        if denominator > 0.0:
            shift = float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))
    if cmnd[tau] > 0.45:
        return 0.0, confidence
    return float(sr / (tau + shift)), confidence


def _peaks(mag: np.ndarray, n_fft: int, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (ascending) and amplitudes of the strong spectral peaks."""
    bin_hz = sample_rate_hz / n_fft
    lo = max(1, int(np.ceil(_PEAK_FMIN_HZ / bin_hz)))
    hi = min(mag.size - 2, int(np.floor(_PEAK_FMAX_HZ / bin_hz)))
    if hi <= lo:
        return np.zeros(0), np.zeros(0)
    center = mag[lo : hi + 1]
    is_peak = (center > mag[lo - 1 : hi]) & (center >= mag[lo + 1 : hi + 2])
    index = np.nonzero(is_peak)[0] + lo
    if index.size == 0:
        return np.zeros(0), np.zeros(0)
    strongest = index[np.argsort(-mag[index], kind="stable")[:_MAX_PEAKS]]
    strongest = strongest[mag[strongest] >= _PEAK_REL * mag[strongest[0]]]
    log_mag = np.log(mag + 1e-12)
    left, mid, right = log_mag[strongest - 1], log_mag[strongest], log_mag[strongest + 1]
    denominator = left - 2.0 * mid + right
    shift = np.where(denominator < 0.0, 0.5 * (left - right) / np.where(denominator < 0.0, denominator, 1.0), 0.0)
    freqs = (strongest + np.clip(shift, -0.5, 0.5)) * bin_hz
    amps = mag[strongest]
    order = np.argsort(freqs, kind="stable")
    return freqs[order], amps[order] / amps.max()


def _consonance(freqs: np.ndarray, amps: np.ndarray) -> float:
    if freqs.size < 2:
        return 1.0
    i, j = np.triu_indices(freqs.size, k=1)
    f_low = np.minimum(freqs[i], freqs[j])
    delta = np.abs(freqs[j] - freqs[i])
    s = 0.24 / (0.0207 * f_low + 18.96)
    weight = amps[i] * amps[j]
    roughness = weight * (np.exp(-3.5 * s * delta) - np.exp(-5.75 * s * delta))
    total = float(weight.sum())
    return float(np.clip(1.0 - roughness.sum() / (_SETHARES_MAX * total), 0.0, 1.0)) if total > 0 else 1.0


def _harmonicity(freqs: np.ndarray, amps: np.ndarray) -> float:
    if freqs.size == 0:
        return 0.0
    ratio = freqs / freqs[0]
    harmonic = (np.abs(ratio - np.rint(ratio)) <= 0.03 * np.rint(ratio)) & (np.rint(ratio) <= 16)
    return float(amps[harmonic].sum() / amps.sum())


def traditional_features(window: np.ndarray, *, sample_rate_hz: int) -> np.ndarray:
    """The 22-D traditional feature vector (float32; dimensions documented in the module docstring).

    Raises
    ------
    ParameterError
        On empty, non-1-D or non-finite input, or a sample rate outside 1..384 kHz.
    """
    x = validate_window(window, sample_rate_hz)
    sr = int(sample_rate_hz)
    out = np.zeros(FEATURE_DIMENSION, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    if rms < _SILENCE_RMS:
        return out.astype(np.float32)
    centered = x - x.mean()
    mag, n_fft = magnitude_spectrum(centered, sr)
    out[:12] = _chroma_from_spectrum(mag, n_fft, sr)
    freqs, amps = _peaks(mag, n_fft, sr)
    if freqs.size:
        ratios = freqs[1:5] / freqs[0]
        out[12 : 12 + ratios.size] = np.clip(np.log2(ratios) / 4.0, 0.0, 1.0)
        out[16] = _consonance(freqs, amps)
        out[17] = _harmonicity(freqs, amps)
    f0_hz, confidence = estimate_f0(x, sample_rate_hz=sr)
    out[18] = confidence
    if f0_hz > 0.0:
        out[19] = np.clip(np.log2(f0_hz / 27.5) / 8.0, 0.0, 1.0)
    power = mag * mag
    total = float(power.sum())
    if total > 0.0:
        centroid = float(np.dot(np.fft.rfftfreq(n_fft, 1.0 / sr), power) / total)
        out[20] = np.clip(np.log2(max(centroid, 50.0) / 50.0) / 7.0, 0.0, 1.0)
    out[21] = np.clip((20.0 * np.log10(rms) + 80.0) / 80.0, 0.0, 1.0)
    return out.astype(np.float32)


def rms_to_velocity(rms: float) -> int:
    """Map RMS (full scale 1.0) to MIDI velocity 1..127: −60 dBFS → 1, 0 dBFS → 127, linear in dB."""
    db = 20.0 * np.log10(max(float(rms), 1e-10))
    return int(np.clip(np.rint(1.0 + 126.0 * (db + 60.0) / 60.0), 1, 127))


def describe_event(
    window: np.ndarray,
    *,
    sample_rate_hz: int,
    onset_s: float,
    duration_s: float,
    max_peaks: int = 4,
    peak_ratio: float = 0.25,
    min_fft: int = 0,
    chroma_fmin_hz: float = _CHROMA_FMIN_HZ,
) -> EventDescriptors:
    """Descriptors the oracle needs to turn the event back into notes.

    ``chroma_peaks`` holds up to ``max_peaks`` pitch classes whose chroma reaches ``peak_ratio`` of the
    strongest, by decreasing strength (empty on silence); ``min_fft`` and ``chroma_fmin_hz`` (its ``fmin_hz``):
    see :func:`chroma`.

    Raises
    ------
    ParameterError
        On bad windows, ``duration_s < 0`` or a non-finite ``onset_s``.
    """
    x = validate_window(window, sample_rate_hz)
    if not np.isfinite(onset_s) or not np.isfinite(duration_s) or duration_s < 0:
        raise ParameterError(f"onset_s must be finite and duration_s >= 0, got {onset_s}, {duration_s}")
    rms = float(np.sqrt(np.mean(x * x)))
    values = chroma(x, sample_rate_hz=sample_rate_hz, min_fft=min_fft, fmin_hz=chroma_fmin_hz)
    order = np.argsort(-values, kind="stable")
    peaks = tuple(int(pc) for pc in order[:max_peaks] if values[pc] > 0.0 and values[pc] >= peak_ratio)
    f0_hz, confidence = estimate_f0(x, sample_rate_hz=sample_rate_hz)
    return EventDescriptors(
        onset_s=float(onset_s),
        duration_s=float(duration_s),
        rms=rms,
        velocity=rms_to_velocity(rms),
        f0_hz=f0_hz,
        f0_confidence=confidence,
        chroma_peaks=peaks,
    )
