"""Recommendations are a pure function of the measured figures; a slow encoder flips them."""

from __future__ import annotations

import pytest

from services.compare.comparison import run_comparison
from services.compare.metrics import figures_from_results, recommend
from services.encoder.wav2vec import Wav2VecMusicEncoder
from shared.errors import ParameterError
from testkit.clock import FakeClock

FAST_W2V = {
    "real_time_factor": 0.1,
    "p95_ms": 30.0,
    "load_seconds": 2.0,
    "pitch_accuracy": 0.95,
    "consonance_r2": 0.6,
    "normalized_entropy": 0.95,
    "collapse": False,
}
TRAD = {
    "real_time_factor": 0.01,
    "p95_ms": 2.0,
    "load_seconds": 0.0,
    "pitch_accuracy": 0.6,
    "consonance_r2": 0.2,
    "normalized_entropy": 0.9,
    "collapse": False,
}


def _choices(rows):
    return {row["criterion"]: row["choice"] for row in rows}


def test_better_real_time_wav2vec_is_recommended():
    choices = _choices(recommend({"deadline_ms": 250.0, "traditional": dict(TRAD), "wav2vec": dict(FAST_W2V)}))
    assert choices["overall"] == "wav2vec"
    assert choices["live (real time)"] == "either"
    assert choices["pitch information"] == "wav2vec"


@pytest.mark.parametrize("slow", [{"real_time_factor": 1.3}, {"p95_ms": 400.0}])
def test_slower_than_real_time_or_late_encoder_flips_the_recommendation(slow):
    rows = recommend({"deadline_ms": 250.0, "traditional": dict(TRAD), "wav2vec": dict(FAST_W2V, **slow)})
    choices = _choices(rows)
    assert choices["overall"] == "traditional"
    assert choices["live (real time)"] == "traditional"
    assert choices["pitch information"] == "wav2vec"  # quality rows still report quality


def test_collapse_and_ties():
    choices = _choices(
        recommend(
            {
                "deadline_ms": 250.0,
                "traditional": dict(TRAD),
                "wav2vec": dict(FAST_W2V, collapse=True, pitch_accuracy=0.6, consonance_r2=0.2),
            }
        )
    )
    assert choices["vocabulary use"] == "traditional"
    assert choices["overall"] == "traditional"
    tie = _choices(
        recommend({"deadline_ms": 250.0, "traditional": dict(TRAD), "wav2vec": dict(TRAD, real_time_factor=0.2)})
    )
    assert tie["overall"] == "hybrid"


def test_missing_figures_raise():
    with pytest.raises(ParameterError):
        recommend({"deadline_ms": 250.0, "traditional": dict(TRAD)})
    with pytest.raises(ParameterError):
        recommend({"deadline_ms": 250.0, "traditional": {}, "wav2vec": dict(FAST_W2V)})


class ChargedEncoder(Wav2VecMusicEncoder):
    """The real tiny encoder, charged ``cost`` × the audio's length per call on the fake clock (which moves only
    then: timings without sleeping or load noise)."""

    clock: FakeClock
    cost: float

    def encode(self, audio, sr, timestamp=0.0):
        self.clock.advance(self.cost * len(audio) / sr)
        return super().encode(audio, sr, timestamp)

    def encode_batch(self, segments, sr, timestamps=None):
        self.clock.advance(self.cost * sum(len(s) for s in segments) / sr)
        return super().encode_batch(segments, sr, timestamps)


def test_injected_slow_encoder_flips_the_measured_recommendation(chromatic_scale, tiny_encoder, tiny_wav2vec_dir):
    wav, reference = chromatic_scale
    encoder = ChargedEncoder(str(tiny_wav2vec_dir))
    results = {}
    for name, cost in (("fast", 0.05), ("slow", 1.5)):
        encoder.clock, encoder.cost = FakeClock(), cost
        results[name] = run_comparison(
            wav, encoder=encoder, reference=reference, segments=12, vocabulary_size=6, clock=encoder.clock
        )
    fast, slow = results["fast"], results["slow"]
    assert fast["pipelines"]["wav2vec"]["timing"]["real_time_factor"] < 1.0
    assert slow["pipelines"]["wav2vec"]["timing"]["real_time_factor"] >= 1.0
    assert _choices(fast["recommendations"])["live (real time)"] == "either"
    assert fast["probes"] == slow["probes"]  # same events, same vectors: only the speed differs
    assert _choices(slow["recommendations"])["live (real time)"] == "traditional"
    assert _choices(slow["recommendations"])["overall"] == "traditional"
    assert any("slower than real time" in w for w in slow["warnings"])
    # the same quality figures with only the speed changed: the decision comes from the speed alone
    figures = figures_from_results(slow)
    figures["wav2vec"].update(pitch_accuracy=1.0, consonance_r2=1.0, normalized_entropy=1.0, collapse=False)
    figures["traditional"].update(pitch_accuracy=0.5, consonance_r2=0.0)
    assert _choices(recommend(figures))["overall"] == "traditional"
    figures["wav2vec"]["real_time_factor"] = 0.1
    figures["wav2vec"]["p95_ms"] = 1.0
    assert _choices(recommend(figures))["overall"] == "wav2vec"
