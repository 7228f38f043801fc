"""A small streaming tempo and beat-phase tracker over onset times (pure; our own).

Each onset (seconds on one clock) is added with :meth:`TempoTracker.add`; over the last ``window_s`` seconds:

1. the onsets become a smoothed impulse train (Gaussian, ``sigma`` 15 ms, 5 ms resolution) whose
   autocorrelation is scored for beat periods between ``min_bpm`` and ``max_bpm`` with a comb
   (``AC(P) + 0.5 AC(2P) + 0.5 AC(P/2)`` — a beat is supported by its multiple and its half) and a mild
   log-Gaussian preference for 100 BPM (sigma 0.8 octave). The comb and the preference alone read a chorale at
   160 BPM as 80 and one at 60 as 120: a piece played twice as fast has the same onsets on half the time scale;
2. the *beat level* settles the octave: of the periods ``P * 2^k`` in range (the slowest first), the beat is the
   first whose grid holds clearly more onsets on its beats than half-way between them (``on - off >=
   _LEVEL_MARGIN``, an onset being within ``_LEVEL_TOL`` of a period of the point, at the phase that puts the most
   onsets on the beat): a level too slow has as many onsets half-way (the other beats) as on its own beats; the
   true beat has the off-beat eighths only. The level held stays until fewer than a third of the last
   ``_LEVEL_VOTES`` choices are for it, then becomes their median (log scale), so a stretch that leans to half
   notes (the half-note level passing in about half its windows) does not flip it. Measured on rendered chorales
   at 60, 84, 110, 140, 160 and 180 BPM (tests/oracle/test_tempo.py, ``benchmarks/tempo.py``);
3. the period is refined by least squares: onsets near the grid (within 20 % of a period) are given
   beat indices ``n_k`` and ``t_k ≈ phase + n_k P`` is fitted (sub-millisecond precision from many onsets);
4. the phase is the fitted intercept, kept in ``[0, P)`` relative to the newest onset's grid.

:attr:`TempoTracker.bpm` is ``None`` until ``min_onsets`` onsets span at least two periods.
:meth:`TempoTracker.next_beat` gives the next grid point (beat or subdivision) after a time.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from shared.errors import ParameterError

__all__ = ["TempoTracker", "beat_shares"]

_RES_S = 0.005
_SIGMA_S = 0.015
_LEVEL_TOL = 0.15  # an onset within this share of a period of a grid point is on it
_LEVEL_MARGIN = 0.1  # the beat level has at least this larger a share of onsets on its beats than half-way
_LEVEL_VOTES = 9  # the level is the median of this many last choices
_MAX_PENDING = 64  # deferred estimates run at once beyond this many (a caller that never reads or settles)


def beat_shares(onsets_s: np.ndarray, period_s: float) -> tuple[float, float]:
    """``(on, off)``: the shares of ``onsets_s`` within ``_LEVEL_TOL`` of a period of the grid's beats and of the
    points half-way between them, at the phase (one of the last 12 onsets) that puts the most onsets on the beat."""
    t = np.asarray(onsets_s, dtype=np.float64)
    best = (0.0, 0.0)
    for phase in t[-12:]:
        x = ((t - phase) / period_s) % 1.0
        on = float(np.mean((x < _LEVEL_TOL) | (x > 1.0 - _LEVEL_TOL)))
        if on > best[0]:
            best = (on, float(np.mean(np.abs(x - 0.5) < _LEVEL_TOL)))
    return best


class TempoTracker:
    def __init__(
        self, *, min_bpm: float = 60.0, max_bpm: float = 200.0, window_s: float = 8.0, min_onsets: int = 6
    ) -> None:
        if not 20.0 <= min_bpm < max_bpm <= 400.0:
            raise ParameterError(f"need 20 <= min_bpm < max_bpm <= 400, got {min_bpm}, {max_bpm}")
        self.min_bpm, self.max_bpm = float(min_bpm), float(max_bpm)
        self.window_s = float(window_s)
        self.min_onsets = int(min_onsets)
        self.onsets: deque[float] = deque()
        self._period_s: float | None = None
        self._phase_s: float | None = None  # a time at which a beat falls
        self._levels: deque[float] = deque(maxlen=_LEVEL_VOTES)  # log2 of the last beat levels chosen
        self._held: float | None = None  # log2 of the beat level held (see _beat_level)
        self._pending: list[np.ndarray] = []  # the onset windows of deferred estimates, oldest first

    @property
    def period_s(self) -> float | None:
        self.settle()
        return self._period_s

    @property
    def phase_s(self) -> float | None:
        self.settle()
        return self._phase_s

    @property
    def bpm(self) -> float | None:
        period = self.period_s
        return None if period is None else 60.0 / period

    def add(self, onset_s: float) -> float | None:
        """Add one onset time; returns the current tempo in BPM (None while unknown)."""
        self.note(onset_s)
        return self.bpm

    def note(self, onset_s: float) -> None:
        """Add one onset time and defer its estimate until the tempo is read or :meth:`settle` runs (the live
        decision object calls it after the notes a percept triggers are out): the estimate (an autocorrelation, a few
        ms) leaves the reaction path, and the results are the same as :meth:`add`'s, in the same order."""
        if not math.isfinite(onset_s):
            raise ParameterError("onset_s must be finite")
        if self.onsets and onset_s < self.onsets[-1]:
            return  # out of order (an early and a full view of one onset): ignore
        self.onsets.append(float(onset_s))
        while self.onsets and self.onsets[0] < onset_s - self.window_s:
            self.onsets.popleft()
        self._pending.append(np.asarray(self.onsets))
        if len(self._pending) > _MAX_PENDING:
            self.settle()

    def settle(self) -> None:
        """Run the estimates deferred by :meth:`note`, in order."""
        pending, self._pending = self._pending, []
        for t in pending:
            self._estimate(t)

    def _estimate(self, t: np.ndarray) -> None:
        if t.size < self.min_onsets:
            return
        span = t[-1] - t[0]
        min_p, max_p = 60.0 / self.max_bpm, 60.0 / self.min_bpm
        if span < 2 * min_p:
            return
        n = int(span / _RES_S) + 1 + int(4 * _SIGMA_S / _RES_S)
        signal = np.zeros(n + 1)
        idx = np.round((t - t[0]) / _RES_S).astype(int)
        np.add.at(signal, idx, 1.0)
        k = int(3 * _SIGMA_S / _RES_S)
        kernel = np.exp(-0.5 * (np.arange(-k, k + 1) * _RES_S / _SIGMA_S) ** 2)
        signal = np.convolve(signal, kernel, mode="same")
        spectrum = np.fft.rfft(signal, 2 * signal.size)
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[: signal.size]
        if ac[0] <= 0:
            return
        ac = ac / ac[0]

        def at(lag_s: np.ndarray) -> np.ndarray:
            """The autocorrelation at each lag, linearly interpolated (0 past its end)."""
            i = lag_s / _RES_S
            lo = i.astype(np.int64)
            inside = lo + 1 < ac.size
            lo = np.where(inside, lo, 0)
            return np.where(inside, ac[lo] + (ac[lo + 1] - ac[lo]) * (i - lo), 0.0)

        lags = np.arange(min_p, max_p + _RES_S / 2, _RES_S / 2)
        scores = at(lags) + 0.5 * at(2 * lags) + 0.5 * at(lags / 2)
        scores *= np.exp(-0.5 * (np.log2(lags / 0.6) / 0.8) ** 2)
        if scores.max() <= 0:
            return
        period = self._beat_level(t, float(lags[int(np.argmax(scores))]), min_p, max_p)
        # least-squares refinement on the onsets that fall on the grid
        phase = t[-1]
        for _ in range(3):
            beats = (t - phase) / period
            index = np.round(beats)
            near = np.abs(beats - index) < 0.2
            if near.sum() < 3 or np.ptp(index[near]) < 2:
                break
            slope, intercept = np.polyfit(index[near], t[near], 1)
            if not min_p * 0.9 <= slope <= max_p * 1.1:
                break
            period, phase = float(slope), float(intercept)
        self._period_s = period
        self._phase_s = float(phase)

    def _beat_level(self, t: np.ndarray, period: float, min_p: float, max_p: float) -> float:
        """The beat among ``period * 2^k`` in range (see the module docstring, step 2)."""
        levels = sorted(
            {period * 2.0**k for k in range(-2, 3) if min_p * 0.97 <= period * 2.0**k <= max_p * 1.03}, reverse=True
        )
        choice = period
        for level in levels:
            on, off = beat_shares(t, level)
            if on - off >= _LEVEL_MARGIN:
                choice = level
                break
        self._levels.append(math.log2(choice))
        votes = np.asarray(self._levels)
        # hysteresis: the level held so far stays until fewer than a third of the last votes are for it
        if self._held is None or np.sum(np.abs(votes - self._held) < 0.5) < votes.size / 3:
            self._held = float(np.median(votes))
        return min(levels, key=lambda level: abs(math.log2(level) - self._held))

    def next_beat(self, after_s: float, *, subdivision: int = 1) -> float | None:
        """The first grid point (``period / subdivision``) strictly after ``after_s``; None while no tempo."""
        if self.period_s is None or self.phase_s is None:
            return None
        grid = self.period_s / max(1, int(subdivision))
        n = math.floor((after_s - self.phase_s) / grid + 1e-9) + 1
        return self.phase_s + n * grid
