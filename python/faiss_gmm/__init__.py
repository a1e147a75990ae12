"""faiss_gmm: Gaussian mixtures trained by a fast EM (CPU or CUDA) and FAISS
IVF indexes whose coarse quantizer is a Gaussian mixture.

- :class:`GaussianMixture`: scikit-learn's interface (fit, predict,
  predict_proba, score_samples, bic, ...) over the C++ EM driver.
- :func:`index_factory`: ``index_factory(d, "IVF1024_GMM,Flat")`` and every
  string the C++ factory takes; the index has FAISS's methods (train, add,
  add_with_ids, search, range_search, remove_ids, reconstruct) on numpy
  float32 arrays, search parameters as keyword arguments.
- :func:`write_index` / :func:`read_index`, :func:`get_stats`, and in CUDA
  builds :func:`index_cpu_to_gpu` / :func:`index_gpu_to_cpu`.

The module links its own copy of FAISS with hidden symbols, so it can be
imported beside PyPI's ``faiss`` in either order.
"""

from ._faiss_gmm import (
    GaussianMixtureModel,
    GmmParameters,
    Index,
    IndexIVFGMM,
    clone_index,
    deserialize_index,
    extract_index_ivfgmm,
    faiss_version,
    fit_gmm,
    get_stats,
    gpu_is_available,
    has_gpu,
    index_factory,
    omp_get_max_threads,
    omp_set_num_threads,
    read_gmm,
    read_index,
    reset_stats,
    run_em,
    serialize_index,
    set_index_parameters,
    write_gmm,
    write_index,
)
from .mixture import GaussianMixture

if has_gpu:
    from ._faiss_gmm import GpuIndexIVFGMM, index_cpu_to_gpu, index_gpu_to_cpu
else:

    def index_cpu_to_gpu(index: Index, device: int = 0, precision: str = "bf16") -> Index:
        """A GPU copy of an IndexIVFGMM; this build has no CUDA, so it raises."""
        raise RuntimeError(
            "faiss_gmm was built without CUDA (no CUDA toolkit found, or FAISS_GMM_GPU=OFF)"
        )

    def index_gpu_to_cpu(index: Index) -> Index:
        """A CPU copy of a GPU index; this build has no CUDA, so it raises."""
        raise RuntimeError(
            "faiss_gmm was built without CUDA (no CUDA toolkit found, or FAISS_GMM_GPU=OFF)"
        )


def _index_from_bytes(data: bytes) -> Index:
    """Unpickling of a faiss_gmm index (``Index.__reduce__``): the bytes of
    :func:`serialize_index` read back. A plain Python function, so that pickle
    can name it."""
    return deserialize_index(data)


__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "GaussianMixtureModel",
    "GmmParameters",
    "Index",
    "IndexIVFGMM",
    "clone_index",
    "deserialize_index",
    "extract_index_ivfgmm",
    "faiss_version",
    "fit_gmm",
    "get_stats",
    "gpu_is_available",
    "has_gpu",
    "index_cpu_to_gpu",
    "index_factory",
    "index_gpu_to_cpu",
    "omp_get_max_threads",
    "omp_set_num_threads",
    "read_gmm",
    "read_index",
    "reset_stats",
    "run_em",
    "serialize_index",
    "set_index_parameters",
    "write_gmm",
    "write_index",
]
