"""Continuous Audio Oracle: vmo equality, cluster data == symbolic oracle, IR, persistence.

Only ``test_equals_vmo`` imports vmo (a required dev dependency: missing, that test fails; the rest still run).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.factor_oracle import FactorOracle
from services.oracle.memory.information_rate import information_rate, select_threshold
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors
from shared.model_io import load_model, save_model


def tables(ao):
    n = ao.n_states
    return (
        ao.sfx.tolist(),
        ao.lrs.tolist(),
        [ao.transition_targets(s) for s in range(n)],
        [ao.rsfx(s) for s in range(n)],
        ao.labels.tolist(),
    )


def vmo_tables(x, threshold):
    import vmo  # a required dev dependency: only the vmo-equality test needs it, and its absence fails that test

    o = vmo.build_oracle(x, "a", threshold=threshold, dfunc="euclidean", dim=x.shape[1])
    return (
        [-1 if s is None else s for s in o.sfx],
        list(o.lrs),
        [list(t) for t in o.trn],
        [list(r) for r in o.rsfx],
        [-1] + list(o.data[1:]),
    ), o


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 50), st.integers(1, 3), st.floats(0.0, 2.5), st.integers(0, 10_000))
def test_equals_vmo(n, dim, threshold, seed):
    x = np.random.default_rng(seed).normal(size=(n, dim)).round(1)  # rounding makes ties and exact repeats common
    ao = AudioOracle(threshold, dim)
    ao.extend(x)
    expected, o = vmo_tables(x, threshold)
    assert tables(ao) == expected
    np.testing.assert_allclose(information_rate(ao.lrs), o.IR()[0])


def test_one_by_one_equals_batch():
    x = np.random.default_rng(1).normal(size=(300, 4))
    a = AudioOracle(2.0, 4, capacity=2)
    for row in x:
        a.add(row)
    b = AudioOracle(2.0, 4)
    b.extend(x)
    assert tables(a) == tables(b)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(0, 1000))
def test_separated_clusters_equal_symbolic_oracle(seq, seed):
    """Brute-force reference for the thresholded case: with clusters far apart (noise << threshold << gap)
    the continuous oracle is exactly the factor oracle of the cluster labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(4) * 10.0
    x = centres[seq] + rng.uniform(-0.05, 0.05, size=(len(seq), 4))
    ao = AudioOracle(1.0, 4)
    ao.extend(x)
    fo = FactorOracle()
    fo.extend(seq)
    assert ao.sfx.tolist() == list(fo.sfx)
    assert ao.lrs.tolist() == list(fo.lrs)
    assert [sorted(ao.transition_targets(s)) for s in range(ao.n_states)] == [
        sorted(fo.transition_targets(s)) for s in range(fo.n_states)
    ]
    for i in range(1, ao.n_states):  # the repeated context really repeats (cluster by cluster)
        length, parent = ao.lrs[i], ao.sfx[i]
        assert seq[i - length : i] == seq[parent - length : parent]


def test_build_100k_continuous():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(32, 8)) * 3
    x = centres[rng.integers(0, 32, 100_000)] + rng.normal(scale=0.3, size=(100_000, 8))
    ao = AudioOracle(2.0, 8)
    ao.extend(x)
    assert ao.n_states == 100_001
    assert (ao.sfx[1:] < np.arange(1, ao.n_states)).all()
    assert ao.n_transitions < 3 * ao.n_states


def test_rebuild_matches_fresh_build():
    x = np.random.default_rng(2).normal(size=(400, 3))
    a = AudioOracle(0.0, 3)
    a.extend(x)
    a.rebuild(1.2)
    b = AudioOracle(1.2, 3)
    b.extend(x)
    assert tables(a) == tables(b)


def test_select_threshold_keeps_ir_maximum():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(6, 5)) * 4
    motif = rng.integers(0, 6, 12)
    x = centres[np.tile(motif, 20)] + rng.normal(scale=0.1, size=(240, 5))
    threshold, curve = select_threshold(x)
    assert curve[:, 1].max() == pytest.approx(curve[curve[:, 0] == threshold, 1][0])
    for t, ir in curve[:5]:
        ao = AudioOracle(t, 5)
        ao.extend(x)
        assert information_rate(ao.lrs).sum() == pytest.approx(ir)
    # a threshold between noise and cluster gap finds the motif: its IR beats "every frame new" (0)
    assert curve[:, 1].max() > 0
    with pytest.raises(ParameterError):
        select_threshold(x[:1])
    with pytest.raises(ParameterError):
        select_threshold(x, candidates=[-1.0])


def make_oracle(n=500, seed=5):
    rng = np.random.default_rng(seed)
    ao = AudioOracle(1.5, 6)
    for i in range(n):
        d = EventDescriptors(
            onset_s=i * 0.1,
            duration_s=0.1 + 0.01 * (i % 7),
            rms=0.1,
            velocity=1 + i % 127,
            f0_hz=110.0 * (1 + i % 5),
            f0_confidence=0.5,
            chroma_peaks=tuple(range(i % 4)),
        )
        ao.add(rng.normal(size=6), token=i % 9, descriptors=d, event_id=1000 + i, source=f"file{i % 3}.wav")
    return ao


def test_round_trip_identical(tmp_path):
    ao = make_oracle()
    meta, arrays = ao.to_model_parts()
    assert all(name.startswith("oracle.") for name in arrays)
    save_model(tmp_path / "ao.json", {"ao": meta}, arrays)
    meta2, arrays2 = load_model(tmp_path / "ao.json")
    back = AudioOracle.from_model_parts(meta2["ao"], arrays2)
    assert tables(back) == tables(ao)
    assert back.threshold == ao.threshold and back.n_labels == ao.n_labels
    np.testing.assert_array_equal(back.frames, ao.frames)
    for s in range(ao.n_states):
        a, b = ao.state_info(s), back.state_info(s)
        assert (a.token, a.onset_s, a.duration_s, a.velocity, a.f0_hz, a.chroma_peaks, a.event_id, a.source) == (
            b.token,
            b.onset_s,
            b.duration_s,
            b.velocity,
            b.f0_hz,
            b.chroma_peaks,
            b.event_id,
            b.source,
        )
    x = np.random.default_rng(9).normal(size=(50, 6))
    ao.extend(x)
    back.extend(x)
    assert tables(back) == tables(ao)


def test_rejects_bad_data():
    ao = make_oracle(60)
    meta, arrays = ao.to_model_parts()
    with pytest.raises(ModelFormatError):
        AudioOracle.from_model_parts({"schema": "x"}, arrays)
    for name, value in [
        ("oracle.sfx", arrays["oracle.sfx"] + 5),
        ("oracle.trn_dst", arrays["oracle.trn_dst"] * 0),
        ("oracle.frames", arrays["oracle.frames"][:3]),
        ("oracle.labels", arrays["oracle.labels"].astype(float)),
        ("oracle.state.velocity", arrays["oracle.state.velocity"] * 0),
    ]:
        broken = dict(arrays)
        broken[name] = value
        with pytest.raises(ModelFormatError):
            AudioOracle.from_model_parts(meta, broken)
    with pytest.raises(ModelFormatError):
        AudioOracle.from_model_parts(dict(meta, n_states="many"), arrays)
    with pytest.raises(ParameterError):
        AudioOracle(-1.0, 3)
    with pytest.raises(ParameterError):
        ao.add(np.zeros(5))
    with pytest.raises(ParameterError):
        ao.add(np.full(6, np.nan))
