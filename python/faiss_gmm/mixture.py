"""GaussianMixture with scikit-learn's interface, trained by the C++ EM driver.

EM itself (E-step, M-step, variance floor, re-seeding, convergence test) runs
in C++ (faiss_gmm::GmmEM / gpu::run_em_on_device); this file only validates
arguments, converts arrays and shapes the results as scikit-learn does.

Differences from sklearn.mixture.GaussianMixture, on purpose or for now:

- covariance_type: 'spherical', 'diag', 'full' (sklearn's shapes:
  covariances_ and precisions_cholesky_ (n_components, n_features,
  n_features)) and 'tied_spherical' (one variance shared by every
  component). sklearn's 'tied' (one full matrix shared by the components)
  is not implemented and raises ValueError.
- reg_covar is relative to the data's mean per-dimension variance v =
  mean(var(X, axis=0)): for 'spherical', 'diag' and 'tied_spherical' it is a
  variance *floor* (every variance >= reg_covar * v), where sklearn *adds*
  reg_covar to every variance; for 'full', reg_covar * v is *added* to the
  diagonal of every covariance, as sklearn adds reg_covar. Both default to
  1e-6.
- Computation is float32 (logits) with double-precision sufficient
  statistics; attributes are float32 arrays.
- init_params: 'kmeans' (FAISS's k-means: random seeds, then Lloyd steps),
  'k-means++' (D^2 seeding, no Lloyd steps) and 'random_from_data';
  sklearn's 'random' (random responsibilities) is not implemented. sklearn's
  'kmeans' seeds its k-means with k-means++; FAISS's random seeds can merge
  well-separated clusters (on 8 synthetic blobs in 16-d, 4 seeds of 4 did),
  so for such data use 'k-means++' with n_init > 1. On real data (SIFT) the
  k-means init gave the best IVF (faiss_gmm_eval --ablation).
- A component whose weight collapses is re-seeded by splitting the heaviest
  component instead of failing.
- Convergence: EM stops when the mean log-likelihood gains less than tol
  (sklearn: changes by less than tol in absolute value).
- max_points_per_component > 0 subsamples the training set to
  n_components * max_points_per_component rows (as FAISS's k-means does);
  the default 0 trains on every row, as sklearn does.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _faiss_gmm as _core

try:  # scikit-learn is optional: with it the estimator is a real sklearn one
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import DensityMixin as _DensityMixin
    from sklearn.exceptions import ConvergenceWarning as _ConvergenceWarning
    from sklearn.exceptions import NotFittedError as _NotFittedError

    _BASES: Tuple[type, ...] = (_DensityMixin, _BaseEstimator)
except ImportError:  # pragma: no cover - exercised only without sklearn
    import inspect

    class _ConvergenceWarning(UserWarning):
        """EM stopped at max_iter before converging."""

    class _NotFittedError(ValueError, AttributeError):
        """The estimator is used before fit()."""

    class _Params:
        """get_params / set_params as sklearn.base.BaseEstimator has them."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep: bool = True) -> Dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> "_Params":
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {self!r}")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    _BASES = (_Params,)

NotFittedError = _NotFittedError
ConvergenceWarning = _ConvergenceWarning

#: sklearn name -> C++ name (GmmParameters.covariance)
_COVARIANCE = {
    "spherical": "spherical",
    "diag": "diagonal",
    "full": "full",
    "tied_spherical": "tied",
}
#: sklearn name -> C++ name (GmmParameters.init)
_INIT = {"kmeans": "kmeans", "k-means++": "kmeans++", "random_from_data": "random"}
_DEVICES = ("auto", "cpu", "cuda")
_PRECISIONS = ("fp32", "tf32", "bf16")


def _check_array(X: Any, n_features: Optional[int] = None) -> np.ndarray:
    """X as a 2-D finite float32 C-contiguous array (a copy only when needed)."""
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "GaussianMixture does not accept sparse input: convert it with X.toarray()"
        )
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ValueError("Complex data not supported")
    if X.dtype.kind not in "fiub":
        X = X.astype(np.float64)  # numpy's TypeError / ValueError when it cannot
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data with "
            "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for one sample"
        )
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity (or values too large for float32).")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but GaussianMixture is expecting "
            f"{n_features} features as input."
        )
    return X


def _seed(random_state: Any) -> int:
    """A 31-bit seed from None, an int or a numpy RandomState / Generator."""
    if random_state is None:
        return int(np.random.randint(np.iinfo(np.int32).max))  # the global RandomState
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    raise ValueError(f"random_state={random_state!r} cannot be used to seed EM")


class GaussianMixture(*_BASES):  # type: ignore[misc]
    """Gaussian mixture fitted by EM in C++ (CPU: BLAS + OpenMP; or CUDA).

    scikit-learn's interface and attribute shapes (see the module docstring
    for the differences). The GIL is released while C++ runs.

    Parameters
    ----------
    n_components : int, default 1
    covariance_type : {'spherical', 'diag', 'full', 'tied_spherical'}, default 'diag'
    tol : float, default 1e-3
        Stop when the mean log-likelihood per sample gains less than this.
    reg_covar : float, default 1e-6
        Variance floor relative to the mean per-dimension variance of X
        ('full': added to every covariance's diagonal, relative likewise).
    max_iter : int, default 100
    n_init : int, default 1
        Runs with seeds random_state, +1, ...; the best lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random_from_data'}, default 'kmeans'
    weights_init, means_init, precisions_init : arrays, optional
        Initial model, shaped as sklearn's. Without weights_init /
        precisions_init, weights and variances come from the hard
        assignment of X to means_init.
    random_state : None, int or RandomState
    verbose : int, default 0
        > 0 prints one line per EM iteration (from C++).
    device : {'auto', 'cpu', 'cuda'}, default 'auto'
        'auto' trains on GPU 0 when this build has CUDA and a device is
        usable, except 'full', which 'auto' keeps on the CPU for now
        ('cuda' trains it on the GPU); scoring methods always run on the
        CPU.
    precision : {'fp32', 'tf32', 'bf16'}, default 'fp32'
        Arithmetic of the GPU E-step's products (ignored on the CPU).
    gpu_device : int, default 0
    max_points_per_component : int, default 0
        Subsample X to n_components * this many rows (0: use every row).
    kmeans_niter : int, default 20
        Lloyd iterations of the 'kmeans' initialisation.

    Attributes
    ----------
    weights_ (n_components,), means_ (n_components, n_features),
    covariances_ ((n_components,) spherical / tied_spherical,
    (n_components, n_features) diag, (n_components, n_features,
    n_features) full), precisions_, precisions_cholesky_ (full: upper
    triangular U with precision U U^T, as sklearn's),
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_,
    model_ (the C++ GaussianMixtureModel).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "diag",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Optional[np.ndarray] = None,
        means_init: Optional[np.ndarray] = None,
        precisions_init: Optional[np.ndarray] = None,
        random_state: Any = None,
        verbose: int = 0,
        device: str = "auto",
        precision: str = "fp32",
        gpu_device: int = 0,
        max_points_per_component: int = 0,
        kmeans_niter: int = 20,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.precision = precision
        self.gpu_device = gpu_device
        self.max_points_per_component = max_points_per_component
        self.kmeans_niter = kmeans_niter

    # ------------------------------------------------------------------ fit

    def _check_parameters(self) -> None:
        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name}={v!r} must be an integer >= {low}")

        def real(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")

        integer("n_components", 1)
        integer("max_iter", 0)
        integer("n_init", 1)
        integer("gpu_device", 0)
        integer("max_points_per_component", 0)
        integer("kmeans_niter", 0)
        real("tol")
        real("reg_covar")
        if self.covariance_type == "tied":
            raise ValueError(
                "covariance_type='tied' (one full covariance shared by all components) is "
                "not implemented by faiss_gmm; use 'spherical', 'diag', 'full' or "
                "'tied_spherical'"
            )
        if self.covariance_type not in _COVARIANCE:
            raise ValueError(
                f"covariance_type={self.covariance_type!r} is not one of 'spherical', 'diag', "
                "'full', 'tied_spherical'"
            )
        if self.init_params == "random":
            raise ValueError(
                "init_params='random' (random responsibilities) is not implemented by faiss_gmm; "
                "use 'kmeans', 'k-means++' or 'random_from_data'"
            )
        if self.init_params not in _INIT:
            raise ValueError(
                f"init_params={self.init_params!r} is not one of 'kmeans', 'k-means++', "
                "'random_from_data'"
            )
        if self.device not in _DEVICES:
            raise ValueError(f"device={self.device!r} is not one of 'auto', 'cpu', 'cuda'")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of 'fp32', 'tf32', 'bf16'")

    def _params(self, seed: int) -> "_core.GmmParameters":
        p = _core.GmmParameters()
        p.covariance = _COVARIANCE[self.covariance_type]
        p.niter = int(self.max_iter)
        p.tol = float(self.tol)
        p.reg_covar = float(self.reg_covar)
        p.init = _INIT[self.init_params]
        p.kmeans_niter = int(self.kmeans_niter)
        p.seed = seed
        p.max_points_per_component = int(self.max_points_per_component)
        p.verbose = bool(self.verbose)
        return p

    def _variances_from(self, values: np.ndarray, name: str, d: int) -> np.ndarray:
        """C++ variance layout from sklearn-shaped covariances / precisions
        ('full': covariances from (K, d, d) precision matrices)."""
        K = self.n_components
        if self.covariance_type == "full":
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (K, d, d):
                raise ValueError(f"{name} must have shape {(K, d, d)}, got {values.shape}")
            if not np.isfinite(values).all():
                raise ValueError(f"{name} must hold finite values")
            if not np.allclose(values, values.transpose(0, 2, 1), rtol=1e-6, atol=0):
                raise ValueError(f"{name} must hold symmetric matrices")
            try:
                np.linalg.cholesky(values)
            except np.linalg.LinAlgError:
                raise ValueError(f"{name} must hold positive-definite matrices") from None
            return values
        shape = (K, d) if self.covariance_type == "diag" else (K,)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {values.shape}")
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"{name} must hold finite values > 0")
        if self.covariance_type == "tied_spherical" and not np.all(values == values[0]):
            raise ValueError(f"{name}: a tied_spherical model has one variance for all components")
        return values

    def _initial_model(self, X: np.ndarray) -> "_core.GaussianMixtureModel":
        """The model given by means_init (+ weights_init, precisions_init)."""
        K, d = self.n_components, X.shape[1]
        means = np.ascontiguousarray(self.means_init, dtype=np.float32)
        if means.shape != (K, d):
            raise ValueError(f"means_init must have shape {(K, d)}, got {means.shape}")
        data_var = float(X.var(axis=0, dtype=np.float64).mean())
        floor = self.reg_covar * data_var
        if not floor > 0:  # as the C++ initialisation: variances stay > 0
            floor = 1e-10 * data_var if data_var > 0 else 1e-10
        if self.weights_init is None or self.precisions_init is None:
            # hard assignment to the nearest mean (equal weights and
            # variances make the log-joint's argmax the nearest mean)
            probe = _core.GaussianMixtureModel(d, K, "spherical")
            probe.set_parameters(
                np.full(K, 1.0 / K, np.float32), means, np.ones(K, np.float32)
            )
            labels = probe.top_posteriors(X, 1)[1][:, 0]
            counts = np.bincount(labels, minlength=K).astype(np.float64)
            sq = np.zeros((K, d))
            np.add.at(sq, labels, (X - means[labels]).astype(np.float64) ** 2)
            per_dim = sq / np.maximum(counts, 1)[:, None]
            if self.covariance_type == "full":
                full = np.empty((K, d, d))
                # the rows of each component from one sort (O(n log n), not
                # a mask over all n rows per component)
                order = np.argsort(labels, kind="stable")
                bounds = np.searchsorted(labels[order], np.arange(K + 1))
                for j in range(K):
                    rows = X[order[bounds[j] : bounds[j + 1]]]
                    diff = (rows - means[j]).astype(np.float64)
                    full[j] = diff.T @ diff / max(counts[j], 1)
                    if counts[j] < 2:  # as the C++ init: the data's variances
                        full[j] = np.diag(X.var(axis=0, dtype=np.float64))
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if weights.shape != (K,) or not (np.isfinite(weights).all() and (weights >= 0).all()):
                raise ValueError(f"weights_init must be {K} finite values >= 0")
            if abs(weights.sum() - 1) > 1e-3:
                raise ValueError(f"weights_init must sum to 1, got {weights.sum()}")
        else:
            weights = np.maximum(counts, 1e-10)
        weights = weights / weights.sum()
        if self.covariance_type == "full":
            if self.precisions_init is not None:
                # used as given (sklearn's first E-step uses them as given)
                covariances = np.linalg.inv(
                    self._variances_from(self.precisions_init, "precisions_init", d)
                )
                covariances = 0.5 * (covariances + covariances.transpose(0, 2, 1))
            else:
                # the floor added to the diagonal, as every M-step adds it
                covariances = full + floor * np.eye(d)
            model = _core.GaussianMixtureModel(d, K, "full")
            model.set_parameters(
                weights.astype(np.float32),
                means,
                np.ascontiguousarray(covariances, dtype=np.float32),
                floor,
            )
            return model
        if self.precisions_init is not None:
            variances = 1.0 / self._variances_from(self.precisions_init, "precisions_init", d)
        elif self.covariance_type == "diag":
            variances = per_dim
        elif self.covariance_type == "spherical":
            variances = per_dim.mean(axis=1)
        else:
            variances = np.full(K, (sq.sum() / d) / counts.sum())
        variances = np.maximum(variances, floor)
        model = _core.GaussianMixtureModel(d, K, _COVARIANCE[self.covariance_type])
        model.set_parameters(
            weights.astype(np.float32),
            means,
            np.ascontiguousarray(variances, dtype=np.float32),
            floor,
        )
        return model

    def _fit_once(self, X: np.ndarray, seed: int) -> "_core.GaussianMixtureModel":
        params = self._params(seed)
        if self.means_init is not None:
            model = self._initial_model(X)
            _core.run_em(model, X, params, self.device, self.gpu_device, self.precision)
            return model
        if self.weights_init is not None or self.precisions_init is not None:
            raise ValueError("weights_init and precisions_init need means_init")
        return _core.fit_gmm(
            X, self.n_components, params, self.device, self.gpu_device, self.precision
        )

    def fit(self, X: Any, y: Any = None) -> "GaussianMixture":
        """Estimate the model by EM (n_init runs, the best lower bound kept)."""
        self._check_parameters()
        X = _check_array(X)
        n, d = X.shape
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n}"
            )
        seed = _seed(self.random_state)
        best, best_lb = None, -np.inf
        for run in range(self.n_init):
            model = self._fit_once(X, seed + run)
            lb = model.iteration_stats["log_likelihood"]
            lb = lb[-1] if lb else -np.inf
            if best is None or lb > best_lb:
                best, best_lb = model, lb
        self._set_fitted(best, d)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                f"Best performing initialization did not converge in {self.n_iter_} "
                "iterations: try a larger max_iter or tol, or check the data.",
                ConvergenceWarning,
            )
        return self

    def _set_fitted(self, model: "_core.GaussianMixtureModel", d: int) -> None:
        stats = model.iteration_stats
        ll = stats["log_likelihood"]
        reseeded = stats["n_reseeded"]
        self.model_ = model
        self.n_features_in_ = d
        self.weights_ = model.weights
        self.means_ = model.means
        if self.covariance_type == "full":
            self.covariances_ = model.covariances
            self.precisions_cholesky_ = model.precision_cholesky
            # sklearn: precisions_[k] = U_k U_k^T
            self.precisions_ = np.einsum(
                "kij,klj->kil",
                self.precisions_cholesky_.astype(np.float64),
                self.precisions_cholesky_.astype(np.float64),
            ).astype(np.float32)
        else:
            self.covariances_ = model.variances
            self.precisions_ = 1.0 / self.covariances_
            self.precisions_cholesky_ = np.sqrt(self.precisions_)
        self.variance_floor_ = model.variance_floor
        self.n_iter_ = len(ll)
        self.lower_bounds_ = list(ll)
        self.lower_bound_ = ll[-1] if ll else -np.inf
        # the C++ test that stopped EM: gain < tol, never across a re-seed
        self.converged_ = bool(
            self.tol > 0
            and len(ll) >= 2
            and reseeded[-2] == 0
            and ll[-1] - ll[-2] < self.tol
        )

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """fit(X), then the component of each row."""
        return self.fit(X).predict(X)

    # -------------------------------------------------------------- scoring

    def _model(self) -> "_core.GaussianMixtureModel":
        if not hasattr(self, "means_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        model = self.__dict__.get("model_")
        if model is None:  # after unpickling: rebuild from the arrays
            model = _core.GaussianMixtureModel(
                self.n_features_in_, self.n_components, _COVARIANCE[self.covariance_type]
            )
            model.set_parameters(
                self.weights_, self.means_, self.covariances_, self.variance_floor_
            )
            self.model_ = model
        return model

    def _X(self, X: Any) -> np.ndarray:
        model = self._model()
        return _check_array(X, model.d)

    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) of each row, (n_samples,) float32."""
        X = self._X(X)
        return self._model().log_density(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample."""
        X = self._X(X)
        return float(self._model().mean_log_likelihood(X))

    def predict(self, X: Any) -> np.ndarray:
        """Component of highest posterior of each row, (n_samples,) int64."""
        X = self._X(X)
        return self._model().top_posteriors(X, 1)[1][:, 0]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posteriors, (n_samples, n_components) float32 (dense: n x K)."""
        X = self._X(X)
        lj = self._model().log_joint(X)
        lj -= lj.max(axis=1, keepdims=True)
        np.exp(lj, out=lj)
        lj /= lj.sum(axis=1, keepdims=True)
        return lj

    def predict_proba_top(
        self, X: Any, m: int, temperature: float = 1.0
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The m largest posteriors of each row without the n x K matrix.

        Returns (posteriors (n, m) float32, components (n, m) int64), in
        decreasing order; posteriors at this temperature (p proportional to
        exp(log-joint / temperature)), normalised over all K components.
        """
        X = self._X(X)
        return self._model().top_posteriors(X, int(m), float(temperature))

    def predict_proba_sparse(self, X: Any, m: int, temperature: float = 1.0):
        """predict_proba_top as a scipy.sparse.csr_matrix (n, n_components)."""
        import scipy.sparse

        post, comp = self.predict_proba_top(X, m, temperature)
        n = post.shape[0]
        indptr = np.arange(0, n * post.shape[1] + 1, post.shape[1], dtype=np.int64)
        return scipy.sparse.csr_matrix(
            (post.ravel(), comp.ravel(), indptr), shape=(n, self.n_components)
        )

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = self._X(X)
        return float(self._model().bic(X))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = self._X(X)
        return float(self._model().aic(X))

    def sample(self, n_samples: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """n_samples draws (X (n, d) float32, component labels (n,) int64)."""
        self._model()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples={n_samples!r} must be an integer >= 1")
        rng = np.random.default_rng(_seed(self.random_state))
        w = self.weights_.astype(np.float64)
        counts = rng.multinomial(n_samples, w / w.sum())
        labels = np.repeat(np.arange(self.n_components), counts)
        noise = rng.standard_normal((n_samples, self.means_.shape[1]))
        if self.covariance_type == "full":
            # x = mu + L z with Sigma = L L^T
            chol = np.linalg.cholesky(self.covariances_.astype(np.float64))
            X = (self.means_[labels] + np.einsum("nij,nj->ni", chol[labels], noise)).astype(
                np.float32
            )
        else:
            std = np.sqrt(self.covariances_)
            std = std[labels] if std.ndim == 2 else std[labels][:, None]
            X = (self.means_[labels] + noise * std).astype(np.float32)
        return X, labels.astype(np.int64)

    # -------------------------------------------------------------- pickle

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("model_", None)  # the C++ object: rebuilt from the arrays
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        base = getattr(super(), "__setstate__", None)
        if base is not None:
            base(state)
        else:
            self.__dict__.update(state)
