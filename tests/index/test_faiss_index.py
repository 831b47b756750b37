"""Index type choice, approximate recall against the exact oracle, per-call search parameters."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from index.errors import IndexConfigError
from index.faiss_index import IndexSettings, build_faiss_index, resolve_params, search_parameters

DIM = 32


def _unit_vectors(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, DIM))
    vectors = centers[rng.integers(0, 64, count)] + 0.3 * rng.standard_normal((count, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)  # [count, dim]


@pytest.fixture(scope="module")
def data():
    return _unit_vectors(10_000, 0), _unit_vectors(100, 1)


def _recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))


@pytest.mark.parametrize("count,expected", [(10, "flat"), (1000, "flat"), (1001, "ivf")])
def test_auto_type_by_count(count, expected):
    assert resolve_params(count, DIM, IndexSettings(exact_max=1000)).index_type == expected


def test_ivf_list_count_bounded_by_data():
    params = resolve_params(100, DIM, IndexSettings(index_type="ivf"))
    assert params.nlist == 2  # 100 // 39 points per centroid
    assert 1 <= params.nprobe <= params.nlist


@pytest.mark.parametrize("settings", [dict(index_type="annoy"), dict(exact_max=-1), dict(ivf_nlist=0),
                                      dict(hnsw_m=1)])
def test_invalid_settings_rejected(settings):
    with pytest.raises(IndexConfigError):
        IndexSettings(**settings)


def test_flat_equals_brute_force(data):
    base, queries = data
    index = build_faiss_index(base, resolve_params(len(base), DIM, IndexSettings(index_type="flat")))
    scores, labels = index.search(queries, 10)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ base.T, expected, axis=1), rtol=1e-5)


@pytest.mark.parametrize("index_type,search_kwargs", [("ivf", {"nprobe": 16}), ("hnsw", {"ef_search": 512})])
def test_approximate_recall(data, index_type, search_kwargs):
    base, queries = data
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    params = resolve_params(len(base), DIM, IndexSettings(index_type=index_type))
    index = build_faiss_index(base, params)
    _, labels = index.search(queries, 10, params=search_parameters(params, **search_kwargs))
    assert _recall_at_10(labels, exact) >= 0.95


def test_search_parameters_leave_index_unchanged(data):
    base, queries = data
    params = resolve_params(len(base), DIM, IndexSettings(index_type="ivf"))
    index = build_faiss_index(base, params)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    results = {}

    def search(nprobe: int) -> None:
        _, labels = index.search(queries, 10, params=search_parameters(params, nprobe=nprobe))
        results[nprobe] = _recall_at_10(labels, exact)

    threads = [threading.Thread(target=search, args=(nprobe,)) for nprobe in (1, params.nlist)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert faiss.extract_index_ivf(index).nprobe == params.nprobe
    assert results[params.nlist] == 1.0
    assert results[1] < results[params.nlist]


def test_invalid_search_parameters_rejected():
    params = resolve_params(10_000, DIM, IndexSettings(index_type="ivf"))
    with pytest.raises(IndexConfigError):
        search_parameters(params, nprobe=0)


def test_gpu_request_without_gpu_rejected(data):
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    params = resolve_params(len(data[0]), DIM, IndexSettings(index_type="ivf"))
    with pytest.raises(IndexConfigError, match="finds no GPU"):
        build_faiss_index(data[0], params, use_gpu=True)
