/**
 * IndexIVFGMM: an IndexIVFFlat whose coarse quantizer is a Gaussian mixture.
 * Border vectors are stored in several inverted lists (spill); search never
 * returns an id twice and computes each stored vector's distance at most once
 * per query.
 */

#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
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
/// "none" / "posterior" / "closure" / "soar".
const char* spill_rule_name(SpillRule rule);
/// Inverse of spill_rule_name; throws naming the string when unknown.
SpillRule spill_rule_from_name(const std::string& name);

/**
 * How add() spreads a vector over lists.
 *
 * Defaults measured on sift-debian-a (300k real SIFT, nlist 1024, probe by
 * L2): see the table in the IndexIVFGMM documentation below.
 */
struct SpillParameters {
    /// which rule picks the secondary lists
    SpillRule rule = SpillRule::Posterior;
    /// Posterior rule: keep a secondary list when its tempered posterior
    /// is >= tau (in [0, 1]; tau = 1 never spills)
    float tau = 0.02f;
    /// Posterior rule: temperature T (> 0) applied to the log-joint before
    /// the softmax (T > 1 flattens posteriors so more border vectors spill)
    float temperature = 4.0f;
    /// at most this many lists per vector, primary included (>= 1)
    int max_assign = 2;
    /// Closure rule: distance ratio (>= 1) to the nearest mean
    float closure_ratio = 1.3f;
    /// Soar rule: weight lambda (>= 0) of the parallel residual component
    float soar_lambda = 1.0f;
    /// Posterior and None rules: the primary list is the nearest mean by L2
    /// (true) or the argmax of the posterior (false). Closure and Soar
    /// always use the nearest mean. Measured on sift-debian-a (defaults
    /// otherwise, 10k queries): the argmax needs 0.3-0.6% fewer distances
    /// at recall@10 0.90 / 0.95 / 0.99 (7827 vs 7858 at 0.95), although
    /// search probes by L2.
    bool primary_is_nearest_mean = false;
};

/** Per-call search parameters (probe order, adaptive probing). */
struct SearchParametersIVFGMM : faiss::SearchParametersIVF {
    /// order in which lists are probed (overrides IndexIVFGMM::probe_order)
    ProbeOrder probe_order = ProbeOrder::L2;
    /// adaptive probing: stop once the probed lists hold this fraction of the
    /// query's posterior mass (at mass_temperature; 0 = off; nprobe stays
    /// the cap). Overrides IndexIVFGMM::posterior_mass.
    float posterior_mass = 0;
    /// temperature T (> 0) of the posterior used by posterior_mass:
    /// p_T(j | q) proportional to exp(log-joint_j / T). T = 1 is the model's
    /// posterior, far too peaked on SIFT; larger T spreads the mass over more
    /// lists. Overrides IndexIVFGMM::mass_temperature.
    float mass_temperature = 1;
    /// adaptive probing by distance ratio (probe order L2 only): probe list
    /// j only when ||q - mu_j||^2 <= distance_ratio * ||q - mu_1||^2, mu_1
    /// the nearest mean; nprobe stays the cap. 0 = off, else >= 1.
    /// Overrides IndexIVFGMM::distance_ratio.
    float distance_ratio = 0;
    /// bisector pruning (probe order L2 only): skip list j when the distance
    /// from q to the bisector hyperplane of mu_1 and mu_j,
    /// (||q - mu_j||^2 - ||q - mu_1||^2) / (2 ||mu_j - mu_1||), exceeds
    /// prune_margin times the current k-th neighbour distance. Vectors whose
    /// nearest mean is mu_j lie beyond that hyperplane, so prune_margin = 1
    /// loses none of them; smaller margins prune more. Each ||mu_j - mu_1||
    /// the test needs (when the free bound (||q - mu_j|| - ||q - mu_1||) / 2
    /// does not decide) is counted as one coarse distance. 0 = off, else > 0.
    /// Overrides IndexIVFGMM::prune_margin.
    float prune_margin = 0;
    /// model-based pruning (probe order L2 only): skip list j when the
    /// expected number of its vectors closer to q than the current k-th
    /// neighbour is below min_expected_hits, the list's vectors modelled as
    /// N(mu_j, sigma_j^2 I) (sigma_j^2: the component's variance, mean over
    /// dimensions for a diagonal model): n_j * Phi((r_k^2 - m) / s) with
    /// m = ||q - mu_j||^2 + d sigma_j^2 and s^2 = 4 sigma_j^2 ||q - mu_j||^2
    /// + 2 d sigma_j^4, the mean and variance of ||q - x||^2. Costs no
    /// distance. 0 = off, else > 0. Overrides IndexIVFGMM::min_expected_hits.
    float min_expected_hits = 0;
    /**
     * Evaluation hook (null = off): every fine distance is read from this
     * table instead of being computed. Row i (stride ntotal floats) holds
     * query i's squared L2 distances to the vectors with ids 0 .. ntotal-1,
     * so the ids must be sequential: a stored id outside [0, ntotal) throws.
     * Rows follow the queries of the call (search, or search_preassigned
     * called directly). Every probe rule, pruning rule and counter is
     * unchanged; range_search rejects it. Lets an evaluation that computed
     * the query x base distance matrix once replay many settings without
     * recomputing distances.
     */
    const float* precomputed_distances = nullptr;
};

/**
 * Throw, naming the first out-of-range value, unless the adaptive probing
 * and pruning parameters of p are valid (posterior_mass in [0, 1],
 * mass_temperature > 0, distance_ratio 0 or >= 1, prune_margin and
 * min_expected_hits >= 0, the last three only with probe order L2). Shared
 * by IndexIVFGMM and gpu::GpuIndexIVFGMM.
 *
 * @param p   the resolved search parameters
 * @param who prefix of the error message, e.g. "IndexIVFGMM"
 */
void check_search_parameters(const SearchParametersIVFGMM& p, const char* who);

/**
 * Exact per-search counters (in addition to faiss::indexIVF_stats, which is
 * filled as IndexIVF fills it: nq, nlist = non-empty lists probed, ndis =
 * fine distances, nheap_updates). search() and range_search() add to the
 * global indexIVFGMM_stats; search_preassigned() adds everything but the
 * coarse distances, which its caller computed.
 */
struct IndexIVFGMMStats {
    size_t nq = 0;                  ///< queries searched
    size_t ncoarse_distances = 0;   ///< query-to-mean distances (nlist / query)
    size_t nfine_distances = 0;     ///< unique stored vectors compared
    size_t nentries_scanned = 0;    ///< list entries visited, duplicates incl.
    size_t nduplicates_skipped = 0; ///< entries skipped as already compared
    size_t nlists_probed = 0; ///< non-empty lists visited (adaptive varies)
    /// mean-to-mean distances computed by bisector pruning (included in
    /// ncoarse_distances)
    size_t nbound_distances = 0;
    /// lists skipped by bisector or model-based pruning
    size_t nlists_pruned = 0;
    /// set every counter to 0
    void reset();
    /// add other's counters to these
    void add(const IndexIVFGMMStats& other);
};
/// Global counters, like faiss::indexIVF_stats (not thread-safe across
/// concurrent searches).
extern IndexIVFGMMStats indexIVFGMM_stats;

/// Where train() runs EM.
enum class TrainDevice : int {
    Auto = 0, ///< the GPU when one is usable and built in, else the CPU
    Cpu = 1,  ///< GaussianMixture::train
    Gpu = 2,  ///< gpu::train_gmm_gpu; throws when no GPU is usable
};
/// "auto" / "cpu" / "gpu".
const char* train_device_name(TrainDevice device);
/// Inverse of train_device_name; throws naming the string when unknown.
TrainDevice train_device_from_name(const std::string& name);

/**
 * IVF index with a GMM coarse quantizer. The quantizer (an IndexFlatL2 over
 * the component means) is owned; `gmm` holds the full model. Metric: L2 only.
 *
 * Spill bookkeeping: for list l and entry j, other_lists[l][j * w .. j * w +
 * w) (w = other_lists_width) holds the other lists where the same vector is
 * stored, -1 padded at the end. At search time an entry is skipped when one
 * of its other lists was probed earlier for this query, so every vector is
 * compared once and returned once. ntotal counts vectors, nentries counts
 * list entries (copies).
 *
 * Defaults, measured on sift-debian-a (300k real SIFT base vectors, 10k
 * queries, exact top-10 ground truth), nlist 1024, probe by L2. Cost = coarse
 * (nlist) + fine distances per query, fine counting each vector once;
 * "entries" = the same cost counting list entries visited (duplicates
 * included). k-means: FAISS IndexIVFFlat, 20 Lloyd iterations. GMM:
 * spherical, 10 EM iterations (the default before it became 20, see
 * GmmParameters::niter) from a 20-iteration k-means, spill T = 4, tau = 0.02,
 * max_assign 2, primary = argmax posterior (replication 1.785, imbalance 1.044
 * vs 1.098 for k-means).
 *
 *   nprobe | k-means recall  cost  | GMM recall  cost  entries
 *   -------+-----------------------+---------------------------
 *        4 |   0.6532        2299  |   0.7845    3097    3195
 *        8 |   0.7904        3544  |   0.8958    5065    5391
 *       16 |   0.8951        5977  |   0.9612    8842    9781
 *       32 |   0.9586       10736  |   0.9904   16005   18535
 *       64 |   0.9887       20078  |   0.9982   29419   35992
 *
 * Cost at recall@10 0.90 / 0.95 (log-interpolated in nprobe): k-means 6221 /
 * 9738, GMM 5224 / 7827, i.e. 1.19x / 1.24x fewer distances. Other spill
 * settings (1000 queries, primary = nearest mean, cost ratio vs k-means at
 * recall 0.95, replication): T=4 tau=0.02 max 2: 1.29 (1.79); T=4
 * tau=0.05: 1.26 (1.67); T=4 tau=0.1: 1.23 (1.54); T=2 tau=0.02: 1.23 (1.52);
 * T=2 tau=0.05: 1.18 (1.41); T=1 tau=0.02: 1.13 (1.29); T=4 tau=0.05 max
 * 3: 1.30 (2.07); no spill: 1.05; k-means means + SOAR (lambda 1): 1.22 (2.00);
 * k-means means + closure 1.3, max 3: 1.25 (2.53); k-means means + the same
 * posterior spill: 1.23 (1.80). EM iterations 3 / 10 / 20: 1.25 / 1.29 / 1.29.
 *
 * Adaptive probing (search time; off by default so that nprobe = nlist stays
 * exact). Same data, 10k queries, nprobe 6 ... 128 as the cap; cost at
 * recall@10 0.90 / 0.95 / 0.99 ("-": 0.99 not reached at nprobe 128) and
 * ratio vs k-means at 0.95. The bisector's mean-to-mean distances (about one
 * per probed list) are counted as coarse. "km" = the k-means means with
 * per-cluster variances, installed by set_gmm.
 *
 *   setting (set_parameters)           repl  cost .90/.95/.99  ratio
 *   k-means (FAISS IndexIVFFlat)       1.00  6221/9738/21583   1.00
 *   km spill=none,primary=l2,
 *      prune_margin=0.4                1.00  5489/8110/    -   1.20
 *   GMM defaults                       1.785 5224/7827/15809   1.24
 *   GMM, prune_margin=0.3              1.785 4863/6959/    -   1.40
 *   GMM, prune_margin=0.35             1.785 4902/7022/14099   1.39
 *   GMM tau=0.1                        1.53  5413/8057/17291   1.21
 *   GMM tau=0.1,prune_margin=0.4       1.53  5075/7314/14612   1.33
 *   km closure 1.15, max_assign 2      1.61  5662/8247/17748   1.18
 *   the same, prune_margin=0.4         1.61  5206/7318/14427   1.33
 *   km soar lambda 1, max_assign 2     2.00  5472/8024/16042   1.21
 *   the same, prune_margin=0.35        2.00  4996/6958/12388   1.40
 *   km T=4 tau=0.1, prune_margin=0.4   1.54  5097/7224/14375   1.35
 *
 * Bisector pruning (prune_margin) saves 10-15% whatever the lists are. The
 * distance ratio alone (2000 queries, cap 128) is worse than fixed nprobe
 * (10046 vs 7639 at 0.95); as an extra cap on the nprobe sweep
 * (distance_ratio=2) it saves 7%. Tempered posterior mass behaves like the
 * ratio. The Gaussian hit model (min_expected_hits) is badly calibrated on
 * SIFT (useful targets are near 1e-5; alone it costs 10264 at 0.95): an
 * ablation, not a recommendation.
 */
struct IndexIVFGMM : faiss::IndexIVFFlat {
    GaussianMixture gmm;      ///< the trained model (k = nlist)
    GmmParameters gmm_params; ///< EM parameters used by train()
    SpillParameters spill;    ///< how add() spreads vectors over lists
    ProbeOrder probe_order = ProbeOrder::L2; ///< default probe order
    /// default adaptive probing target (0 = off), see SearchParametersIVFGMM
    float posterior_mass = 0;
    /// default temperature of posterior_mass, see SearchParametersIVFGMM
    float mass_temperature = 1;
    /// default distance-ratio cut (0 = off), see SearchParametersIVFGMM
    float distance_ratio = 0;
    /// default bisector pruning margin (0 = off), see SearchParametersIVFGMM
    float prune_margin = 0;
    /// default model-based pruning (0 = off), see SearchParametersIVFGMM
    float min_expected_hits = 0;
    /// where train() runs EM
    TrainDevice train_device = TrainDevice::Auto;
    /// per list: other_lists_width int32 per entry, see above
    std::vector<std::vector<int32_t>> other_lists;
    /// int32 per entry in other_lists (max_assign - 1 of the widest add)
    int other_lists_width = 0;
    /// number of list entries (copies), >= ntotal
    size_t nentries = 0;
    /// id -> lo_build(list, offset) of one copy, built on the first
    /// reconstruct() and dropped by every change of the lists (not saved)
    mutable std::shared_ptr<const std::unordered_map<idx_t, uint64_t>>
        id_location_cache;

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

    /// Adopt an already trained model (k must equal nlist, d must match);
    /// the index must be empty.
    void set_gmm(const GaussianMixture& model);

    /// Store each vector in the lists chosen by `spill`; ids are xids or
    /// ntotal, ntotal + 1, ... when xids is null.
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;

    /// One list per vector, given by coarse_idx (-1: not stored); keeps the
    /// spill bookkeeping in sync for callers that bypass add_with_ids.
    void add_core(
        idx_t n,
        const float* x,
        const idx_t* xids,
        const idx_t* coarse_idx FAISS_GMM_ADD_CORE_CONTEXT_PARAM) override;

    /**
     * Lists of each vector under the current spill rule, without adding:
     * lists[i * max_assign ...] for i < n, primary first, -1 padded.
     * The same choice add_with_ids() makes.
     */
    void assign_lists(idx_t n, const float* x, idx_t* lists) const;

    /**
     * Coarse step of search(): the lists each query probes, in probe order,
     * -1 padded when adaptive probing stops early. assign and coarse_dis
     * hold n * nprobe values (coarse_dis: L2 distance for the L2 order,
     * minus the log-joint for the posterior order).
     */
    void coarse_assign(
        idx_t n,
        const float* x,
        size_t nprobe,
        ProbeOrder order,
        float mass,
        idx_t* assign,
        float* coarse_dis) const;

    /// The same, with every coarse rule of params: nprobe, probe_order,
    /// posterior_mass at mass_temperature, distance_ratio (prune_margin acts
    /// in search_preassigned, not here).
    void coarse_assign(
        idx_t n,
        const float* x,
        const SearchParametersIVFGMM& params,
        idx_t* assign,
        float* coarse_dis) const;

    void search(
        idx_t n,
        const float* x,
        idx_t k,
        float* distances,
        idx_t* labels,
        const faiss::SearchParameters* params = nullptr) const override;

    /// centroid_dis must hold the squared L2 distances to the means (as
    /// coarse_assign gives them for the L2 order) when params is a
    /// SearchParametersIVFGMM with prune_margin or min_expected_hits > 0
    /// (or, without a SearchParametersIVFGMM, when the index's are).
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
    /// Empties the lists (the model stays trained).
    void reset() override;
    /// The stored vector with id key; throws when no vector has that id.
    void reconstruct(idx_t key, float* recons) const override;
    /// other must be an IndexIVFGMM with the same d, nlist, and means; its
    /// entries move here with ids shifted by add_id, leaving other empty.
    void merge_from(faiss::Index& other, idx_t add_id) override;

    /// nentries / ntotal (1 when empty).
    double replication_factor() const;
    /// FAISS's imbalance factor of the list sizes (entries):
    /// nlist * sum(size^2) / (sum size)^2, 1 when perfectly balanced.
    double imbalance_factor() const;

    /**
     * Set runtime parameters from a string, FAISS ParameterSpace style:
     * "nprobe=32,probe=posterior,posterior_mass=0.9,tau=0.05,...".
     * Keys: nprobe, max_codes, probe (l2|posterior), posterior_mass,
     * mass_temperature, distance_ratio, prune_margin, min_expected_hits,
     * spill
     * (none|posterior|closure|soar), tau, temperature, max_assign,
     * closure_ratio, soar_lambda, primary (l2|posterior), train_device
     * (auto|cpu|gpu). Throws naming the unknown key or bad value; nothing
     * is changed then.
     */
    void set_parameters(const std::string& description);

   protected:
    /// Throws (naming `where`) unless the index is L2 and fully built.
    void check_usable(const char* where) const;
    /// Throws unless every other_lists[l] matches its list's size.
    void check_lists_in_sync(const char* where) const;
    /// Copy the model and load its means into the quantizer.
    void install_model(const GaussianMixture& model);
    /// Widen the spill records to `width` (or set it when empty).
    void set_other_lists_width(int width);
    /// Append n vectors to the lists given by lists[i * m ...] (-1 padded).
    void add_assigned(
        idx_t n,
        const float* x,
        const idx_t* xids,
        idx_t first_sequential_id,
        const idx_t* lists,
        int m);
    /// Drop the reconstruct() cache after the lists change.
    void invalidate_id_locations();
    /// Every search parameter of one call (nprobe capped at nlist):
    /// from params_in when given, else the index's defaults. Validates them.
    void resolve_search_parameters(
        const faiss::SearchParameters* params_in,
        SearchParametersIVFGMM* resolved) const;
};

} // namespace faiss_gmm
