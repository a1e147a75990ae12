/**
 * A Gaussian mixture model with spherical, diagonal or tied-spherical
 * covariance: the model
 * behind the GMM coarse quantizer. Scoring (log-density, posteriors) and the
 * CPU EM trainer live here; the GPU trainer is in faiss_gmm/gpu/.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

/// Shape of each component's covariance matrix.
enum class CovarianceType : int {
    Spherical = 0, ///< sigma_k^2 * I: one variance per component
    Diagonal = 1,  ///< diag(sigma_k1^2 ... sigma_kd^2): d variances per comp.
    /// sigma^2 * I shared by every component (a soft k-means with mixture
    /// weights). Stored as Spherical (one variance per component, all
    /// equal), so every scoring path treats it as spherical; only training
    /// estimates one pooled variance.
    TiedSpherical = 2,
};

/// Whether a model of this covariance stores d variances per component
/// (Diagonal) rather than one (Spherical, TiedSpherical): the layout
/// decision of every scoring, statistics and I/O path.
inline bool has_per_dimension_variances(CovarianceType type) {
    return type == CovarianceType::Diagonal;
}

/// "spherical" / "diagonal" / "tied".
const char* covariance_type_name(CovarianceType type);
/// Inverse of covariance_type_name (also accepts "sph", "diag",
/// "tied-spherical"); throws faiss::FaissException naming the string when it
/// is unknown.
CovarianceType covariance_type_from_name(const std::string& name);

/// How the component means are initialised before EM.
enum class GmmInit : int {
    KMeans = 0,         ///< faiss::Clustering (k-means), then one M-step
    KMeansPlusPlus = 1, ///< k-means++ seeding (D^2 sampling), no Lloyd steps
    Random = 2,         ///< k distinct random training points
};

/// "kmeans" / "kmeans++" / "random".
const char* gmm_init_name(GmmInit init);
/// Inverse of gmm_init_name; throws naming the string when it is unknown.
GmmInit gmm_init_from_name(const std::string& name);

/** Parameters of EM training, mirroring faiss::ClusteringParameters. */
struct GmmParameters {
    /// covariance shape of the components
    CovarianceType covariance = CovarianceType::Spherical;
    /**
     * maximum number of EM iterations (E-step + M-step). Default 20: the
     * best IVF measured (faiss_gmm_eval --ablation, sift-debian-a, 5000
     * queries, spill T4 tau 0.02): cost ratio vs k-means at recall@10 0.95
     * after 3 / 10 / 20 iterations 1.230 / 1.244 / 1.256 (nlist 1024) and
     * 1.216 / 1.246 / 1.267 (nlist 2048).
     */
    int niter = 20;
    /// stop when the mean log-likelihood per point gains less than this
    /// (nats) in one iteration; 0 disables the test
    double tol = 1e-4;
    /// variance floor, relative to the mean per-dimension variance of the
    /// training data: every variance is kept >= reg_covar * that variance
    float reg_covar = 1e-3f;
    /// how the means are initialised
    GmmInit init = GmmInit::KMeans;
    /// Lloyd iterations of the k-means initialisation
    int kmeans_niter = 20;
    /// seed of every random choice (subsampling, init, re-seeding)
    int64_t seed = 1234;
    /// training sets larger than k * max_points_per_component are
    /// subsampled to that size, as faiss::Clustering does (0: never)
    int max_points_per_component = 256;
    /// a component whose expected count N_k falls below this is empty or
    /// collapsed and is re-seeded by splitting the heaviest component
    double min_component_count = 1.0;
    /// points per E-step block of the CPU trainer; its memory is
    /// O(block_size * k + k * d), never O(n * k)
    int64_t block_size = 4096;
    /// print one line per iteration (log-likelihood, time, smallest weight,
    /// smallest variance, re-seeded components)
    bool verbose = false;

    /// Largest niter and kmeans_niter.
    static constexpr int kMaxIterations = 1 << 30;
    /// Largest block_size.
    static constexpr int64_t kMaxBlockSize = int64_t(1) << 40;

    /// Throws naming the first out-of-range field (prefixed by `who`):
    /// niter, kmeans_niter in [0, kMaxIterations]; tol, reg_covar,
    /// min_component_count finite and >= 0; max_points_per_component >= 0;
    /// block_size in [1, kMaxBlockSize]; enums in range.
    void check(const char* who = "GmmParameters") const;
};

/** What one EM iteration did, filled by every trainer (CPU and GPU). */
struct GmmIterationStats {
    int iteration = 0;         ///< 0-based
    double log_likelihood = 0; ///< mean log-likelihood per point, before M
    double time_s = 0;         ///< wall time of the iteration, seconds
    float min_weight = 0;      ///< smallest mixture weight after the M-step
    float min_variance = 0;    ///< smallest variance after the M-step
    int n_reseeded = 0;        ///< components re-seeded in this iteration
};

/**
 * K Gaussian components in d dimensions:
 *   p(x) = sum_k pi_k N(x | mu_k, Sigma_k),
 * Sigma_k = variances[k] * I (spherical, tied: all variances[k] equal) or
 * diag(variances[k*d .. k*d+d)) (diagonal).
 *
 * Not thread-safe for training; all const scoring methods are.
 */
struct GaussianMixture {
    int d = 0; ///< dimension
    int k = 0; ///< number of components
    CovarianceType covariance = CovarianceType::Spherical;
    std::vector<float> weights; ///< size k, sums to 1
    std::vector<float> means;   ///< size k * d, row-major
    /// size k (spherical, tied: k equal values) or k * d (diagonal)
    std::vector<float> variances;
    /// absolute variance floor used by the last training (0 if untrained)
    float variance_floor = 0;
    bool is_trained = false;
    /// one entry per EM iteration of the last training
    std::vector<GmmIterationStats> iteration_stats;

    GaussianMixture() = default;
    /// An untrained model; throws when d < 1 or k < 1.
    GaussianMixture(int d, int k, CovarianceType covariance);

    /// Number of variance values per component (1 or d).
    int variances_per_component() const {
        return has_per_dimension_variances(covariance) ? d : 1;
    }

    /**
     * Fit by EM on the CPU (BLAS + OpenMP, blocked: memory O(block * k)).
     * Subsamples, initialises, then iterates. Throws on n < k, on NaN/Inf in
     * x and on a d mismatch of the parameters.
     */
    void train(idx_t n, const float* x, const GmmParameters& params = {});

    /**
     * out[i * k + j] = log pi_j + log N(x_i | mu_j, Sigma_j) for a block of
     * n points (the caller sizes out: n * k floats).
     */
    void log_joint(idx_t n, const float* x, float* out) const;

    /// out[i] = log p(x_i) (log-sum-exp over components), computed in blocks.
    void log_density(idx_t n, const float* x, float* out) const;

    /// Mean of log p(x_i) over the n points.
    double mean_log_likelihood(idx_t n, const float* x) const;

    /**
     * For each point, the m components of highest posterior, in decreasing
     * order, with their posteriors at the given temperature:
     *   p_T(j | x) proportional to exp((log pi_j + log N(x | j)) / T).
     * posteriors and components hold n * m values (m <= k).
     */
    void top_posteriors(
        idx_t n,
        const float* x,
        int m,
        float* posteriors,
        idx_t* components,
        float temperature = 1.0f) const;

    /// Number of free parameters (weights, means, variances; a tied model
    /// counts its shared variance once).
    size_t n_parameters() const;
    /// Bayesian information criterion on (n, x): -2 LL + p log n (lower is
    /// better).
    double bic(idx_t n, const float* x) const;
    /// Akaike information criterion on (n, x): -2 LL + 2 p.
    double aic(idx_t n, const float* x) const;

    /// Throws when the arrays do not match (d, k, covariance), hold
    /// non-finite / non-positive values where they must not, or (tied)
    /// hold unequal variances.
    void check_consistency() const;
};

} // namespace faiss_gmm
