/**
 * IndexIVFGMM: an IndexIVFFlat whose coarse quantizer is a Gaussian mixture.
 * Border vectors are stored in several inverted lists (spill); search never
 * returns an id twice and computes each stored vector's distance at most once
 * per query.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <faiss/IndexIVFFlat.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

/// Order in which a query visits the inverted lists.
enum class ProbeOrder : int {
    L2 = 0,        ///< by L2 distance to the component means (default)
    Posterior = 1, ///< by log pi_k + log N(q | mu_k, Sigma_k), decreasing
};
/// "l2" / "posterior".
const char* probe_order_name(ProbeOrder order);
/// Inverse of probe_order_name; throws naming the string when unknown.
ProbeOrder probe_order_from_name(const std::string& name);

/// Which lists a vector is stored in besides its primary (argmax) list.
enum class SpillRule : int {
    None = 0,      ///< one list per vector
    Posterior = 1, ///< lists with tempered posterior >= tau
    Closure = 2,   ///< lists with ||x - mu_j||^2 <= ratio * ||x - mu_1||^2
    Soar = 3,      ///< SOAR: secondary list minimising the residual loss
                   ///< ||r'||^2 + lambda (<r, r'> / ||r||)^2
};
const char* spill_rule_name(SpillRule rule);
SpillRule spill_rule_from_name(const std::string& name);

/** How add() spreads a vector over lists. Defaults: see IndexIVFGMM.h docs
 * of the default values, measured on real SIFT data. */
struct SpillParameters {
    SpillRule rule = SpillRule::Posterior;
    /// Posterior rule: keep a secondary list when its posterior >= tau
    float tau = 0.02f;
    /// Posterior rule: temperature T applied to the log-joint before the
    /// softmax (T > 1 flattens posteriors so more border vectors spill)
    float temperature = 4.0f;
    /// at most this many lists per vector, primary included (>= 1)
    int max_assign = 2;
    /// Closure rule: distance ratio (>= 1) to the nearest mean
    float closure_ratio = 1.3f;
    /// Soar rule: weight lambda of the parallel residual component
    float soar_lambda = 1.0f;
};

/** Per-call search parameters (probe order, adaptive probing). */
struct SearchParametersIVFGMM : faiss::SearchParametersIVF {
    ProbeOrder probe_order = ProbeOrder::L2;
    /// adaptive probing: stop once the probed lists hold this fraction of the
    /// query's posterior mass (0 = off; nprobe stays the cap)
    float posterior_mass = 0;
};

/**
 * Exact per-search counters (in addition to faiss::indexIVF_stats, which is
 * filled as IndexIVF fills it: nq, nlist probed, ndis = fine distances).
 */
struct IndexIVFGMMStats {
    size_t nq = 0;                ///< queries searched
    size_t ncoarse_distances = 0; ///< query-to-mean distances (nlist / query)
    size_t nfine_distances = 0;   ///< unique stored vectors compared
    size_t nentries_scanned = 0;  ///< list entries visited, duplicates incl.
    size_t nduplicates_skipped = 0; ///< entries skipped as already compared
    size_t nlists_probed = 0;     ///< lists visited (adaptive probing varies)
    void reset();
    void add(const IndexIVFGMMStats& other);
};
/// Global counters, like faiss::indexIVF_stats (not thread-safe across
/// concurrent searches).
extern IndexIVFGMMStats indexIVFGMM_stats;

/// Where train() runs EM.
enum class TrainDevice : int {
    Auto = 0, ///< the GPU when one is usable and built in, else the CPU
    Cpu = 1,
    Gpu = 2, ///< throws when no GPU is usable
};

/**
 * IVF index with a GMM coarse quantizer. The quantizer (an IndexFlatL2 over
 * the component means) is owned; `gmm` holds the full model.
 *
 * Spill bookkeeping: for list l and entry j, other_lists[l] holds
 * (max_assign - 1) list numbers (-1 padded) where the same vector is also
 * stored. At search time an entry is skipped when one of its other lists was
 * probed earlier for this query, so every vector is compared once.
 */
struct IndexIVFGMM : faiss::IndexIVFFlat {
    GaussianMixture gmm;       ///< the trained model (k = nlist)
    GmmParameters gmm_params;  ///< EM parameters used by train()
    SpillParameters spill;     ///< how add() spreads vectors over lists
    ProbeOrder probe_order = ProbeOrder::L2; ///< default probe order
    TrainDevice train_device = TrainDevice::Auto;
    /// per list: (max_assign - 1) int32 per entry, see above
    std::vector<std::vector<int32_t>> other_lists;
    /// number of list entries (copies), >= ntotal
    size_t nentries = 0;

    /// d: dimension, nlist: components; metric is always L2.
    IndexIVFGMM(
            int d,
            size_t nlist,
            const GmmParameters& gmm_params = GmmParameters(),
            const SpillParameters& spill = SpillParameters());
    IndexIVFGMM();
    ~IndexIVFGMM() override;

    /// Fit the GMM on n training vectors; its means become the centroids.
    void train(idx_t n, const float* x) override;

    /// Adopt an already trained model (k must equal nlist, d must match).
    void set_gmm(const GaussianMixture& model);

    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;

    void search(
            idx_t n,
            const float* x,
            idx_t k,
            float* distances,
            idx_t* labels,
            const faiss::SearchParameters* params = nullptr) const override;

    void search_preassigned(
            idx_t n,
            const float* x,
            idx_t k,
            const idx_t* assign,
            const float* centroid_dis,
            float* distances,
            idx_t* labels,
            bool store_pairs,
            const faiss::IVFSearchParameters* params = nullptr,
            faiss::IndexIVFStats* stats = nullptr) const override;

    void range_search(
            idx_t n,
            const float* x,
            float radius,
            faiss::RangeSearchResult* result,
            const faiss::SearchParameters* params = nullptr) const override;

    /// Removes every copy of each selected id; returns unique vectors removed.
    size_t remove_ids(const faiss::IDSelector& sel) override;
    void reset() override;
    void reconstruct(idx_t key, float* recons) const override;
    /// other must be an IndexIVFGMM with the same d, nlist, and means.
    void merge_from(faiss::Index& other, idx_t add_id) override;

    /// nentries / ntotal (1 when empty).
    double replication_factor() const;
    /// max list size / mean list size.
    double imbalance_factor() const;

    /**
     * Set runtime parameters from a string, FAISS ParameterSpace style:
     * "nprobe=32,probe=posterior,posterior_mass=0.9,tau=0.05,...".
     * Throws naming the unknown key or bad value.
     */
    void set_parameters(const std::string& description);
};

} // namespace faiss_gmm
