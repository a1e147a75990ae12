/**
 * Exact k-nearest-neighbour ground truth under squared L2.
 *
 * Candidates come from blocked float BLAS dot products (|x|^2 + |y|^2 - 2 x.y);
 * they are re-ranked with distances summed in double, ties broken by ascending
 * id. A rigorous bound on the float error decides whether the candidate list
 * provably holds the true top k; queries where it does not are recomputed
 * by a full double-precision scan. The result therefore equals a brute-force
 * double computation with the (distance, id) order.
 */

#pragma once

#include <cstdint>
#include <string>

#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

/// Exact top-k by squared L2 of every query among the base rows.
/// Distances in the result are the double-precision values rounded to float.
/// @param base   the database vectors (n >= k)
/// @param query  the queries (same d)
/// @param k      neighbours per query, 1 <= k <= base.n
/// @param verbose print progress and timing to stdout
GroundTruth compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    bool verbose = false);

/// Same as compute_groundtruth for a base file streamed in chunks (for files
/// larger than RAM): rows [0, max_base_rows) of base_path, -1 for all.
GroundTruth compute_groundtruth_from_file(
    const std::string& base_path,
    const FloatMatrix& query,
    int k,
    int64_t max_base_rows = -1,
    bool verbose = false);

/// Returns the ground truth cached at cache_path (big-ann-benchmarks .bin
/// layout) when it was computed for the same base, queries and at least k
/// neighbours; otherwise computes it and writes the cache. The cache key
/// (sizes and a 64-bit hash of base and query) is kept in
/// cache_path + ".key". A cache that cannot be written is reported on stderr
/// and otherwise ignored.
GroundTruth load_or_compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    const std::string& cache_path,
    bool verbose = false);

} // namespace datasets
} // namespace faiss_gmm
