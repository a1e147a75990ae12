/**
 * Kernels of the GPU IVF search with spill (GpuIndexIVFGMM::search):
 *
 *   1. coarse scores: the host runs one cuBLAS GEMM Q M^T per query tile;
 *      ivf_coarse_scores turns it into L2 distances or negated log-joints
 *      (both "smaller is better", so select_k_segments picks the probes);
 *   2. ivf_cut_probes: adaptive probing rules on the sorted probes
 *      (distance ratio, tempered posterior mass), exactly as the CPU index;
 *   3. ivf_prepare_probes: per query, the rank of each probed list
 *      (probe_rank, a query-tile x nlist int32 table), duplicate lists and
 *      lists beyond max_codes dropped, and where each probed list's
 *      distances go in the query's candidate segment;
 *   4. ivf_scan_lists: one distance per list entry, read once; an entry
 *      whose vector is also stored in a list probed earlier by this query
 *      (its spill record names a list of smaller probe rank) is a
 *      duplicate: key +inf, id -1, no distance computed. So every vector is
 *      compared once and can be selected once;
 *   5. select_k_segments (select_k.h) over the candidate segments.
 *
 * With list pruning (ivf_prune_probes) the scan runs in two parts: the
 * first probes, a top-k selection over what they gave (the k-th distance,
 * a bound for every query), the pruning of the remaining probes against
 * that bound, ivf_prepare_probes again (pruned lists leave the segment),
 * then the remaining probes.
 *
 * Plain pointers, sizes and streams only (see kernels/README.md).
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <kernels/ivf_codes.h>

namespace faiss_gmm {
namespace kernels {

/// probe_rank value of a list the query does not probe.
constexpr int32_t kListNotProbed = 0x7fffffff;

/// Device view of the inverted lists (all pointers device memory).
struct IvfListsView {
    int d = 0;     ///< dimension
    int nlist = 0; ///< number of lists
    /// int32 per entry in records: the other lists holding the same vector,
    /// -1 padded (0: no spill records)
    int record_width = 0;
    IvfCodec codec; ///< how entries encode their vectors (ivf_codes.h)
    /// nlist pointers, length x ivf_code_size(codec.kind, d) bytes
    const uint8_t* const* codes = nullptr;
    const int64_t* const* ids = nullptr; ///< nlist pointers, length ids
    /// nlist pointers, length x record_width (unused when record_width 0)
    const int32_t* const* records = nullptr;
    const int32_t* lengths = nullptr; ///< nlist list lengths
    /// the longest list's length (host value), which splits long lists over
    /// several CTAs of the scan; 0: unknown (one CTA per list)
    int32_t max_length = 0;
};

/// How ivf_coarse_scores turns the products into "smaller is better" scores.
struct CoarseModel {
    int d = 0;              ///< dimension
    int nlist = 0;          ///< components
    bool log_joint = false; ///< negated log-joint (else L2 distance)
    bool diagonal = false;  ///< log_joint with a diagonal model
    /// L2 and spherical: |mu_k|^2 (nlist floats)
    const float* mean_norms = nullptr;
    /// log_joint: log w_k - 0.5 sum_l log(2 pi v_kl) (nlist floats)
    const float* log_const = nullptr;
    /// log_joint spherical: 1 / v_k (nlist floats)
    const float* inv_var = nullptr;
    /// log_joint diagonal: sum_l mu_kl^2 / v_kl (nlist floats); the product
    /// is then [q | q^2] . [mu / v | -1 / (2 v)] (the host's GEMM)
    const float* mean_norms_weighted = nullptr;
};

/**
 * In place on products (nq x nlist, row-major, from the host's GEMM):
 *   L2:                 s = max(0, |q|^2 - 2 p + |mu|^2), p = q . mu
 *   log_joint spherical: s = -(log_const - 0.5 inv_var max(0, |q|^2 - 2 p +
 *                        |mu|^2)), p = q . mu
 *   log_joint diagonal:  s = -(log_const + p - 0.5 mean_norms_weighted),
 *                        p = q . (mu / v) - 0.5 q^2 . (1 / v)
 * query_norms: nq floats |q|^2 (unused for diagonal).
 */
cudaError_t ivf_coarse_scores(
    const CoarseModel& model,
    int64_t nq,
    const float* query_norms,
    float* products,
    cudaStream_t stream);

/// out[i] = |x_i|^2 for n rows of d floats.
cudaError_t row_squared_norms(
    int64_t n, int d, const float* x, float* out, cudaStream_t stream);

/**
 * Adaptive probing on sorted probes (probes / probe_scores: nq x nprobe,
 * the scores as ivf_coarse_scores made them, ascending):
 *  - distance_ratio > 0 (L2 scores): probe r >= 1 is dropped (-1, +inf)
 *    when its score > distance_ratio * score of probe 0;
 *  - posterior_mass > 0: log_joint_scores (nq x nlist negated log-joints)
 *    give p_T(j | q) = softmax_j(-score / temperature); probes are kept
 *    while the mass of the kept ones is < posterior_mass (the probe that
 *    reaches it is kept), as IndexIVFGMM::coarse_assign does.
 * Either may be 0 (off).
 */
cudaError_t ivf_cut_probes(
    int64_t nq,
    int nprobe,
    int32_t* probes,
    float* probe_scores,
    float distance_ratio,
    const float* log_joint_scores,
    int nlist,
    float posterior_mass,
    float temperature,
    cudaStream_t stream);

/**
 * Per query q of a tile of nq queries (probes: nq x nprobe list ids in
 * probe order, -1 for none):
 *  - probe_rank[q * nlist + l] = r for the first r with probes[r] == l;
 *    probe_rank must hold kListNotProbed everywhere on entry (the scan's
 *    callers restore it with ivf_clear_probe_ranks);
 *  - a repeated list and the lists after the one where the running sum of
 *    list lengths reaches max_codes (0: no limit) are dropped (probes = -1);
 *  - probe_offsets[q * nprobe + r]: where list probes[r]'s distances start
 *    in query q's segment (a dropped probe gets the offset of the next);
 *  - segment_lengths[q]: entries the query scans (sum of kept lengths);
 *  - lists_visited[q]: kept non-empty lists.
 * A probe outside [0, nlist) is dropped like a repeated one.
 */
cudaError_t ivf_prepare_probes(
    const IvfListsView& lists,
    int64_t nq,
    int nprobe,
    int64_t max_codes,
    int32_t* probes,
    int32_t* probe_rank,
    int64_t* probe_offsets,
    int64_t* segment_lengths,
    int32_t* lists_visited,
    cudaStream_t stream);

/// Sets probe_rank back to kListNotProbed wherever ivf_prepare_probes set it.
cudaError_t ivf_clear_probe_ranks(
    int64_t nq,
    int nprobe,
    int nlist,
    const int32_t* probes,
    int32_t* probe_rank,
    cudaStream_t stream);

/// The list-pruning rules of ivf_prune_probes (kernels/list_pruning.h).
struct ProbePruning {
    float margin = 0;             ///< bisector margin (0: off)
    float min_hits = 0;           ///< hit-model threshold (0: off)
    const float* means = nullptr; ///< nlist x d raw means (with margin)
    /// nlist mean per-dimension variances (with min_hits)
    const float* mean_variances = nullptr;
};

/**
 * List pruning of a tile of nq queries in probe order L2 (probe_scores:
 * nq x nprobe squared L2 distances to the means, probe 0 the nearest).
 * kth_keys[q * kth_stride] is query q's k-th smallest distance so far (the
 * top-k of its first first_probe probes; +inf: fewer than k, nothing is
 * pruned). Each kept probe r >= first_probe (1 <= first_probe <= nprobe)
 * whose list passes a test of list_pruning.h (the hit model, then the
 * bisector) is dropped: probes -1, probe_rank back to kListNotProbed (an
 * entry whose record names a pruned list is then scanned where it is
 * found). Adds to pruned[q] the lists dropped and to
 * bound_evaluations[q] the mean-to-mean distances computed (nq int32
 * each, zeroed by the caller), as the CPU scan counts them. Both rules off:
 * nothing to do.
 */
cudaError_t ivf_prune_probes(
    const IvfListsView& lists,
    const ProbePruning& rules,
    int64_t nq,
    int nprobe,
    int first_probe,
    const float* probe_scores,
    const float* kth_keys,
    int kth_stride,
    int32_t* probes,
    int32_t* probe_rank,
    int32_t* pruned,
    int32_t* bound_evaluations,
    cudaStream_t stream);

/**
 * Fine scan of probes [probe_begin, probe_end) (0 and nprobe: all). For
 * query q and kept probe r (list l = probes[q * nprobe + r]),
 * entry j of list l goes to position segment_offsets[q] +
 * probe_offsets[q * nprobe + r] + j of keys / ids: its squared L2 distance
 * to the query (fp32, direct differences with the decoded code, the
 * residual codes against the query's residual to the list mean) and its
 * id, or (+inf, -1) when
 * the entry is a duplicate (see above). duplicates[q] (nq int64, zeroed by
 * the caller) counts the duplicates. segment_offsets: where each query's
 * slot starts (nq + 1 exclusive prefix sums of segment_lengths, or of the
 * lengths before pruning, which only shortens the segments). 1 <= d <= 4096,
 * nprobe <= kSelectMaxK, nq * nprobe < 2^31 (one CTA per query and probe).
 */
cudaError_t ivf_scan_lists(
    const IvfListsView& lists,
    int64_t nq,
    const float* queries,
    int nprobe,
    int probe_begin,
    int probe_end,
    const int32_t* probes,
    const int32_t* probe_rank,
    const int64_t* probe_offsets,
    const int64_t* segment_offsets,
    float* keys,
    int64_t* ids,
    int64_t* duplicates,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
