/**
 * A Gaussian mixture model with spherical, diagonal, tied-spherical or full
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
    /// Sigma_k: a full symmetric positive-definite d x d matrix per
    /// component, stored in GaussianMixture::covariances and scored through
    /// its Cholesky factor GaussianMixture::precision_cholesky. Memory
    /// k * d^2 floats.
    Full = 3,
};

/// Whether a model of this covariance stores d variances per component
/// (Diagonal; Full keeps the diagonal of each covariance there) rather than
/// one (Spherical, TiedSpherical): the layout decision of the variances
/// array in every scoring, statistics and I/O path. Full models are scored
/// and trained through their Cholesky factors, never as diagonal ones.
inline bool has_per_dimension_variances(CovarianceType type) {
    return type == CovarianceType::Diagonal || type == CovarianceType::Full;
}

/// "spherical" / "diagonal" / "tied" / "full".
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
    /// training data: every variance is kept >= reg_covar * that variance.
    /// Full covariance: reg_covar * that variance is *added* to the
    /// diagonal of every covariance after each estimate (as scikit-learn
    /// adds its absolute reg_covar), which keeps them positive definite.
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
    /// smallest variance after the M-step (full: smallest diagonal entry
    /// of a covariance)
    float min_variance = 0;
    int n_reseeded = 0; ///< components re-seeded in this iteration
};

/// Largest covariance array a full-covariance model may hold: 8 GiB
/// (k * d^2 floats; the EM statistics hold as many doubles).
constexpr uint64_t kMaxFullCovarianceBytes = uint64_t(8) << 30;

/**
 * Throws faiss::FaissException, prefixed by `who` and naming k, d and the
 * size, when a full-covariance model of k components in d dimensions would
 * need more than kMaxFullCovarianceBytes for its k * d^2 floats.
 */
void check_full_covariance_size(int d, int k, const char* who);

/**
 * K Gaussian components in d dimensions:
 *   p(x) = sum_k pi_k N(x | mu_k, Sigma_k),
 * Sigma_k = variances[k] * I (spherical, tied: all variances[k] equal),
 * diag(variances[k*d .. k*d+d)) (diagonal) or the d x d block k of
 * covariances (full).
 *
 * Not thread-safe for training; all const scoring methods are.
 */
struct GaussianMixture {
    int d = 0; ///< dimension
    int k = 0; ///< number of components
    CovarianceType covariance = CovarianceType::Spherical;
    std::vector<float> weights; ///< size k, sums to 1
    std::vector<float> means;   ///< size k * d, row-major
    /// size k (spherical, tied: k equal values) or k * d (diagonal; full:
    /// the diagonal of each covariance, kept by update_precision_cholesky)
    std::vector<float> variances;
    /**
     * Full covariance only (empty otherwise): k x d x d floats, block j the
     * row-major symmetric positive-definite Sigma_j, regularisation
     * included. After changing it, call update_precision_cholesky().
     */
    std::vector<float> covariances;
    /**
     * Full covariance only, derived from covariances: k x d x d floats,
     * block j the row-major UPPER-triangular U_j (zeros below the diagonal)
     * with Sigma_j^-1 = U_j U_j^T (scikit-learn's precisions_cholesky_), so
     *   log N(x | mu_j, Sigma_j) = -1/2 (d log 2 pi + ||(x - mu_j)^T U_j||^2)
     *                              + log_det_cholesky[j].
     */
    std::vector<float> precision_cholesky;
    /// Full covariance only, derived: sum_i log U_j[i][i] = -1/2 log det
    /// Sigma_j, size k (computed in double, stored rounded)
    std::vector<float> log_det_cholesky;
    /// absolute variance floor used by the last training (0 if untrained);
    /// full covariance: the amount added to every covariance's diagonal
    float variance_floor = 0;
    bool is_trained = false;
    /// one entry per EM iteration of the last training
    std::vector<GmmIterationStats> iteration_stats;

    GaussianMixture() = default;
    /**
     * An untrained model (unit variances, identity covariances); throws
     * when d < 1 or k < 1, and for full covariance when the k * d^2 floats
     * of a covariance array would exceed kMaxFullCovarianceBytes.
     */
    GaussianMixture(int d, int k, CovarianceType covariance);

    /**
     * Full covariance: add diagonal_add to the diagonal of every covariance
     * (in place; 0 adds nothing), make each one exactly symmetric (the mean
     * of it and its transpose), then recompute precision_cholesky,
     * log_det_cholesky and variances (the diagonals) from covariances, in
     * double through LAPACK (dpotrf, dtrtri). Throws faiss::FaissException
     * naming the component, and the leading minor that failed, when a
     * covariance is not positive definite, or when covariance is not Full
     * or the array does not hold k * d * d values.
     *
     * @param diagonal_add value added to every diagonal entry (>= 0, finite):
     *        the M-step passes the variance floor (reg_covar times the mean
     *        data variance)
     */
    void update_precision_cholesky(float diagonal_add = 0);

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
    /// counts its shared variance once, a full one d (d + 1) / 2 values per
    /// covariance).
    size_t n_parameters() const;
    /// Bayesian information criterion on (n, x): -2 LL + p log n (lower is
    /// better).
    double bic(idx_t n, const float* x) const;
    /// Akaike information criterion on (n, x): -2 LL + 2 p.
    double aic(idx_t n, const float* x) const;

    /// Throws when the arrays do not match (d, k, covariance), hold
    /// non-finite / non-positive values where they must not, (tied) hold
    /// unequal variances or (full) hold a covariance that is not symmetric
    /// (relative tolerance 1e-4) or whose diagonal differs from variances.
    void check_consistency() const;
};

} // namespace faiss_gmm
