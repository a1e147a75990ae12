"""faiss_gmm.GaussianMixture against scikit-learn's, measured side by side.

    python python/bench/bench_sklearn.py [--n 100000] [--d 64] [--k 16]
        [--iters 20] [--covariance diag,full] [--repeats 3]

Gaussian blobs (64 centres N(0, 16 I), unit noise), the same initial model
for both (weights 1/K, K rows of the data as means, identity precisions),
tol=0 so that both run exactly --iters EM iterations. For each covariance
type prints the fit times (median of --repeats, the two interleaved), the
ratio sklearn / faiss_gmm, the mean log-likelihood of each fit and the
largest difference of their means. scikit-learn is a test dependency
(`pip install ".[test]"`). Threads: as OpenMP and BLAS are told
(OMP_NUM_THREADS).
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import faiss_gmm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--covariance", default="diag,full")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # tol=0 runs every iteration: neither fit "converges", by design
    warnings.simplefilter("ignore", ConvergenceWarning)

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(64, args.d))
    labels = rng.integers(0, 64, args.n)
    x = (centers[labels] + rng.normal(size=(args.n, args.d))).astype(np.float32)
    init = dict(
        weights_init=np.full(args.k, 1 / args.k),
        means_init=x[rng.choice(args.n, args.k, replace=False)],
    )
    precisions = {
        "spherical": np.ones(args.k),
        "diag": np.ones((args.k, args.d)),
        "full": np.tile(np.eye(args.d), (args.k, 1, 1)),
    }
    print(f"{args.n} x {args.d}, K = {args.k}, {args.iters} EM iterations, same init")
    for cov in args.covariance.split(","):
        kw = dict(
            n_components=args.k,
            covariance_type=cov,
            max_iter=args.iters,
            tol=0,
            precisions_init=precisions[cov],
            random_state=0,
            **init,
        )
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours = faiss_gmm.GaussianMixture(**kw).fit(x)
            ours_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            theirs = SklearnGaussianMixture(**kw).fit(x)
            theirs_s.append(time.perf_counter() - t)
        a, b = statistics.median(ours_s), statistics.median(theirs_s)
        print(
            f"{cov}: faiss_gmm {a:.2f} s, scikit-learn {b:.2f} s ({b / a:.1f}x); "
            f"mean log-likelihood {ours.score(x):.6f} vs {theirs.score(x):.6f}; "
            f"max |means_ difference| {np.abs(ours.means_ - theirs.means_).max():.1e}"
        )


if __name__ == "__main__":
    main()
