"""services/compare/metrics.py and comparison.py: figures that could fail, on rendered audio and hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from services.compare.comparison import run_comparison
from services.compare.metrics import (
    CONSONANCE_DIMENSION,
    chord_consonance,
    consonance_targets,
    dimension_stats,
    pitch_class_labels,
    probe_classification,
    probe_regression,
    read_reference_notes,
    timing_summary,
    vocabulary_stats,
)
from shared.errors import ParameterError
from tests.compare.conftest import SCALE_NOTES


def test_chromatic_scale_uses_at_least_10_of_12_tokens_in_traditional_mode(scale_results):
    vocabulary = scale_results["pipelines"]["traditional"]["vocabulary"]
    assert vocabulary["vocabulary_size"] == 12
    assert vocabulary["used"] >= 10
    assert not vocabulary["collapse"]
    assert sum(vocabulary["counts"]) == scale_results["input"]["events"]


def test_traditional_pitch_probe_on_rendered_scale_with_its_midi(scale_results):
    pitch = scale_results["probes"]["pitch_class"]
    assert pitch["label_source"] == "reference"
    assert pitch["events_labelled"] >= 30
    assert pitch["traditional"]["classes"] == 12
    assert pitch["traditional"]["accuracy"] >= 0.8
    assert pitch["traditional"]["accuracy"] > 3 * pitch["traditional"]["chance"]


def test_both_pipelines_saw_the_same_events(scale_results):
    events = scale_results["input"]["events"]
    assert 30 <= events <= 40  # one onset per scale note, give or take
    for view in ("traditional", "wav2vec"):
        pipe = scale_results["pipelines"][view]
        assert len(pipe["tokens"]) == events
        assert pipe["timing"]["windows"] == events
        assert len(pipe["projection_2d"]) == events
    assert scale_results["pipelines"]["wav2vec"]["dimension"] == 32
    assert scale_results["pipelines"]["traditional"]["dimension"] == 22
    # batching never pads: batched vectors equal single ones
    assert scale_results["pipelines"]["wav2vec"]["batch"]["max_abs_difference_vs_single"] < 1e-4


def test_pure_tone_has_near_zero_variance_across_its_windows(pure_tone, tiny_encoder, scale_results):
    results = run_comparison(pure_tone, encoder=tiny_encoder, vocabulary_size=4)
    assert results["input"]["events"] >= 4
    tone = results["pipelines"]["traditional"]["features"]
    scale = scale_results["pipelines"]["traditional"]["features"]
    assert tone["variance_max"] < 1e-4
    assert scale["variance_max"] > 100 * tone["variance_max"]  # the measure does see change when there is some
    tone_w2v = results["pipelines"]["wav2vec"]["features"]["total_variance"]
    assert tone_w2v < 0.05 * scale_results["pipelines"]["wav2vec"]["features"]["total_variance"]


def test_duration_and_segments_limit_the_work(chromatic_scale, tiny_encoder):
    wav, reference = chromatic_scale
    results = run_comparison(
        wav, encoder=tiny_encoder, reference=reference, duration_s=4.0, segments=5, vocabulary_size=4
    )
    assert results["input"]["events"] == 5
    assert results["input"]["duration_limit_s"] == 4.0
    onsets = read_reference_notes(reference)
    assert len(onsets) == len(SCALE_NOTES)


def test_timing_summary_percentiles_and_real_time_factor():
    summary = timing_summary([0.001] * 19 + [0.021], audio_seconds=2.0)
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["p95_ms"] > summary["p50_ms"]
    assert summary["max_ms"] == pytest.approx(21.0)
    assert summary["real_time_factor"] == pytest.approx(0.040 / 2.0)
    with pytest.raises(ParameterError):
        timing_summary([], audio_seconds=1.0)
    with pytest.raises(ParameterError):
        timing_summary([0.1], audio_seconds=0.0)


def test_dimension_stats_variance_and_sparsity():
    x = np.zeros((10, 3))
    x[:, 0] = np.arange(10)
    stats = dimension_stats(x)
    assert stats["variance_per_dimension"][0] == pytest.approx(np.var(np.arange(10)))
    assert stats["dead_dimensions"] == 2
    assert stats["sparsity"] == pytest.approx(21 / 30)  # two zero columns and the single 0 of column 0
    with pytest.raises(ParameterError):
        dimension_stats(np.zeros((0, 3)))


def test_vocabulary_collapse_is_flagged_for_identical_vectors():
    rng = np.random.default_rng(0)
    collapsed, tokens = vocabulary_stats(np.ones((40, 5)), vocabulary_size=16)
    assert collapsed["used"] == 1 and collapsed["collapse"]
    spread, _ = vocabulary_stats(rng.normal(size=(200, 5)), vocabulary_size=16)
    assert spread["used"] >= 12 and not spread["collapse"]
    assert 0.8 < spread["normalized_entropy"] <= 1.0
    with pytest.raises(ParameterError):
        vocabulary_stats(np.ones((4, 2)), vocabulary_size=1)


def test_pitch_class_labels_from_reference_and_f0():
    notes = [(60, 0.0, 0.5), (64, 0.0, 0.5), (67, 1.0, 2.0)]
    assert pitch_class_labels([0.01, 1.02, 3.0], notes=notes) == [0, 7, None]
    assert pitch_class_labels([0.0, 0.0], f0_hz=[261.63, 0.0], f0_confidence=[0.9, 0.9]) == [0, None]
    with pytest.raises(ParameterError):
        pitch_class_labels([0.0])


def test_consonance_targets_from_chords_and_the_traditional_dimension():
    notes = [(60, 0.0, 1.0), (64, 0.0, 1.0), (67, 0.0, 1.0), (60, 2.0, 3.0), (61, 2.0, 3.0)]
    major, cluster = consonance_targets([0.1, 2.1], notes=notes)
    assert major > cluster
    assert chord_consonance([60]) == 1.0
    vectors = np.zeros((2, 22))
    vectors[:, CONSONANCE_DIMENSION] = [0.25, 0.75]
    assert consonance_targets([0.0, 1.0], traditional=vectors) == [0.25, 0.75]


def test_probes_find_information_that_is_there_and_not_what_is_not():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 10)
    informative = np.eye(4)[labels] + 0.1 * rng.normal(size=(40, 4))
    noise = rng.normal(size=(40, 4))
    assert probe_classification(informative, labels)["accuracy"] >= 0.9
    assert probe_classification(noise, labels)["accuracy"] < 0.6
    target = informative @ np.array([0.1, 0.5, 0.2, 0.9])
    assert probe_regression(informative, target)["r2"] > 0.9
    assert probe_regression(noise, target)["r2"] < 0.3
    assert probe_regression(informative, np.ones(40))["r2"] is None
