"""The CUDA parts: skipped, with the reason, unless this build has CUDA and a
device is usable."""

import warnings

import numpy as np
import pytest

import faiss_gmm
from conftest import make_blobs

pytestmark = pytest.mark.skipif(
    not (faiss_gmm.has_gpu and faiss_gmm.gpu_is_available(0)),
    reason="no usable CUDA device" if faiss_gmm.has_gpu else "this faiss_gmm build has no CUDA",
)


@pytest.fixture(scope="module")
def data():
    x, _ = make_blobs(20000, 32, 16, seed=5)
    return x


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_gpu_em_matches_cpu_em(data, covariance_type):
    """Same start, same iterations: the fp32 GPU E-step gives the CPU's model
    within float32 tolerance."""
    rng = np.random.default_rng(0)
    means = data[rng.choice(len(data), 16, replace=False)]
    common = dict(
        n_components=16,
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=8,
        means_init=means,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = faiss_gmm.GaussianMixture(device="cpu", **common).fit(data)
        gpu = faiss_gmm.GaussianMixture(device="cuda", precision="fp32", **common).fit(data)
    assert gpu.n_iter_ == cpu.n_iter_ == 8
    assert gpu.lower_bound_ == pytest.approx(cpu.lower_bound_, rel=1e-5)
    np.testing.assert_allclose(gpu.means_, cpu.means_, atol=1e-3)
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, atol=1e-4)
    np.testing.assert_allclose(gpu.covariances_, cpu.covariances_, rtol=1e-3)


def test_gpu_fit_with_own_initialisation(data):
    g = faiss_gmm.GaussianMixture(16, device="cuda", precision="bf16", random_state=0).fit(data)
    c = faiss_gmm.GaussianMixture(16, device="cpu", random_state=0).fit(data)
    assert g.converged_
    assert g.score(data) == pytest.approx(c.score(data), rel=0.02)


def test_index_to_gpu_and_back(data):
    base, queries = data[:18000], data[18000:]
    cpu = faiss_gmm.index_factory(32, "IVF64_GMM,Flat")
    cpu.train(base)
    cpu.add(base)
    gpu = faiss_gmm.index_cpu_to_gpu(cpu)
    assert isinstance(gpu, faiss_gmm.GpuIndexIVFGMM)
    assert gpu.ntotal == cpu.ntotal and gpu.nentries == cpu.nentries
    d_cpu, i_cpu = cpu.search(queries, 10, nprobe=64, prune_margin=0)
    d_gpu, i_gpu = gpu.search(queries, 10, nprobe=64, prune_margin=0)
    assert (i_gpu == i_cpu).mean() > 0.999
    np.testing.assert_allclose(d_gpu, d_cpu, rtol=1e-4, atol=1e-3)
    back = faiss_gmm.index_gpu_to_cpu(gpu)
    assert isinstance(back, faiss_gmm.IndexIVFGMM)
    np.testing.assert_array_equal(back.search(queries, 10, nprobe=8)[1], cpu.search(queries, 10, nprobe=8)[1])
