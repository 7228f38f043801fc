from __future__ import annotations

import numpy as np
import pytest

from services.encoder.quantizer import PCAReducer, SymbolQuantizer
from shared.errors import ModelFormatError, ParameterError
from shared.model_io import load_model, save_model


def _clusters(n_per=30, d=8, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    return np.concatenate([c + rng.normal(scale=0.1, size=(n_per, d)) for c in centers]), np.repeat(np.arange(k), n_per)


def test_fit_separates_clusters_and_is_deterministic():
    data, labels = _clusters()
    q1 = SymbolQuantizer(5, l2_normalize=False, seed=3).fit(data)
    q2 = SymbolQuantizer(5, l2_normalize=False, seed=3).fit(data)
    tokens = q1.transform(data)
    assert np.array_equal(tokens, q2.transform(data))
    for label in range(5):  # each true cluster maps to one token, all distinct
        assert len(set(tokens[labels == label].tolist())) == 1
    assert len(set(tokens.tolist())) == 5
    usage = q1.usage(tokens)
    assert usage["used_fraction"] == 1.0 and usage["entropy_bits"] == pytest.approx(np.log2(5))


def test_single_rows_equal_batch_tokens():
    data, _ = _clusters(d=64, k=8)
    q = SymbolQuantizer(16).fit(data)
    batch = q.transform(data)
    assert [q.transform_one(row) for row in data] == batch.tolist()


def test_fewer_distinct_points_than_vocabulary():
    data = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    q = SymbolQuantizer(64).fit(data)
    assert q.n_centroids == 2
    assert q.transform(data).tolist()[0] == q.transform(data).tolist()[2] != q.transform(data).tolist()[1]
    collapsed = q.usage(np.zeros(10, dtype=int))
    assert collapsed["entropy_bits"] == 0.0 and collapsed["used"] == 1


def test_partial_fit_buffers_then_learns():
    data, labels = _clusters(n_per=100, k=4)
    q = SymbolQuantizer(4, l2_normalize=False)
    order = np.random.default_rng(0).permutation(len(data))
    for chunk in np.array_split(data[order], 10):
        q.partial_fit(chunk)
    tokens = q.transform(data)
    assert q.n_centroids == 4 and len(set(tokens.tolist())) == 4


def test_round_trip_through_model_io(tmp_path):
    data, _ = _clusters(d=16)
    q = SymbolQuantizer(6, seed=1).fit(data)
    pca = PCAReducer(4).fit(data)
    arrays = {f"q.{k}": v for k, v in q.to_arrays().items()} | {f"p.{k}": v for k, v in pca.to_arrays().items()}
    save_model(tmp_path / "m.json", {"q": q.meta(), "p": pca.meta()}, arrays)
    meta, loaded = load_model(tmp_path / "m.json")
    q2 = SymbolQuantizer.from_arrays(meta["q"], {k[2:]: v for k, v in loaded.items() if k.startswith("q.")})
    p2 = PCAReducer.from_arrays(meta["p"], {k[2:]: v for k, v in loaded.items() if k.startswith("p.")})
    assert np.array_equal(q.transform(data), q2.transform(data))
    assert np.array_equal(pca.transform(data), p2.transform(data))


def test_pca_matches_sklearn_and_rows_are_batch_independent():
    from sklearn.decomposition import PCA

    data, _ = _clusters(d=12)
    pca = PCAReducer(3).fit(data)
    reference = PCA(3, svd_solver="full").fit_transform(data)
    ours = pca.transform(data)
    assert np.allclose(np.abs(ours), np.abs(reference), atol=1e-4)
    assert np.array_equal(np.concatenate([pca.transform(row) for row in data]), ours)


def test_bad_inputs_and_bad_arrays():
    q = SymbolQuantizer(4)
    with pytest.raises(ParameterError):
        q.transform(np.zeros((2, 3)))  # not fitted
    with pytest.raises(ParameterError):
        q.fit(np.zeros((0, 3)))
    with pytest.raises(ParameterError):
        q.fit(np.array([[np.nan, 1.0]]))
    q.fit(np.eye(3))
    with pytest.raises(ParameterError):
        q.transform(np.zeros((1, 4)))
    with pytest.raises(ModelFormatError):
        SymbolQuantizer.from_arrays(q.meta(), {"centroids": np.zeros((3, 4), np.float32)})
    with pytest.raises(ModelFormatError):
        SymbolQuantizer.from_arrays(q.meta(), {})
    with pytest.raises(ModelFormatError):
        PCAReducer.from_arrays({"kind": "pca"}, {})
    with pytest.raises(ParameterError):
        PCAReducer(2).fit(np.zeros((1, 3)))
