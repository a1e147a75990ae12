/**
 * Internal (not installed): the blocked BLAS form of log pi_k + log N(x | k)
 * shared by the scoring methods of GaussianMixture and by the CPU E-step.
 * Defined in GaussianMixture.cpp.
 *
 * Every distance is taken from the expansion
 *   ||x - mu||^2 = |x|^2 - 2 x.mu + |mu|^2          (spherical)
 *   sum_j (x_j - mu_j)^2 / v_j
 *       = sum_j x_j^2 / v_j - 2 x_j mu_j / v_j + mu_j^2 / v_j   (diagonal)
 * so that one sgemm per block gives all cross terms, and clamped at 0,
 * because rounding can make the expansion slightly negative. Full
 * covariance takes no expansion: FullComponentTerms below forms
 * (x - mu_j) U_j per component (one strmm per block and component).
 */

#pragma once

#include <vector>

#include <faiss_gmm/GaussianMixture.h>

namespace faiss_gmm {
namespace impl {

/**
 * The per-component terms of the model, for points shifted by an optional
 * center c (the E-step subtracts the data mean, scoring the mixture mean:
 * smaller magnitudes in the fp32 products, so the expansion loses fewer
 * digits). With x' = x - c and mu' = mu - c:
 *   dist_ij = max(0, gemm_alpha * (operand_i . gemm_rows_j)
 *                    + row_norm_i + offset_j)
 *   log pi_j + log N(x_i | j) = log_norm_j - half_inv_var_j * dist_ij
 * operand_i is x'_i (spherical, row_norm = |x'_i|^2) or [x'_i | x'_i^2]
 * (diagonal, row_norm = 0). A tied-spherical model takes the spherical form
 * everywhere here ("spherical" below includes it).
 */
struct ComponentTerms {
    int d = 0; ///< dimension
    int k = 0; ///< number of components
    CovarianceType covariance = CovarianceType::Spherical;
    /// columns of the GEMM operands: d (spherical) or 2 d (diagonal)
    int gemm_dim = 0;
    /// -2 (spherical) or 1 (diagonal)
    float gemm_alpha = 0;
    /// k x gemm_dim: mu'_j (spherical) or [-2 mu'_j / v_j | 1 / v_j] (diag.)
    std::vector<float> gemm_rows;
    /// |mu'_j|^2 (spherical) or sum_l mu'_jl^2 / v_jl (diagonal), size k
    std::vector<float> offset;
    /// log pi_j - 0.5 sum_l log(2 pi v_jl), size k
    std::vector<float> log_norm;
    /// 0.5 / v_j (spherical) or 0.5 (diagonal), size k
    std::vector<float> half_inv_var;

    /// center: d floats subtracted from every point, or nullptr for none.
    /// Throws for a full-covariance model (FullComponentTerms scores it).
    ComponentTerms(const GaussianMixture& model, const float* center);
};

/**
 * A full-covariance model in the form its blocked scoring uses, for points
 * shifted by an optional center c (x' = x - c, mu'_j = mu_j - c):
 *   log pi_j + log N(x_i | j) = log_norm_j - 1/2 ||(x'_i - mu'_j)^T U_j||^2
 * with U_j = model.precision_cholesky block j. Holds a pointer to the
 * model's factors: the model must outlive it and stay unchanged.
 */
struct FullComponentTerms {
    int d = 0; ///< dimension
    int k = 0; ///< number of components
    /// k x d: mu'_j = mu_j - c
    std::vector<float> shifted_means;
    /// log pi_j - d/2 log(2 pi) + sum_i log U_j[i][i], size k
    std::vector<float> log_norm;
    /// the model's k x d x d upper-triangular factors (not owned)
    const float* precision_cholesky = nullptr;

    /// center: d floats subtracted from every point, or nullptr for none.
    /// Throws unless the model is full covariance with its factors computed.
    FullComponentTerms(const GaussianMixture& model, const float* center);

    /// Floats of work buffer that log_joint_block needs for nb points.
    size_t work_floats(idx_t nb) const {
        return size_t(nb) * d * 2;
    }

    /**
     * logits[i * k + j] = log pi_j + log N(x_i | j) for a block of nb
     * points x (nb x d, unshifted), center as given to the constructor (or
     * nullptr). For each component one strmm forms (x' - mu'_j) U_j for the
     * whole block; the squared norms are summed per row in float (OpenMP
     * over rows). work holds work_floats(nb) floats.
     */
    void log_joint_block(
        idx_t nb,
        const float* x,
        const float* center,
        float* work,
        float* logits) const;

    /**
     * In place over a row-major nb x d block y: y := y U_j (strmm with the
     * upper-triangular factor of component j).
     */
    void multiply_by_factor(int j, idx_t nb, float* y) const;
};

/**
 * Fill the row-major operand (nb x gemm_dim) and row_norms (nb) of a block
 * of nb points (OpenMP over rows). center may be nullptr.
 */
void prepare_operand(
    const ComponentTerms& terms,
    idx_t nb,
    const float* x,
    const float* center,
    float* operand,
    float* row_norms);

/// products[i * k + j] = operand_i . gemm_rows_j for a prepared block (sgemm).
void block_products(
    const ComponentTerms& terms,
    idx_t nb,
    const float* operand,
    float* products);

/// In place over one row of k products: the clamped distances dist_ij.
inline void
products_to_distances(const ComponentTerms& terms, float row_norm, float* row) {
    const float alpha = terms.gemm_alpha;
    const float* offset = terms.offset.data();
    for (int j = 0; j < terms.k; j++) {
        float dist = alpha * row[j] + row_norm + offset[j];
        row[j] = dist > 0 ? dist : 0;
    }
}

/// out[j] = log pi_j + log N(x | j) from one row of distances (out may be
/// dist).
inline void distances_to_log_joint(
    const ComponentTerms& terms, const float* dist, float* out) {
    const float* log_norm = terms.log_norm.data();
    const float* half_inv_var = terms.half_inv_var.data();
    for (int j = 0; j < terms.k; j++) {
        out[j] = log_norm[j] - half_inv_var[j] * dist[j];
    }
}

/**
 * Terms below exp(kSoftmaxLogCut) ~ 9.4e-14 relative to a row's largest are
 * set to exactly 0. Together they weigh less than k * 9.4e-14, under fp32's
 * resolution of the row's normaliser (2^-24 ~ 6e-8) for any k < 6e5, so
 * the posteriors and log-densities are those of the full sum to fp32
 * precision; a component's N_k changes by less than 1e-13 per point, far
 * below min_component_count. The zeros skip exp() and make the
 * responsibilities of high-dimensional data sparse (a few non-zeros per row
 * on SIFT), which the CPU E-step exploits.
 */
constexpr float kSoftmaxLogCut = -30.0f;

/**
 * In place over one row of k log-joint values: the posteriors
 * exp(v_j - logsumexp(v)), with the terms under kSoftmaxLogCut set to 0.
 * Returns logsumexp(v), or -inf (and all zeros) when every value is -inf.
 */
float softmax_row(int k, float* values);

/// C (m x n) = A (m x p) B (n x p)^T, all row-major (sgemm).
void gemm_abt(
    idx_t m,
    idx_t n,
    idx_t p,
    float alpha,
    const float* a,
    const float* b,
    float* c);

/// C (n x p) += A (m x n)^T B (m x p), all row-major, in double (dgemm).
void dgemm_atb_accumulate(
    idx_t m, idx_t n, idx_t p, const double* a, const double* b, double* c);

/**
 * C (n x n, row-major) += A^T A for a row-major A (m x n), in double
 * (dsyrk). Only the lower triangle of C (row-major) is updated; the caller
 * mirrors it.
 */
void dsyrk_ata_lower_accumulate(idx_t m, idx_t n, const double* a, double* c);

/// Sizes of the arrays of model against (d, k, covariance); throws naming
/// the mismatch. A full model must have its covariances and factors
/// (update_precision_cholesky) of k * d * d values and k log-determinants.
void check_model_shape(const GaussianMixture& model);

/**
 * Largest |value| of an input vector: squared distances of vectors in up
 * to 2^16 dimensions then stay below 2^16 (2e15)^2 = 2.6e35, far from
 * float overflow (3.4e38); larger values would turn distances into inf and
 * k-means, EM and search into nonsense.
 */
constexpr float kMaxInputMagnitude = 1e15f;

/// Flat index i * d + j of the first value of x (n x d) that is NaN, Inf
/// or larger than kMaxInputMagnitude in magnitude, or -1.
idx_t first_non_finite(idx_t n, int d, const float* x);

/// Throws naming the first row and column of x (n x d) that is NaN, Inf or
/// too large (see kMaxInputMagnitude).
void check_finite(idx_t n, int d, const float* x, const char* what);

/// As check_finite, in the indexes' words ("<where>: vector i component j
/// is not finite (value)"): the input checks of IndexIVFGMM and
/// GpuIndexIVFGMM.
void check_finite_vectors(idx_t n, int d, const float* x, const char* where);

/**
 * Whether rows x cols elements of work are worth an OpenMP team: a parallel
 * region costs a few microseconds on an idle machine and a scheduler time
 * slice on a loaded one, so small blocks stay on the calling thread.
 */
inline bool worth_parallel(idx_t rows, idx_t cols) {
    return rows > 1 && rows * cols >= (idx_t(1) << 16);
}

/// Rows per scoring block: at most 4096 and about 16 M floats of buffer.
idx_t scoring_block_rows(int k);

} // namespace impl
} // namespace faiss_gmm
