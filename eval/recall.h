/**
 * Recall of approximate k-NN results against exact ground truth, with the
 * ann-benchmarks definition: recall@k is the fraction of the true k nearest
 * neighbours found among the first k returned results, where a returned id
 * counts when its exact distance is no larger than the true k-th nearest
 * distance (so a result tied with the k-th neighbour counts as found).
 */

#pragma once

#include <cstdint>
#include <vector>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {
namespace eval {

/// Relative tolerance of the tie test: a returned id counts when its exact
/// distance is <= (1 + kTieRelativeEpsilon) * d_k + kTieAbsoluteEpsilon,
/// d_k being the exact k-th nearest distance. Distances are recomputed in
/// double on both sides, so this only absorbs the rounding of d_k itself.
constexpr double kTieRelativeEpsilon = 1e-6;
/// Absolute part of the tie tolerance (squared L2 units).
constexpr double kTieAbsoluteEpsilon = 1e-9;

/**
 * Exact squared L2 distances (summed in double) between each query and the
 * base rows named by ids: out[q * k + j] = ||xq_q - xb_{ids[q * k + j]}||^2.
 * An id < 0 (FAISS's "no result") gives +infinity.
 * @param d   dimension
 * @param nq  number of queries
 * @param xq  nq * d query values
 * @param nb  number of base rows (ids must be < nb)
 * @param xb  nb * d base values
 * @param k   ids per query
 * @param ids nq * k base row numbers
 */
std::vector<double> exact_distances(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    int k,
    const int64_t* ids);

/**
 * The exact distances of each query's true neighbours, sorted ascending:
 * the reference side of the recall test.
 */
struct ReferenceDistances {
    int64_t nq = 0; ///< number of queries
    int k = 0;      ///< neighbours per query
    /// nq * k exact distances, ascending within each query
    std::vector<double> distances;

    /// The exact distance of query q's rank-th nearest neighbour (0-based).
    double at(int64_t q, int rank) const {
        return distances[q * k + rank];
    }
};

/**
 * Recomputes the exact distances of ground-truth neighbours and sorts them.
 * Recomputing (rather than trusting a file's distances) makes the two sides
 * of the tie test bitwise comparable.
 * @param gt_k    neighbours per query in gt_ids
 * @param gt_ids  nq * gt_k base row numbers, nearest first
 */
ReferenceDistances make_reference_distances(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    int gt_k,
    const int32_t* gt_ids);

/**
 * Mean recall@k over the queries (ann-benchmarks definition, ties by
 * distance count as found, an id returned twice counts once).
 * @param reference     exact sorted neighbour distances, reference.k >= k
 * @param k             the k of recall@k (1 <= k <= result_k)
 * @param result_k      results per query in labels / result_distances
 * @param labels        nq * result_k returned ids, best first (-1 = none)
 * @param result_distances  exact distances of the returned ids (from
 *                      exact_distances), same layout as labels
 */
double recall_at_k(
    const ReferenceDistances& reference,
    int k,
    int result_k,
    const int64_t* labels,
    const double* result_distances);

} // namespace eval
} // namespace faiss_gmm
