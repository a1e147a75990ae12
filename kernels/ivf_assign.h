/**
 * Fused list-assignment kernel of the GPU IVF index (add) and of the GPU
 * k-means initialisation: for every point, the m best components under a
 * score, in one pass over tiles of components, without storing the N x K
 * score matrix.
 *
 * Scores, from direct differences (no |x|^2 - 2 x.mu + |mu|^2 expansion, so
 * no cancellation):
 *   L2:        s_ik = |x_i - mu_k|^2                               (minimised)
 *   LogJoint:  s_ik = log_const_k - 0.5 sum_l (x_il - mu_kl)^2 inv_var_kl
 *              (spherical: one inv_var_k for all l)                (maximised)
 * For LogJoint the kernel also returns, per point, the log-sum-exp of
 * s_ik / temperature over all k (so that the host can form tempered
 * posteriors p_T(k | x) = exp(s_ik / T - lse_i) of the kept components) and
 * the nearest mean by L2 (for "primary = nearest mean" spill rules).
 *
 * Plain pointers, sizes and streams only (see kernels/README.md).
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace faiss_gmm {
namespace kernels {

/// What the assignment ranks components by.
enum class AssignScore : int {
    L2 = 0,       ///< squared L2 distance to the mean, smallest first
    LogJoint = 1, ///< log w_k + log N(x | mu_k, Sigma_k), largest first
};

/// Largest m (components kept per point) the kernel supports.
constexpr int kAssignMaxTop = 16;

/// The model as the assignment kernel reads it (device pointers).
struct AssignModel {
    int d = 0;                    ///< dimension
    int k = 0;                    ///< components
    bool diagonal = false;        ///< LogJoint: inv_var is k x d (else k)
    const float* means = nullptr; ///< k x d, row-major
    /// LogJoint only: log w_k - 0.5 sum_l log(2 pi v_kl), k floats
    const float* log_const = nullptr;
    /// LogJoint only: 1 / v_k (spherical, k floats) or 1 / v_kl (diagonal,
    /// k x d floats)
    const float* inv_var = nullptr;
};

/// Outputs (device), n rows each. Any pointer but top_index may be null.
struct AssignOutput {
    int32_t* top_index = nullptr; ///< n x m component ids, best first
    float* top_score = nullptr;   ///< n x m scores s_ik of top_index
    /// LogJoint: n floats, log sum_k exp(s_ik / temperature)
    float* log_norm = nullptr;
    /// LogJoint: n ints, argmin_k |x_i - mu_k|^2
    int32_t* nearest = nullptr;
    /// LogJoint: n floats, min_k |x_i - mu_k|^2
    float* nearest_distance = nullptr;
};

/**
 * For the n points x (n x d row-major float32, device): the m best
 * components (1 <= m <= min(k, kAssignMaxTop)) under `score`, best first;
 * equal scores keep the smaller component id first. temperature (> 0) is
 * used by log_norm only. Returns cudaErrorInvalidValue on bad sizes or null
 * required pointers; n == 0 is a no-op.
 */
cudaError_t ivf_assign_top(
    const AssignModel& model,
    AssignScore score,
    int64_t n,
    const float* x,
    int m,
    float temperature,
    const AssignOutput& out,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
