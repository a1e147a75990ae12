"""faiss_gmm.GaussianMixture against sklearn.mixture.GaussianMixture.

Both start from the same model (weights_init, means_init, precisions_init)
and run the same number of EM iterations (tol=0) on the same data, so they
must agree up to float32 arithmetic: faiss_gmm computes the log-joint in
float32 and the sufficient statistics in double, sklearn everything in
float64. Tolerances, and the largest deviation measured on this data
(4000 x 16, 8 components, 1 and 10 iterations, diag and spherical):
lower bound 1e-6 relative (4e-8), weights 1e-5 absolute (4e-7), means 1e-4
absolute at a data scale of ~4 (1.7e-5), variances and precisions 1e-4
relative (8e-6); scoring one given model (score_samples, score, bic, aic)
1e-5 relative. Full covariance (same data, same tolerances except where
said): covariances_, precisions_ and precisions_cholesky_ compared entry by
entry with atol 1e-4 x the largest entry of each matrix (off-diagonal
entries can be ~0, so no relative bound applies to them); measured after 10
iterations: lower bound 2.6e-8, weights 2.7e-7, means 6.5e-6, covariances
7.0e-6, precisions 6.7e-6, precision Cholesky factors 9.3e-6.
"""

import pathlib
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import faiss_gmm

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGaussianMixture  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

K = 8


def initial_model(x, covariance_type, k=K, seed=1):
    """A rough starting model: k data points as means, unit weights split
    evenly, variances from the data."""
    rng = np.random.default_rng(seed)
    means = x[rng.choice(len(x), k, replace=False)].astype(np.float64)
    weights = np.full(k, 1.0 / k)
    var = x.var(axis=0).astype(np.float64)
    if covariance_type == "diag":
        precisions = np.tile(1.0 / var, (k, 1))
    elif covariance_type == "full":
        precisions = np.tile(np.diag(1.0 / var), (k, 1, 1))
    else:
        precisions = np.full(k, 1.0 / var.mean())
    return weights, means, precisions


def fit_both(x, covariance_type, max_iter):
    weights, means, precisions = initial_model(x, covariance_type)
    common = dict(
        n_components=K,
        covariance_type=covariance_type,
        tol=0.0,
        reg_covar=0.0,
        max_iter=max_iter,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = faiss_gmm.GaussianMixture(device="cpu", **common).fit(x)
        ref = SkGaussianMixture(**common).fit(x.astype(np.float64))
    return ours, ref


def assert_close_matrices(ours, ref, rel):
    """Each (d, d) matrix entry by entry, within rel x its largest entry."""
    assert ours.shape == ref.shape
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True)
    worst = (np.abs(ours - ref) / scale).max()
    assert worst < rel, f"largest deviation {worst:.2e} of the matrices' largest entries"


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "full"])
@pytest.mark.parametrize("max_iter", [1, 10])
def test_same_em_as_sklearn(blobs, covariance_type, max_iter):
    ours, ref = fit_both(blobs, covariance_type, max_iter)
    assert ours.n_iter_ == ref.n_iter_ == max_iter
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(ours.weights_, ref.weights_, atol=1e-5)
    np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-4)
    assert ours.covariances_.shape == ref.covariances_.shape
    if covariance_type == "full":
        assert ours.precisions_cholesky_.shape == ref.precisions_cholesky_.shape
        assert_close_matrices(ours.covariances_, ref.covariances_, 1e-4)
        assert_close_matrices(ours.precisions_, ref.precisions_, 1e-4)
        assert_close_matrices(ours.precisions_cholesky_, ref.precisions_cholesky_, 1e-4)
        # upper triangular, as sklearn's
        assert np.all(np.tril(ours.precisions_cholesky_, -1) == 0)
        return
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-4)
    np.testing.assert_allclose(ours.precisions_, ref.precisions_, rtol=1e-4)
    np.testing.assert_allclose(
        ours.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-4
    )


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "full"])
def test_same_scores_as_sklearn(blobs, covariance_type):
    """Scoring methods on one fitted model: sklearn is given our parameters."""
    ours, ref = fit_both(blobs, covariance_type, 5)
    ref.weights_ = ours.weights_.astype(np.float64)
    ref.means_ = ours.means_.astype(np.float64)
    ref.covariances_ = ours.covariances_.astype(np.float64)
    if covariance_type == "full":
        ref.precisions_cholesky_ = ours.precisions_cholesky_.astype(np.float64)
    else:
        ref.precisions_cholesky_ = 1 / np.sqrt(ref.covariances_)
    x = blobs[:1000]
    np.testing.assert_allclose(ours.score_samples(x), ref.score_samples(x), rtol=1e-5)
    assert ours.score(x) == pytest.approx(ref.score(x), rel=1e-5)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-4)
    assert (ours.predict(x) == ref.predict(x)).mean() >= 0.999
    assert ours.bic(x) == pytest.approx(ref.bic(x.astype(np.float64)), rel=1e-5)
    assert ours.aic(x) == pytest.approx(ref.aic(x.astype(np.float64)), rel=1e-5)


def test_own_initialisation_reaches_sklearns_optimum(blobs):
    """Own initialisation, default tol: k-means++ seeding (best of 4 runs)
    reaches the likelihood sklearn reaches from its k-means. (FAISS's
    k-means init, the default, seeds from random points and merged two
    blobs on this data in each of 4 seeds: see the module docstring.)"""
    ours = faiss_gmm.GaussianMixture(
        K, init_params="k-means++", n_init=4, random_state=0, device="cpu"
    ).fit(blobs)
    ref = SkGaussianMixture(K, covariance_type="diag", random_state=0).fit(blobs)
    assert ours.converged_ and ref.converged_
    assert 1 <= ours.n_iter_ <= 100
    assert ours.lower_bound_ == ours.lower_bounds_[-1]
    assert len(ours.lower_bounds_) == ours.n_iter_
    assert ours.score(blobs) == pytest.approx(ref.score(blobs), rel=1e-4)


def test_shapes_and_methods(blobs):
    x = blobs
    for cov, shape in [
        ("diag", (K, 16)),
        ("spherical", (K,)),
        ("tied_spherical", (K,)),
        ("full", (K, 16, 16)),
    ]:
        g = faiss_gmm.GaussianMixture(K, covariance_type=cov, random_state=0, max_iter=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = g.fit_predict(x)
        assert g.covariances_.shape == shape
        assert g.means_.shape == (K, 16) and g.weights_.shape == (K,)
        assert g.weights_.sum() == pytest.approx(1, abs=1e-5)
        assert labels.shape == (len(x),) and labels.dtype == np.int64
        proba = g.predict_proba(x)
        assert proba.shape == (len(x), K)
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_array_equal(proba.argmax(axis=1), labels)
        if cov == "tied_spherical":
            assert np.all(g.covariances_ == g.covariances_[0])
        if cov == "full":
            assert g.precisions_cholesky_.shape == shape == g.precisions_.shape
            # U U^T Sigma = I
            eye = np.einsum("kij,kjl->kil", g.precisions_.astype(np.float64), g.covariances_)
            np.testing.assert_allclose(eye, np.broadcast_to(np.eye(16), eye.shape), atol=1e-3)


def test_sparse_top_m_posteriors(blobs):
    g = faiss_gmm.GaussianMixture(K, random_state=0).fit(blobs)
    x = blobs[:500]
    dense = g.predict_proba(x)
    post, comp = g.predict_proba_top(x, 3)
    assert post.shape == comp.shape == (500, 3)
    np.testing.assert_array_equal(comp[:, 0], g.predict(x))
    np.testing.assert_allclose(post, np.take_along_axis(dense, comp, axis=1), atol=1e-5)
    assert np.all(np.diff(post, axis=1) <= 0)
    sparse = g.predict_proba_sparse(x, 3)
    assert sparse.shape == (500, K)
    np.testing.assert_allclose(sparse.toarray()[np.arange(500)[:, None], comp], post)
    with pytest.raises(ValueError, match="m = 0"):
        g.predict_proba_top(x, 0)


def test_n_init_keeps_the_best(blobs):
    one = faiss_gmm.GaussianMixture(K, n_init=1, random_state=3, init_params="random_from_data").fit(blobs)
    three = faiss_gmm.GaussianMixture(K, n_init=3, random_state=3, init_params="random_from_data").fit(blobs)
    assert three.lower_bound_ >= one.lower_bound_


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_pickle_and_sample(blobs, covariance_type):
    g = faiss_gmm.GaussianMixture(K, covariance_type=covariance_type, random_state=0).fit(blobs)
    g2 = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(g2.predict(blobs), g.predict(blobs))
    np.testing.assert_array_equal(g2.score_samples(blobs), g.score_samples(blobs))
    xs, ls = g.sample(2000)
    assert xs.shape == (2000, 16) and ls.shape == (2000,)
    # samples come from the model: most are assigned to the component that drew them
    assert (g.predict(xs) == ls).mean() > 0.9


def test_full_beats_diag_on_correlated_data():
    """Correlated clusters: the full model's likelihood is far higher, and
    sklearn's full model from its own init reaches the same optimum."""
    rng = np.random.default_rng(5)
    d, k = 6, 3
    mix = rng.normal(0, 0.8, (k, d, d))
    centers = rng.normal(0, 6, (k, d))
    labels = rng.integers(0, k, 3000)
    x = centers[labels] + np.einsum("nij,nj->ni", mix[labels], rng.standard_normal((3000, d)))
    x = np.ascontiguousarray(x, dtype=np.float32)
    scores = {}
    for cov in ("diag", "full"):
        g = faiss_gmm.GaussianMixture(
            k, covariance_type=cov, init_params="k-means++", n_init=3, random_state=0, device="cpu"
        ).fit(x)
        scores[cov] = g.score(x)
    assert scores["full"] > scores["diag"] + 1.0
    ref = SkGaussianMixture(k, covariance_type="full", n_init=3, random_state=0).fit(x)
    assert scores["full"] == pytest.approx(ref.score(x.astype(np.float64)), rel=1e-3)
    model = g.model_
    assert model.covariance == "full"
    with warnings.catch_warnings():  # 2 iterations may or may not converge
        warnings.simplefilter("ignore", ConvergenceWarning)
        diag = faiss_gmm.GaussianMixture(k, covariance_type="diag", max_iter=2).fit(x)
    with pytest.raises(ValueError, match="full covariance only"):
        diag.model_.covariances


def test_errors(blobs):
    with pytest.raises(ValueError, match="'fulll' is not one of"):
        faiss_gmm.GaussianMixture(2, covariance_type="fulll").fit(blobs)
    with pytest.raises(ValueError, match="positive-definite"):
        faiss_gmm.GaussianMixture(
            2,
            covariance_type="full",
            means_init=blobs[:2],
            weights_init=np.array([0.5, 0.5]),
            precisions_init=np.tile(np.diag(np.r_[-1.0, np.ones(15)]), (2, 1, 1)),
        ).fit(blobs)
    with pytest.raises(ValueError, match="'tied'.*not implemented"):
        faiss_gmm.GaussianMixture(2, covariance_type="tied").fit(blobs)
    with pytest.raises(ValueError, match="init_params='random'"):
        faiss_gmm.GaussianMixture(2, init_params="random").fit(blobs)
    with pytest.raises(ValueError, match="device='tpu'"):
        faiss_gmm.GaussianMixture(2, device="tpu").fit(blobs)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        faiss_gmm.GaussianMixture(10).fit(blobs[:5])
    bad = blobs[:100].copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        faiss_gmm.GaussianMixture(2).fit(bad)
    g = faiss_gmm.GaussianMixture(2, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="16 features"):
        g.predict(blobs[:, :8])
    with pytest.raises(faiss_gmm.mixture.NotFittedError):
        faiss_gmm.GaussianMixture(2).predict(blobs)
    if not faiss_gmm.has_gpu:
        with pytest.raises(RuntimeError, match="without CUDA"):
            faiss_gmm.GaussianMixture(2, device="cuda").fit(blobs)


def test_float64_input_is_converted(blobs):
    a = faiss_gmm.GaussianMixture(K, random_state=0).fit(blobs)
    b = faiss_gmm.GaussianMixture(K, random_state=0).fit(blobs.astype(np.float64))
    np.testing.assert_array_equal(a.means_, b.means_)


@pytest.mark.parametrize(
    "estimator",
    [
        faiss_gmm.GaussianMixture(),
        faiss_gmm.GaussianMixture(3, covariance_type="spherical", init_params="k-means++"),
    ],
    ids=["default", "spherical-kmeans++"],
)
def test_sklearn_estimator_checks(estimator):
    """Every check of sklearn's check_estimator that applies passes (the array
    API check skips itself unless SCIPY_ARRAY_API is set)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert failed == []
    assert sum(r["status"] == "passed" for r in results) >= 35


def test_bench_sklearn_runs_and_agrees():
    """python/bench/bench_sklearn.py at a small size: one line per
    covariance type, and the two fits' log-likelihoods agree (same init)."""
    script = pathlib.Path(__file__).parents[1] / "bench" / "bench_sklearn.py"
    args = ["--n", "3000", "--d", "8", "--k", "4", "--iters", "5", "--repeats", "1"]
    out = subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    ).stdout
    for cov in ("diag", "full"):
        line = next(row for row in out.splitlines() if row.startswith(cov + ":"))
        found = re.search(r"log-likelihood (\S+) vs (\S+);", line)
        ours, theirs = float(found.group(1)), float(found.group(2))
        assert abs(ours - theirs) <= 1e-5 * abs(theirs), line
