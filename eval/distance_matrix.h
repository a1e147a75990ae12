/**
 * The query x base matrix of exact squared L2 distances, computed once per
 * data set so that faiss_gmm_eval --distance-matrix evaluates every index
 * row by lookups instead of distance computations (issue 7: "exact recall
 * from the full query x base distance matrix restricted to the probed
 * vectors").
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <faiss/IndexIVF.h>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {
namespace eval {

/// Default cap on the matrix, bytes (--distance-matrix-max-gb 8).
constexpr double kDefaultDistanceMatrixMaxBytes = 8e9;

/// nq * nb squared L2 distances, row q = query q, column j = base row j.
struct DistanceMatrix {
    int64_t nq = 0; ///< rows (queries)
    int64_t nb = 0; ///< columns (base vectors, ids 0 .. nb-1)
    /// nq * nb floats, row-major
    std::vector<float> distances;
    /// where the inner products ran: "CPU (BLAS)" or "GPU N (name)"
    std::string device;

    /// Query q's distances to base rows 0 .. nb-1.
    const float* row(int64_t q) const {
        return distances.data() + size_t(q) * size_t(nb);
    }
};

/// nq * nb * sizeof(float): the bytes of the matrix.
double distance_matrix_bytes(int64_t nq, int64_t nb);

/**
 * Throws (naming nq, nb, the bytes and the limit, and suggesting a smaller
 * --query-rows) when the matrix would exceed max_bytes.
 * @param max_bytes the cap (> 0)
 */
void check_distance_matrix_size(int64_t nq, int64_t nb, double max_bytes);

/**
 * ||q||^2 + ||x||^2 - 2 <q, x> for every query and base row, the inner
 * products by one float GEMM: cuBLAS (plain fp32, no TF32) on CUDA device
 * gpu_device when use_gpu, else BLAS sgemm on the CPU; the norms in float
 * and the sum in double, rounded to float and clamped at 0. For
 * integer-valued data whose sums stay below 2^24 (SIFT) every value is
 * exact and equals faiss::fvec_L2sqr; otherwise they agree up to float
 * rounding.
 * @param d          dimension
 * @param xq         nq * d query values
 * @param xb         nb * d base values
 * @param max_bytes  check_distance_matrix_size's cap
 * @param use_gpu    GEMM on the GPU (throws when the build has no CUDA)
 * @param gpu_device CUDA device of the GEMM
 */
DistanceMatrix compute_distance_matrix(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    double max_bytes,
    bool use_gpu,
    int gpu_device);

/// Counters of one lookup search, with IndexIVF::search's meaning.
struct LookupSearchCounts {
    size_t lists = 0;     ///< non-empty lists probed (indexIVF_stats.nlist)
    size_t distances = 0; ///< list entries compared (indexIVF_stats.ndis)
};

/**
 * What faiss::IndexIVF::search does for an L2 IndexIVFFlat (1.7.3, default
 * parallel_mode 0, no selector) with each fine distance read from the
 * matrix: the quantizer's nprobe nearest lists (asked for in the same query
 * slices IndexIVF::search uses, so the coarse result is the same), every
 * entry of each non-empty probed list offered to a k-max heap in list order
 * (replaced when strictly closer), stopping after the list that reaches
 * max_codes entries (0: never). Needs the list ids to be base rows
 * (sequential add); throws naming an id outside [0, matrix.nb).
 * @param ivf        the trained, filled index (its nprobe and max_codes)
 * @param xq         matrix.nq * d queries (for the coarse step)
 * @param k          results per query
 * @param distances  matrix.nq * k output distances, nearest first
 * @param labels     matrix.nq * k output ids (-1 padded)
 */
LookupSearchCounts ivf_flat_lookup_search(
    const faiss::IndexIVF& ivf,
    const DistanceMatrix& matrix,
    const float* xq,
    idx_t k,
    float* distances,
    idx_t* labels);

} // namespace eval
} // namespace faiss_gmm
