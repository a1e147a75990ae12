"""The index API: factory strings, FAISS's methods on numpy arrays, search
parameters as keyword arguments, I/O, statistics and errors."""

import copy
import pickle
import threading

import numpy as np
import pytest

import faiss_gmm
from conftest import make_blobs

D = 16


@pytest.fixture(scope="module")
def data():
    x, _ = make_blobs(6000, D, 32, seed=2)
    return x[:5000], x[5000:]  # base, queries


@pytest.fixture(scope="module")
def index(data):
    base, _ = data
    idx = faiss_gmm.index_factory(D, "IVF32_GMM,Flat")
    idx.train(base)
    idx.add(base)
    return idx


def brute_force(base, queries, k):
    d2 = ((queries[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    ids = np.argsort(d2, axis=1)[:, :k]
    return np.take_along_axis(d2, ids, axis=1), ids


def test_factory_types_and_basic_fields(index):
    assert isinstance(index, faiss_gmm.IndexIVFGMM)
    assert index.d == D and index.ntotal == 5000 and index.is_trained
    assert index.nlist == 32
    assert index.nentries >= index.ntotal
    assert index.replication_factor() == pytest.approx(index.nentries / index.ntotal)
    assert index.list_sizes().sum() == index.nentries
    gmm = index.gmm
    assert gmm.k == 32 and gmm.d == D and gmm.means.shape == (32, D)
    assert "IndexIVFGMM" in repr(index)
    # strings without a GMM token are plain FAISS indexes
    flat = faiss_gmm.index_factory(D, "Flat")
    assert type(flat) is faiss_gmm.Index and "IndexFlat" in repr(flat)
    wrapped = faiss_gmm.index_factory(D, "PCA8,IVF16_GMM,Flat")
    assert type(wrapped) is faiss_gmm.Index
    assert isinstance(faiss_gmm.extract_index_ivfgmm(wrapped), faiss_gmm.IndexIVFGMM)
    assert faiss_gmm.extract_index_ivfgmm(flat) is None


def test_exact_search_matches_brute_force(index, data):
    base, queries = data
    dist, ids = index.search(queries, 10, nprobe=32, prune_margin=0)
    assert dist.dtype == np.float32 and ids.dtype == np.int64
    assert dist.shape == ids.shape == (1000, 10)
    ref_d, ref_i = brute_force(base, queries, 10)
    assert (ids == ref_i).mean() > 0.999  # ties may swap
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-3)
    for row in ids:
        assert len(set(row.tolist())) == len(row)  # each id once


def test_search_keywords_change_the_search(index, data):
    _, queries = data
    faiss_gmm.reset_stats()
    index.search(queries, 10, nprobe=1)
    one = faiss_gmm.get_stats()
    faiss_gmm.reset_stats()
    index.search(queries, 10, nprobe=8, prune_margin=0)
    eight = faiss_gmm.get_stats()
    assert one["nq"] == eight["nq"] == 1000
    assert eight["nfine_distances"] > one["nfine_distances"]
    assert eight["nlists_pruned"] == 0
    assert index.nprobe == 1  # keywords do not change the defaults
    with pytest.raises(ValueError, match="bogus"):
        index.search(queries, 10, bogus=3)
    with pytest.raises(ValueError, match="nprobe"):
        index.search(queries, 10, nprobe=0)
    index.set_search_parameters("nprobe=4,probe=posterior")
    assert "nprobe=4" in index.search_parameters
    index.nprobe = 1
    index.set_search_parameters("probe=l2")


def test_range_search(index, data):
    base, queries = data
    q = queries[:50]
    ref_d, _ = brute_force(base, q, 20)
    radius = float(np.median(ref_d[:, 10]))
    lims, dist, ids = index.range_search(q, radius, nprobe=32, prune_margin=0)
    assert lims.shape == (51,) and lims[-1] == len(dist) == len(ids)
    for i in range(50):
        got = set(ids[lims[i]:lims[i + 1]].tolist())
        d2 = ((base.astype(np.float64) - q[i]) ** 2).sum(1)
        want = set(np.nonzero(d2 < radius)[0].tolist())
        assert len(got ^ want) <= 1  # a distance at the radius may round
        assert np.all(dist[lims[i]:lims[i + 1]] < radius * (1 + 1e-5))


def test_ids_remove_reconstruct_and_io(data, tmp_path):
    base, queries = data
    idx = faiss_gmm.index_factory(D, "IVF16_GMM,Flat")
    idx.train(base)
    ids = np.arange(len(base), dtype=np.int64) * 10 + 7
    idx.add_with_ids(base, ids)
    assert idx.ntotal == len(base)
    np.testing.assert_array_equal(idx.reconstruct(27), base[2])
    _, found = idx.search(base[:5], 1, nprobe=16)
    np.testing.assert_array_equal(found[:, 0], ids[:5])
    assert idx.remove_ids(ids[:100]) == 100
    assert idx.ntotal == len(base) - 100
    _, found = idx.search(base[:100], 5, nprobe=16)
    assert not np.isin(found, ids[:100]).any()
    with pytest.raises(RuntimeError, match="7"):
        idx.reconstruct(7)  # removed
    # files and bytes give the same index back
    fname = str(tmp_path / "ivf.index")
    faiss_gmm.write_index(idx, fname)
    back = faiss_gmm.read_index(fname)
    blob = faiss_gmm.serialize_index(idx)
    again = faiss_gmm.deserialize_index(blob)
    clone = faiss_gmm.clone_index(idx)
    pickled = pickle.loads(pickle.dumps(idx))
    copied = copy.deepcopy(idx)
    want = idx.search(queries, 5, nprobe=4)
    for other in (back, again, clone, pickled, copied):
        assert isinstance(other, faiss_gmm.IndexIVFGMM)
        assert other.ntotal == idx.ntotal and other.nentries == idx.nentries
        got = other.search(queries, 5, nprobe=4)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    idx.reset()
    assert idx.ntotal == 0


def test_codes_and_wrappers(data):
    base, queries = data
    for description in ("IVF16_GMM,SQ8", "PCA8,IVF16_GMM,Flat", "IVF16_GMMdiag_m3,Flat"):
        idx = faiss_gmm.index_factory(D, description)
        idx.train(base)
        idx.add(base)
        dist, ids = idx.search(queries[:20], 5)
        assert ids.shape == (20, 5) and (ids >= 0).all(), description
    plain = faiss_gmm.index_factory(D, "IVF16,Flat")
    plain.train(base)
    plain.add(base)
    _, i1 = plain.search(queries, 5, nprobe=1)
    _, i16 = plain.search(queries, 5, nprobe=16)
    ref = brute_force(base, queries, 5)[1]
    assert (i16 == ref).mean() > (i1 == ref).mean()
    with pytest.raises(ValueError, match="prune_margin"):
        plain.search(queries, 5, prune_margin=0.3)


def test_bad_arrays_raise_value_error(index, data):
    base, queries = data
    with pytest.raises(ValueError, match="float32"):
        index.search(queries.astype(np.float64), 5)
    with pytest.raises(ValueError, match="columns"):
        index.search(queries[:, :8].copy(), 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        index.search(np.asfortranarray(queries), 5)
    with pytest.raises(ValueError, match="2-D"):
        index.search(queries[0], 5)
    with pytest.raises(ValueError, match="int64"):
        index.remove_ids(np.arange(3, dtype=np.int32))
    with pytest.raises(ValueError, match="k = 0"):
        index.search(queries, 0)
    with pytest.raises(TypeError):
        index.search(queries.tolist(), 5)


def test_cpp_errors_raise_runtime_error(data):
    base, _ = data
    with pytest.raises(RuntimeError, match="IVF16_GMMbogus"):
        faiss_gmm.index_factory(D, "IVF16_GMMbogus,Flat")
    idx = faiss_gmm.index_factory(D, "IVF16_GMM,Flat")
    with pytest.raises(RuntimeError, match="not trained"):
        idx.search(base[:2], 1)
    bad = base[:100].copy()
    bad[1, 1] = np.inf
    with pytest.raises(RuntimeError):
        idx.train(bad)
    with pytest.raises(RuntimeError):
        faiss_gmm.read_index("/nonexistent/file.index")
    with pytest.raises(RuntimeError):
        faiss_gmm.deserialize_index(b"GmIv" + b"\0" * 40)
    with pytest.raises(RuntimeError, match="tau"):
        idx.set_build_parameters("tau=7")


def test_inputs_are_used_in_place(index, data):
    """The C++ side reads the caller's buffer: a C-order view into a larger
    array and a read-only array are taken as they are; the outputs are
    fresh numpy arrays."""
    _, queries = data
    big = np.zeros((2000, D), dtype=np.float32)
    big[500:1500] = queries
    view = big[500:1500]
    assert view.base is big and view.flags.c_contiguous
    frozen = queries.copy()
    frozen.flags.writeable = False
    d1, i1 = index.search(view, 3)
    d2, i2 = index.search(frozen, 3)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    assert d1.flags.c_contiguous and d1.flags.writeable
    assert not np.shares_memory(d1, big) and not np.shares_memory(d2, d1)


def test_gil_released_during_search(index, data):
    """Another Python thread runs while a long search is in C++."""
    _, queries = data
    many = np.tile(queries, (40, 1))
    started = threading.Event()

    def work():
        started.set()
        index.search(many, 10, nprobe=32, prune_margin=0)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    ticks = 0
    while t.is_alive():
        ticks += 1
    t.join()
    assert ticks > 10000


def test_concurrent_searches_agree(index, data):
    _, queries = data
    want = index.search(queries, 5, nprobe=4)[1]
    results = [None] * 4

    def work(slot):
        results[slot] = index.search(queries, 5, nprobe=4)[1]

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_gmm_model_round_trip(tmp_path, index, data):
    base, _ = data
    gmm = index.gmm
    fname = str(tmp_path / "model.gmm")
    faiss_gmm.write_gmm(gmm, fname)
    back = faiss_gmm.read_gmm(fname)
    np.testing.assert_array_equal(back.means, gmm.means)
    np.testing.assert_array_equal(back.log_density(base[:10]), gmm.log_density(base[:10]))
    # a model trained here can seed an index
    params = faiss_gmm.GmmParameters()
    params.niter = 3
    model = faiss_gmm.fit_gmm(base, 16, params)
    assert len(model.iteration_stats["log_likelihood"]) <= 3
    idx = faiss_gmm.index_factory(D, "IVF16_GMM,Flat")
    idx.set_gmm(model)
    assert idx.is_trained
    idx.add(base)
    np.testing.assert_array_equal(idx.gmm.means, model.means)
