"""Symbolic factor oracle: known tables, vmo equality, brute-force properties, persistence.

Only ``test_equals_vmo`` imports vmo (a required dev dependency: missing, that test fails; the rest still run).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.oracle.memory.factor_oracle import FactorOracle
from shared.errors import ModelFormatError, ParameterError
from shared.model_io import load_model, save_model
from testkit.reference_factor_oracle import ReferenceFactorOracle, reference_model_parts

sequences = st.lists(st.integers(0, 3), min_size=1, max_size=40)


def build(seq):
    fo = FactorOracle()
    fo.extend(seq)
    return fo


def letters(text):
    return [ord(c) - ord("a") for c in text]


def test_abbbaab_link_by_link():
    # Allauzen, Crochemore & Raffinot (1999) Fig. 1 / Lefebvre & Lecroq: p = abbbaab
    fo = build(letters("abbbaab"))
    assert list(fo.sfx) == [-1, 0, 0, 2, 3, 1, 1, 2]
    assert list(fo.lrs) == [0, 0, 0, 1, 2, 1, 1, 2]
    a, b = 0, 1
    expected = {
        0: {a: 1, b: 2},
        1: {b: 2, a: 6},
        2: {b: 3, a: 5},
        3: {b: 4, a: 5},
        4: {a: 5},
        5: {a: 6},
        6: {b: 7},
        7: {},
    }
    assert {s: fo.transitions(s) for s in range(fo.n_states)} == expected
    assert [fo.rsfx(s) for s in range(fo.n_states)] == [[1, 2], [5, 6], [3, 7], [4], [], [], [], []]


def test_abcabcabd_link_by_link():
    fo = build(letters("abcabcabd"))
    assert list(fo.sfx) == [-1, 0, 0, 0, 1, 2, 3, 4, 5, 0]
    assert list(fo.lrs) == [0, 0, 0, 0, 1, 2, 3, 4, 5, 0]
    a, b, c, d = 0, 1, 2, 3
    assert fo.transitions(0) == {a: 1, b: 2, c: 3, d: 9}
    assert fo.transitions(2) == {c: 3, d: 9}
    assert fo.transitions(5) == {c: 6, d: 9}
    for s in (1, 3, 4, 6, 7, 8):
        assert fo.transitions(s) == {fo.symbols[s + 1]: s + 1}


def vmo_tables(seq):
    import vmo  # a required dev dependency: only the vmo-equality test needs it, and its absence fails that test

    o = vmo.build_oracle(seq, "f")
    return ([-1 if s is None else s for s in o.sfx], list(o.lrs), [list(t) for t in o.trn], [list(r) for r in o.rsfx])


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_equals_vmo(seq):
    fo = build(seq)
    assert (
        list(fo.sfx),
        list(fo.lrs),
        [fo.transition_targets(s) for s in range(fo.n_states)],
        [fo.rsfx(s) for s in range(fo.n_states)],
    ) == vmo_tables(seq)


def true_lrs(seq, i):
    for length in range(i - 1, 0, -1):
        suffix = seq[i - length : i]
        if any(seq[j - length : j] == suffix for j in range(length, i)):
            return length
    return 0


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_brute_force_properties(seq):
    """Brute force: every factor is accepted, read no further than its first occurrence; suffix links repeat.

    The Lefebvre-Lecroq LRS as implemented by vmo (and here) is sound but can fall short of the true
    longest repeated suffix on rare inputs (about 0.5 % of random short sequences over 4 symbols); the
    test checks ``lrs <= true LRS`` and that the context really repeats, which always holds.
    """
    fo = build(seq)
    n = len(seq)
    for start in range(n):
        for end in range(start + 1, n + 1):
            word = seq[start:end]
            first = next(j for j in range(len(word), n + 1) if seq[j - len(word) : j] == word)
            state = 0
            for symbol in word:
                state = fo.transition(state, symbol)
            assert 0 < state <= first
            assert fo.find_context(word) in (first, -1)
            if state == first:
                assert fo.find_context(word) == first
    for i in range(1, n + 1):
        length, parent = fo.lrs[i], fo.sfx[i]
        assert 0 <= parent < i
        assert seq[i - length : i] == seq[parent - length : parent]
        assert length <= true_lrs(seq, i)
    # the automaton accepts no factor it should not: every transition target's symbol is the label
    for s in range(fo.n_states):
        for symbol, target in fo.transitions(s).items():
            assert fo.symbols[target] == symbol and target > s


def tables(fo):
    n = fo.n_states
    return (
        fo.sfx.tolist(),
        fo.lrs.tolist(),
        fo.symbols.tolist(),
        [fo.transitions(s) for s in range(n)],
        [fo.rsfx(s) for s in range(n)],
    )


def reference_tables(ref):
    return ref.sfx, ref.lrs, ref.symbols, ref.trn, ref.rsfx


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=0, max_size=120), st.integers(1, 9), st.booleans())
def test_array_layout_equals_pure_python_reference(seq, alphabet, one_by_one):
    """The numba/array oracle has the same tables as the plain dict implementation, also across growth."""
    seq = [s % alphabet for s in seq]
    fo = FactorOracle(capacity=2)  # forces several doublings and rehashes
    if one_by_one:
        for s in seq:
            fo.add(s)
    else:
        fo.extend(seq)
    ref = ReferenceFactorOracle()
    ref.extend(seq)
    assert tables(fo) == reference_tables(ref)
    for s in range(fo.n_states):
        for symbol in range(alphabet + 1):
            assert fo.transition(s, symbol) == ref.trn[s].get(symbol, -1)


def test_large_random_equals_reference_and_big_symbols():
    rng = np.random.default_rng(11)
    seq = rng.integers(0, 40, 20_000)
    seq[::97] = 1 << 40  # symbols beyond 32 bits (the improviser's "unknown token")
    fo = FactorOracle()
    fo.extend(seq)
    ref = ReferenceFactorOracle()
    ref.extend(seq.tolist())
    assert tables(fo) == reference_tables(ref)
    context = seq[5000:5006].tolist()
    end = fo.find_context(context)
    assert end > 0 and fo.symbols[end - 5 : end + 1].tolist() == context


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.lists(st.integers(0, 4), max_size=20))
def test_loads_files_of_the_previous_implementation(seq, more):
    """Models written by the dict implementation (same schema) load to identical tables and keep learning."""
    ref = ReferenceFactorOracle()
    ref.extend(seq)
    meta, arrays = reference_model_parts(ref)
    fo = FactorOracle.from_model_parts(meta, arrays)
    assert tables(fo) == reference_tables(ref)
    meta2, arrays2 = fo.to_model_parts()
    assert meta2 == meta and all(np.array_equal(arrays2[k], arrays[k]) for k in arrays)
    fo.extend(more)
    ref.extend(more)
    assert tables(fo) == reference_tables(ref)


def test_extend_rejects_bad_symbols():
    fo = FactorOracle()
    with pytest.raises(ParameterError):
        fo.extend([1, -2, 3])
    with pytest.raises(ParameterError):
        fo.extend(np.array([0.5, 1.0]))
    assert fo.n_states == 1
    fo.extend(iter([1, 2, 1]))
    assert fo.symbols.tolist() == [-1, 1, 2, 1]


def test_build_100k_and_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 16, 100_000).tolist()
    fo = build(seq)
    assert fo.n_states == 100_001
    meta, arrays = fo.to_model_parts()
    save_model(tmp_path / "fo.json", {"fo": meta}, arrays)
    meta2, arrays2 = load_model(tmp_path / "fo.json")
    back = FactorOracle.from_model_parts(meta2["fo"], arrays2)
    assert list(back.sfx) == list(fo.sfx) and list(back.lrs) == list(fo.lrs) and list(back.symbols) == list(fo.symbols)
    for s in range(0, fo.n_states, 97):
        assert back.transitions(s) == fo.transitions(s)
        assert back.rsfx(s) == fo.rsfx(s)
    # continuing to learn after loading gives the same oracle as never saving
    tail = rng.integers(0, 16, 500).tolist()
    fo.extend(tail)
    back.extend(tail)
    assert list(back.sfx) == list(fo.sfx) and list(back.lrs) == list(fo.lrs)


def test_rejects_bad_data():
    fo = build(letters("abcabcabd"))
    meta, arrays = fo.to_model_parts()
    with pytest.raises(ModelFormatError):
        FactorOracle.from_model_parts({"schema": "nope"}, arrays)
    broken = dict(arrays)
    broken["oracle.sfx"] = arrays["oracle.sfx"][::-1].copy()
    with pytest.raises(ModelFormatError):
        FactorOracle.from_model_parts(meta, broken)
    broken = dict(arrays)
    broken["oracle.trn_src"] = np.r_[arrays["oracle.trn_src"], arrays["oracle.trn_src"][:1]]
    broken["oracle.trn_symbol"] = np.r_[arrays["oracle.trn_symbol"], arrays["oracle.trn_symbol"][:1]]
    broken["oracle.trn_dst"] = np.r_[arrays["oracle.trn_dst"], arrays["oracle.trn_dst"][:1]]
    with pytest.raises(ModelFormatError):  # the same transition twice
        FactorOracle.from_model_parts(meta, broken)
    broken = dict(arrays)
    broken["oracle.trn_dst"] = arrays["oracle.trn_dst"] + 100
    with pytest.raises(ModelFormatError):
        FactorOracle.from_model_parts(meta, broken)
    with pytest.raises(ModelFormatError):
        FactorOracle.from_model_parts(meta, {k: v for k, v in arrays.items() if k != "oracle.lrs"})
    with pytest.raises(ParameterError):
        FactorOracle().add(-1)
