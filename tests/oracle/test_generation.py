"""Improviser: continuity share, context-sharing jumps, taboo, modes, determinism, notes."""
from __future__ import annotations

import numpy as np
import pytest

from shared.config import GenerationConfig
from shared.errors import ParameterError
from shared.messages import EventDescriptors
from services.oracle.audio_oracle import AudioOracle
from services.oracle.factor_oracle import FactorOracle
from services.oracle.generation import Improviser, fold_pitch


@pytest.fixture(scope="module")
def symbolic():
    seq = np.random.default_rng(0).integers(0, 3, 20_000).tolist()
    fo = FactorOracle()
    fo.extend(seq)
    return seq, fo


def walk(imp, steps):
    out = []
    for _ in range(steps):
        state = imp.step()
        out.append((state, imp.last_kind, imp.last_pivot))
    return out


@pytest.mark.parametrize("continuity", [0.5, 0.8])
def test_forward_share_matches_continuity(symbolic, continuity):
    _, fo = symbolic
    imp = Improviser(fo, GenerationConfig(mode="lead", continuity=continuity, max_continuity=10**6, min_context=1,
                                          taboo_length=2, seed=7))
    kinds = [kind for _, kind, _ in walk(imp, 10_000)]
    assert abs(kinds.count("forward") / len(kinds) - continuity) <= 0.03


@pytest.mark.parametrize("min_context", [1, 2, 3])
def test_jumps_share_min_context(symbolic, min_context):
    seq, fo = symbolic
    labels = [-1] + seq
    imp = Improviser(fo, GenerationConfig(mode="lead", continuity=0.5, max_continuity=6, min_context=min_context,
                                          taboo_length=4, seed=3))
    history = walk(imp, 3000)
    jumps = 0
    played = []
    for state, kind, pivot in history:
        if kind == "jump":
            jumps += 1
            source = played[-1]
            assert state == pivot + 1
            # brute force: the min_context symbols ending at source equal those ending at the pivot
            assert labels[source - min_context + 1:source + 1] == labels[pivot - min_context + 1:pivot + 1]
            assert pivot - min_context + 1 >= 1
        played.append(state)
    assert jumps > 300


def test_max_continuity_and_taboo(symbolic):
    _, fo = symbolic
    cfg = GenerationConfig(mode="lead", continuity=0.95, max_continuity=3, min_context=1, taboo_length=6, seed=11)
    history = walk(Improviser(fo, cfg), 5000)
    states = [s for s, _, _ in history]
    run = 0
    for _, kind, _ in history:
        run = run + 1 if kind == "forward" else 0
        assert run <= 3
    for i, state in enumerate(states):
        assert state not in states[max(0, i - 6):i]


def test_deterministic_for_seed(symbolic):
    _, fo = symbolic
    cfg = GenerationConfig(mode="lead", seed=5)
    a, b = Improviser(fo, cfg), Improviser(fo, cfg)
    assert walk(a, 500) == walk(b, 500)
    assert a.next_notes(now_s=0.0) == b.next_notes(now_s=0.0)
    c = Improviser(fo, GenerationConfig(mode="lead", seed=6))
    assert [s for s, _, _ in walk(c, 500)] != [s for s, _, _ in walk(Improviser(fo, cfg), 500)]


def structured_oracle(n=3000, seed=1):
    """Features drift slowly (a random walk), so neighbours in time are near in feature space."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 12, n)
    x = np.cumsum(rng.normal(scale=0.3, size=(n, 4)), axis=0)
    ao = AudioOracle(0.8, 4)
    ao.extend(x, tokens=tokens.tolist())
    return ao, x, tokens


def mean_distance(mode, ao, live, live_token, steps=400):
    imp = Improviser(ao, GenerationConfig(mode=mode, seed=2, continuity=0.8))
    distances = []
    for i in range(steps):
        if i % 8 == 0:
            imp.observe(live_token, live)
        state = imp.step()
        distances.append(np.linalg.norm(ao.features_of(state) - live))
    return float(np.mean(distances))


def test_contrast_farther_than_imitate_and_random():
    ao, x, tokens = structured_oracle()
    live_index = 1500
    live = x[live_index]
    token = int(tokens[live_index])
    contrast = mean_distance("contrast", ao, live, token)
    imitate = mean_distance("imitate", ao, live, token)
    random_walk = mean_distance("lead", ao, live, token)
    assert contrast > imitate
    assert contrast > random_walk


def test_contrast_distances_vectorised_equal_per_state():
    ao, x, tokens = structured_oracle()
    imp = Improviser(ao, GenerationConfig(mode="contrast", seed=0))
    imp.observe(int(tokens[10]), x[10] + 0.5)
    states = np.random.default_rng(4).integers(1, ao.n_states, 64)
    np.testing.assert_allclose(imp._distances(states), [imp._distance(int(s)) for s in states], rtol=1e-12)
    symbolic_imp = Improviser(FactorOracle(), GenerationConfig(mode="contrast"))
    assert symbolic_imp._distances([1, 2]).tolist() == [0.0, 0.0]  # no features: no preference


def test_imitate_continues_longest_live_context(symbolic):
    seq, fo = symbolic
    imp = Improviser(fo, GenerationConfig(mode="imitate", seed=1, min_context=1))
    start = next(i for i in range(1000, 2000) if fo.find_context(seq[i:i + 6]) != -1)
    live = seq[start:start + 6]
    for token in live:
        imp.observe(token)
    state = imp.step()
    assert imp.last_kind == "anchor"
    assert seq[state - 1 - 6:state - 1] == live  # the state after a full occurrence of the live context


def test_notes_ranges_ids_and_trace():
    rng = np.random.default_rng(3)
    ao = AudioOracle(0.5, 3)
    for i in range(400):
        d = EventDescriptors(onset_s=i * 0.2, duration_s=0.2, rms=0.1, velocity=int(rng.integers(1, 128)),
                             f0_hz=float(rng.choice([0.0, 55.0, 440.0, 3000.0])), f0_confidence=0.5,
                             chroma_peaks=(int(rng.integers(0, 12)),))
        ao.add(rng.normal(size=3), token=i % 5, descriptors=d, event_id=500 + i)
    cfg = GenerationConfig(mode="lead", seed=4, melody_range=(50, 70), bass_range=(36, 47))
    imp = Improviser(ao, cfg)
    notes, now = [], 10.0
    for _ in range(40):
        chunk = imp.next_notes(now_s=now, max_notes=6)
        assert chunk and chunk[0].t_on == now
        assert len([n for n in chunk if n.voice == "melody"]) <= 6
        notes += chunk
        now = imp.phrase_end_s
    ids = [n.note_id for n in notes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for note in notes:
        low, high = cfg.melody_range if note.voice == "melody" else cfg.bass_range
        assert low <= note.pitch <= high
        info = ao.state_info(note.source_state)
        assert note.source_event_id == info.event_id and note.velocity == info.velocity
        assert note.t_off - note.t_on == pytest.approx(0.9 * 0.2 if note.voice == "melody" else 0.95 * 0.2)
        if info.f0_hz == 440.0 and note.voice == "melody":
            assert note.pitch % 12 == 9
        elif info.f0_hz == 0.0:
            assert note.pitch % 12 == info.chroma_peaks[0]
    assert Improviser(ao, GenerationConfig(density=0.0)).next_notes(now_s=0.0) == []
    with pytest.raises(ParameterError):
        imp.next_notes(now_s=0.0, max_notes=0)
    with pytest.raises(ParameterError):
        imp.observe(-3)
    assert fold_pitch(61, low=48, high=50) == 49 and fold_pitch(66, low=48, high=50) in (48, 50)
