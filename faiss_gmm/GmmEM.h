/**
 * The EM driver shared by every trainer: initialisation, the iteration loop,
 * the M-step, the variance floor, re-seeding of empty components, the
 * convergence test and the verbose lines. A trainer supplies only the E-step
 * (GmmEStep), so CPU and GPU training give the same results by construction
 * and differ only in where the E-step runs.
 */

#pragma once

#include <cstdint>
#include <vector>

#include <faiss/Index.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmSufficientStats.h>

namespace faiss_gmm {

/** Computes the sufficient statistics of a model over the whole data set. */
struct GmmEStep {
    /// Fill stats (already shaped for model and reset) for the data set the
    /// E-step was built on.
    virtual void
    compute(const GaussianMixture& model, GmmSufficientStats* stats) = 0;
    virtual ~GmmEStep() = default;
};

/**
 * The E-step on the CPU, over a data set it does not own (x must outlive it).
 *
 * Points are processed in blocks of block_size rows. One sgemm gives the
 * cross terms of every distance in the block (from the |x|^2 - 2 x.mu +
 * |mu|^2 expansion, clamped at 0); the responsibilities live only in the
 * block's n_block x k buffer. The statistics come from R^T [x | q | 1] with
 * q = |x|^2 (spherical) or x^2 per dimension (diagonal): sum_i r_ik x_i, the
 * second moments and N_k, formed in double, then moved to the old means in
 * double. (Sums in fp32 followed by the subtraction of mu^2 lose about
 * log10(|mu|^2 / var) digits; in double they are exact to ~1e-12 for any
 * data offset.) A block whose responsibilities are mostly exact zeros (far
 * components underflow, typical of high-dimensional data) adds only its
 * non-zero r_ik; a denser block uses one dgemm. The data is also shifted by
 * its mean before the products, which shrinks the fp32 logits' rounding.
 * Memory O(block_size * (k + d) + k * d) (per thread: k * (2 d + 2)
 * doubles).
 *
 * A full-covariance model takes compute_full instead: no expansion, the
 * logits through the Cholesky factors (impl::FullComponentTerms: per
 * component one strmm (x' - mu'_j) U_j over the block), the second moments
 * sum r (x' - mu'_j)(x' - mu'_j)^T about the old means by one dsyrk per
 * block and component over its rows with r > 0, in double. Memory
 * O(block_size * (k + 3 d)) plus the statistics' k * d^2 doubles.
 *
 * Threads, always with BLAS on each calling thread (impl/RowTeam.h:
 * alternating OpenMP regions with OpenBLAS's own threads was up to 4.8x
 * slower on 2 cores). Spherical, tied, diagonal: one OpenMP team over
 * contiguous row ranges, each range end to end in blocks of
 * block_size / threads rows, its statistics summed in range order. Full
 * covariance, per block: row ranges for the logits and log-sum-exp, then one
 * thread per component for its statistics (so no thread holds a copy of the
 * k d^2 second moments). Every sum is formed in a fixed order, so the result
 * is deterministic for a given thread count.
 */
struct CpuEStep : GmmEStep {
    idx_t n;            ///< number of points
    const float* x;     ///< n x d points, row-major, not owned
    int d;              ///< dimension
    int64_t block_size; ///< rows per block
    /// the data mean, subtracted from points and means inside the products
    std::vector<float> center;

    /**
     * @param n          number of points
     * @param x          n x d points (must outlive this object)
     * @param d          dimension
     * @param block_size points per block (default as GmmParameters)
     */
    CpuEStep(idx_t n, const float* x, int d, int64_t block_size = 4096);

    void
    compute(const GaussianMixture& model, GmmSufficientStats* stats) override;

    /// compute() for a full-covariance model (called by compute()).
    void compute_full(const GaussianMixture& model, GmmSufficientStats* stats);
};

/**
 * Choose the training sample: all n points, or a seeded random subset of
 * k * max_points_per_component of them (as faiss::Clustering does). Returns
 * the sample size and fills sample (copied rows) when subsampling happens;
 * sample stays empty when all points are used.
 */
idx_t subsample_training_set(
    int d,
    int k,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    std::vector<float>* sample);

/**
 * Initialise model (means by params.init, equal weights, variances from the
 * initial hard assignment; full covariance: covariances from it, the floor
 * added to their diagonals, factors computed) on n points x, and set
 * model->variance_floor from
 * params.reg_covar and the data's mean per-dimension variance. Throws on n < k
 * and on non-finite input.
 *
 * @param assign_index L2 index of dimension model->d that finds the nearest
 *        mean: the assignment index of faiss::Clustering (KMeans init) and
 *        of the final hard assignment (KMeans and Random inits). Null: a CPU
 *        faiss::IndexFlatL2. The GPU trainers pass a
 *        gpu::GpuIndexFlatL2, so that their initialisation runs on the GPU.
 *        KMeansPlusPlus init always runs on the CPU. The index is reset and
 *        left holding the initial means.
 */
void initialize_gmm(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    faiss::Index* assign_index = nullptr);

/**
 * One M-step: new weights, means and variances from stats (taken about the
 * model's current means), variance floor applied (full covariance: added to
 * every covariance's diagonal, then update_precision_cholesky, which throws
 * naming a component that is not positive definite), components with
 * N_k < params.min_component_count re-seeded by splitting the heaviest
 * component. Returns the number of re-seeded components.
 */
int gmm_m_step(
    GaussianMixture* model,
    const GmmSufficientStats& stats,
    const GmmParameters& params,
    int iteration);

/**
 * The end of every EM iteration, shared by run_em and the GPU trainer's
 * device loop (gpu::run_em_on_device) so that both record, print and stop
 * alike: appends the iteration's statistics to the model, prints the verbose
 * line and applies the convergence test (stop when the mean log-likelihood
 * gains less than params.tol, never across a re-seeding).
 */
class EmProgress {
   public:
    /// Checks params.niter >= 0 and params.tol >= 0 (throws naming them).
    explicit EmProgress(const GmmParameters& params);

    /**
     * Record one iteration: appends is to model->iteration_stats, prints
     * its line when params.verbose (and the convergence line when EM
     * stops) and returns true when EM has converged after it.
     *
     * @param model the model being trained (iteration_stats grows)
     * @param is    the iteration's statistics (log-likelihood of the E-step,
     *              time, minima and re-seeds after the M-step)
     */
    bool finish_iteration(GaussianMixture* model, const GmmIterationStats& is);

   private:
    int niter_;                 ///< params.niter, for the verbose lines
    double tol_;                ///< params.tol
    bool verbose_;              ///< params.verbose
    double previous_ll_ = 0;    ///< mean log-likelihood of the last iteration
    int previous_reseeded_ = 0; ///< re-seeds of the last iteration
};

/**
 * Run EM iterations on an initialised model with the given E-step until
 * params.niter or the tolerance; fills model->iteration_stats and prints one
 * line per iteration when params.verbose.
 */
void run_em(
    GaussianMixture* model, GmmEStep* estep, const GmmParameters& params);

} // namespace faiss_gmm
