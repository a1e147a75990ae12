/**
 * The sufficient statistics that one E-step produces and one M-step
 * consumes. Every trainer (CPU, GPU, multi-GPU, MPI) fills this struct; they
 * add up across data chunks, devices and processes (merge), which is what
 * makes streaming and distributed EM exact.
 */

#pragma once

#include <vector>

#include <faiss_gmm/GaussianMixture.h>

namespace faiss_gmm {

/**
 * Statistics of the responsibilities r_ik = p(k | x_i) under the current
 * model, summed over points. Second moments are taken about the current
 * (old) means mu_k, which keeps them well conditioned; the M-step turns them
 * into variances about the new means exactly:
 *   sum_i r_ik (x_i - mu_new)^2 = sum_sq - N_k (mu_new - mu_old)^2.
 */
struct GmmSufficientStats {
    int d = 0;
    int k = 0;
    CovarianceType covariance = CovarianceType::Spherical;
    idx_t n = 0;               ///< points accumulated
    double log_likelihood = 0; ///< sum_i log p(x_i)
    std::vector<double> count; ///< N_k = sum_i r_ik, size k
    std::vector<double> sum_x; ///< sum_i r_ik x_i, size k * d
    /// spherical and tied: sum_i r_ik ||x_i - mu_k||^2 (size k; the tied
    /// M-step pools them); diagonal: sum_i r_ik (x_ij - mu_kj)^2 (size k * d);
    /// full: empty (sum_outer holds the second moments)
    std::vector<double> sum_sq;
    /**
     * Full covariance only (empty otherwise): k x d x d, block k the
     * symmetric (both triangles filled) row-major
     *   sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T
     * about the old means, as sum_sq; the M-step forms
     *   N_k Sigma_k = sum_outer_k - N_k (mu_new - mu_old)(mu_new - mu_old)^T.
     */
    std::vector<double> sum_outer;

    GmmSufficientStats() = default;
    /// Zeroed statistics of this shape; throws when d < 1 or k < 1, and
    /// for full covariance when k * d^2 is too large
    /// (check_full_covariance_size).
    GmmSufficientStats(int d, int k, CovarianceType covariance);

    /// Zero every statistic, keep the shape.
    void reset();
    /// Add another set of the same shape (throws on a shape mismatch).
    void merge(const GmmSufficientStats& other);
    /// Throw, naming `who` and both shapes, unless these statistics are
    /// shaped for model (same d, k and covariance).
    void check_shaped_for(const GaussianMixture& model, const char* who) const;
};

} // namespace faiss_gmm
