/**
 * The EM driver shared by every trainer: initialisation, the iteration loop,
 * the M-step, the variance floor, re-seeding of empty components, the
 * convergence test and the verbose lines. A trainer supplies only the E-step
 * (GmmEStep), so CPU and GPU training give the same results by construction
 * and differ only in where the E-step runs.
 */

#pragma once

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmSufficientStats.h>

namespace faiss_gmm {

/** Computes the sufficient statistics of a model over the whole data set. */
struct GmmEStep {
    /// Fill stats (already shaped for model and reset) for the data set the
    /// E-step was built on.
    virtual void compute(
            const GaussianMixture& model,
            GmmSufficientStats* stats) = 0;
    virtual ~GmmEStep() = default;
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
 * initial hard assignment) on n points x, and set model->variance_floor from
 * params.reg_covar and the data's mean per-dimension variance. Throws on n < k
 * and on non-finite input.
 */
void initialize_gmm(
        GaussianMixture* model,
        idx_t n,
        const float* x,
        const GmmParameters& params);

/**
 * One M-step: new weights, means and variances from stats (taken about the
 * model's current means), variance floor applied, components with
 * N_k < params.min_component_count re-seeded by splitting the heaviest
 * component. Returns the number of re-seeded components.
 */
int gmm_m_step(
        GaussianMixture* model,
        const GmmSufficientStats& stats,
        const GmmParameters& params,
        int iteration);

/**
 * Run EM iterations on an initialised model with the given E-step until
 * params.niter or the tolerance; fills model->iteration_stats and prints one
 * line per iteration when params.verbose.
 */
void run_em(GaussianMixture* model, GmmEStep* estep, const GmmParameters& params);

} // namespace faiss_gmm
