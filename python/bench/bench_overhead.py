"""Python overhead of faiss_gmm over its C++ calls, measured side by side.

    python python/bench/bench_overhead.py [--n 262144] [--d 128] [--nlist 1024]

Two workloads, each timed both ways in one process on the same data and
objects, the two ways interleaved (the machine is shared and noisy), median
of --repeats:

- search of 10k queries (index.search(x, 10, nprobe=...)) against the same
  search() called from C++ (_faiss_gmm._time_search: same parameters, fresh
  result buffers per call);
- one EM iteration (faiss_gmm.run_em with niter=1 on the model) against the
  same run_em from C++ (_faiss_gmm._time_run_em, on a copy of the model).

Prints the times and the ratio Python / C++ (the target is <= 1.05).
"""

import argparse
import statistics
import time

import numpy as np

import faiss_gmm
from faiss_gmm import _faiss_gmm as core


def blobs(n, d, k, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    x = centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return np.ascontiguousarray(x, dtype=np.float32)


def side_by_side(name, python_call, cpp_call, repeats):
    py, cpp = [], []
    python_call()  # warm-up (caches, OpenMP threads)
    for _ in range(repeats):
        t0 = time.perf_counter()
        python_call()
        py.append(time.perf_counter() - t0)
        cpp.append(cpp_call())
    p, c = statistics.median(py), statistics.median(cpp)
    print(f"{name:34s} python {p * 1e3:9.2f} ms   C++ {c * 1e3:9.2f} ms   ratio {p / c:.4f}")
    return p / c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=262144, help="base / training rows")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nlist", type=int, default=1024, help="lists = EM components")
    ap.add_argument("--nq", type=int, default=10000, help="queries per search")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print(f"faiss_gmm {faiss_gmm.__version__} (FAISS {faiss_gmm.faiss_version}), "
          f"{faiss_gmm.omp_get_max_threads()} OpenMP threads; n={args.n} d={args.d} "
          f"nlist={args.nlist} nq={args.nq} nprobe={args.nprobe}, median of {args.repeats}")
    x = blobs(args.n, args.d, 4 * args.nlist, seed=0)
    queries = blobs(args.nq, args.d, 4 * args.nlist, seed=1)

    t0 = time.perf_counter()
    index = faiss_gmm.index_factory(args.d, f"IVF{args.nlist}_GMM,Flat")
    index.set_build_parameters("niter=3")
    index.train(x)
    index.add(x)
    print(f"index built in {time.perf_counter() - t0:.1f} s (3 EM iterations), "
          f"replication {index.replication_factor():.2f}")

    search_ratio = side_by_side(
        f"search {args.nq} queries, k=10",
        lambda: index.search(queries, 10, nprobe=args.nprobe),
        lambda: core._time_search(index, queries, 10, 1, nprobe=args.nprobe)[0],
        args.repeats,
    )

    model = index.gmm  # a trained model: EM continues from it
    params = faiss_gmm.GmmParameters()
    params.covariance = model.covariance
    params.niter = 1
    params.tol = 0
    params.max_points_per_component = 0  # every row, both ways

    def python_em():
        m = faiss_gmm.GaussianMixtureModel(model.d, model.k, model.covariance)
        m.set_parameters(model.weights, model.means, model.variances, model.variance_floor)
        faiss_gmm.run_em(m, x, params, "cpu")

    em_ratio = side_by_side(
        f"one EM iteration ({args.n} x {args.d}, K={args.nlist})",
        python_em,
        lambda: core._time_run_em(model, x, params, 1)[0],
        args.repeats,
    )
    print(f"overhead: search {100 * (search_ratio - 1):+.2f}%, EM iteration "
          f"{100 * (em_ratio - 1):+.2f}% (target <= +5%)")


if __name__ == "__main__":
    main()
