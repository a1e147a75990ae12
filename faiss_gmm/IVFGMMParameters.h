/**
 * The parameters of an IVF-GMM index, in two types, FAISS style:
 *
 *  - IVFGMMBuildParameters: how the index is built (EM training in
 *    GmmParameters, the spill rule of add() in SpillParameters, the device
 *    that trains);
 *  - SearchParametersIVFGMM: how one search runs (FAISS's
 *    SearchParametersIVF plus IVFGMMSearchOptions, the probe order,
 *    adaptive probing and list pruning). An index keeps its defaults as
 *    IndexIVF::nprobe / max_codes plus an IVFGMMSearchOptions.
 *
 * Each type has a check() that names the first bad value. Both are also
 * described by ONE key table (ivfgmm_parameter_keys): the "key=value,..."
 * parameter strings, index_factory's GMM options, index I/O and the
 * command-line tools all read and write parameters through it, so a value
 * accepted by one is accepted by all.
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <faiss/IndexIVF.h>

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
    Rair = 4,      ///< RAIR (RAIRS, SIGMOD'26): secondary list minimising
                   ///< ||r'||^2 + lambda <r, r'>
};
/// "none" / "posterior" / "closure" / "soar" / "rair".
const char* spill_rule_name(SpillRule rule);
/// Inverse of spill_rule_name; throws naming the string when unknown.
SpillRule spill_rule_from_name(const std::string& name);

/// Where train() runs EM.
enum class TrainDevice : int {
    /// the GPU when one is usable and built in, else the CPU; full
    /// covariance stays on the CPU for now (auto_device_may_train_on_gpu),
    /// unless Gpu is asked for
    Auto = 0,
    Cpu = 1, ///< GaussianMixture::train
    Gpu = 2, ///< gpu::train_gmm_gpu; throws when no GPU is usable
};
/// "auto" / "cpu" / "gpu".
const char* train_device_name(TrainDevice device);

/// Whether an automatic device choice (train_device=auto, Python
/// device='auto') may train a model of this covariance on a GPU: not full
/// covariance yet. Its GPU E-step passes its tests on an H100 (and is 1.5 s
/// an iteration at 1M x 128, K = 1024, tf32: kernels/README.md, "Full
/// covariance"), but making it the automatic choice moves tests that are
/// not labelled gpu onto the GPU on a GPU machine, and that has not run.
/// The one place that rule lives.
inline bool auto_device_may_train_on_gpu(CovarianceType covariance) {
    return covariance != CovarianceType::Full;
}
/// Inverse of train_device_name; throws naming the string when unknown.
TrainDevice train_device_from_name(const std::string& name);

/// Largest SpillParameters::max_assign (lists per vector).
constexpr int kMaxAssign = 1024;
/// Largest nprobe a parameter may hold (search caps it at nlist).
constexpr size_t kMaxNprobe = size_t(1) << 30;

/**
 * How add() spreads a vector over lists.
 *
 * Defaults measured on sift-debian-a (300k real SIFT, nlist 1024, probe by
 * L2, 20 EM iterations): T = 4, tau = 0.02, at most 2 lists gives the
 * lowest cost at recall@10 0.90-0.99 among the posterior settings and beats
 * the closure and SOAR rules on k-means lists at matched replication
 * (docs/measurements.md has the table and the command).
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
    /// at most this many lists per vector, primary included, in
    /// [1, kMaxAssign]
    int max_assign = 2;
    /// Closure rule: distance ratio (>= 1) to the nearest mean
    float closure_ratio = 1.3f;
    /// Soar rule: weight lambda (>= 0) of the parallel residual component
    float soar_lambda = 1.0f;
    /// Rair rule: weight lambda (>= 0) of the residuals' inner product
    /// <r, r'> (r = x - mu_primary, r' = x - mu_j); the paper uses 0.5-0.75
    float rair_lambda = 0.5f;
    /// Posterior and None rules: the primary list is the nearest mean by L2
    /// (true, the default) or the argmax of the posterior (false). Closure,
    /// Soar and Rair always use the nearest mean. With the nearest mean, a
    /// vector is in the first list its own query probes (probe order L2),
    /// whatever the model: with the argmax, a model whose means coincide
    /// (training rows all equal) stored every vector where nprobe = 1 never
    /// looks. The argmax measured 0.3-0.6% fewer distances at recall@10
    /// 0.90-0.99 on sift-debian-a (docs/measurements.md).
    bool primary_is_nearest_mean = true;

    /// Throws naming the first out-of-range field (prefixed by `who`).
    void check(const char* who = "SpillParameters") const;
};

/** Everything that decides how an IVF-GMM index is built. */
struct IVFGMMBuildParameters {
    /// EM training of the mixture (covariance, iterations, floor, init)
    GmmParameters gmm;
    /// how add() spreads vectors over lists
    SpillParameters spill;
    /// where train() runs EM
    TrainDevice train_device = TrainDevice::Auto;

    /// Throws naming the first out-of-range field (prefixed by `who`).
    void check(const char* who = "IVFGMMBuildParameters") const;
};

/**
 * The GMM-specific search knobs. IndexIVFGMM holds one as its defaults;
 * SearchParametersIVFGMM carries one per call.
 */
struct IVFGMMSearchOptions {
    /// order in which lists are probed
    ProbeOrder probe_order = ProbeOrder::L2;
    /// adaptive probing: stop once the probed lists hold this fraction of the
    /// query's posterior mass (at mass_temperature; 0 = off; nprobe stays
    /// the cap), in [0, 1]
    float posterior_mass = 0;
    /// temperature T (> 0) of the posterior used by posterior_mass:
    /// p_T(j | q) proportional to exp(log-joint_j / T). T = 1 is the model's
    /// posterior, far too peaked on SIFT; larger T spreads the mass over more
    /// lists.
    float mass_temperature = 1;
    /// adaptive probing by distance ratio (probe order L2 only): probe list
    /// j only when ||q - mu_j||^2 <= distance_ratio * ||q - mu_1||^2, mu_1
    /// the nearest mean; nprobe stays the cap. 0 = off, else >= 1.
    float distance_ratio = 0;
    /// bisector pruning (applied in probe order L2 when the squared L2
    /// distances to the means are at hand, as in search(); not in posterior
    /// order): skip list j when the distance
    /// from q to the bisector hyperplane of mu_1 and mu_j,
    /// (||q - mu_j||^2 - ||q - mu_1||^2) / (2 ||mu_j - mu_1||), exceeds
    /// prune_margin times the current k-th neighbour distance. Vectors whose
    /// nearest mean is mu_j lie beyond that hyperplane, so prune_margin = 1
    /// loses none of them; smaller margins prune more. Each ||mu_j - mu_1||
    /// the test needs (when the free bound (||q - mu_j|| - ||q - mu_1||) / 2
    /// does not decide) is counted as one coarse distance. 0 = off, else > 0.
    ///
    /// Default 0.4, measured (faiss_gmm_eval --dataset sift-debian-a
    /// --query-rows 5000 --nlist 1024 --prune-sweep 0,0.3,0.4,0.5,0.7,1):
    /// unique distance computations to reach R@10 0.90 / 0.95 / 0.99, k-means
    /// IVF 6343 / 9906 / 20312, the default GMM unpruned 5121 / 7868 / 15482,
    /// pruned at 0.3 4833 / 7017 / 13536 (but R@10 stops at 0.995), at 0.4
    /// 4963 / 7401 / 13617 (R@10 0.9996 at nprobe 128), at 0.5 5043 / 7617 /
    /// 14424. The k-means lists pruned at 0.4 need 5693 / 8404 / 16404: the
    /// GMM keeps 1.15x / 1.14x / 1.20x of its own.
    float prune_margin = 0.4f;
    /// model-based pruning (applied as prune_margin is): skip list j when the
    /// expected number of its vectors closer to q than the current k-th
    /// neighbour is below min_expected_hits, the list's vectors modelled as
    /// N(mu_j, sigma_j^2 I) (sigma_j^2: the component's variance, mean over
    /// dimensions for a diagonal model): n_j * Phi((r_k^2 - m) / s) with
    /// m = ||q - mu_j||^2 + d sigma_j^2 and s^2 = 4 sigma_j^2 ||q - mu_j||^2
    /// + 2 d sigma_j^4, the mean and variance of ||q - x||^2. Costs no
    /// distance. 0 = off, else > 0.
    ///
    /// Off by default: on top of prune_margin 0.4 it caps recall (measured,
    /// faiss_gmm_eval --dataset sift-debian-a --query-rows 5000 --nlist 1024
    /// --prune-sweep 0.4 --search-params min_expected_hits=X: at X = 0.01
    /// R@10 stops at 0.967 (GMM) / 0.897 (k-means lists), at X = 0.1 at
    /// 0.905 / 0.797; the margin alone reaches 0.9996).
    float min_expected_hits = 0;

    /// Throws naming the first out-of-range value (prefixed by `who`).
    void check(const char* who = "IVFGMMSearchOptions") const;
};

/**
 * Per-call search parameters: FAISS's (nprobe, max_codes, sel) plus the
 * GMM options. max_codes counts unique vectors compared (a vector found in
 * several probed lists counts once): probing stops after the list in which
 * that count reaches max_codes. The other SearchParametersIVF fields
 * (quantizer_params; max_lists_num, ensure_topk_full,
 * max_empty_result_buckets in FAISS >= 1.15) are rejected with an error.
 */
struct SearchParametersIVFGMM : faiss::SearchParametersIVF,
                                IVFGMMSearchOptions {
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

    SearchParametersIVFGMM() = default;
    /// nprobe and max_codes given, options copied
    SearchParametersIVFGMM(
        size_t nprobe, size_t max_codes, const IVFGMMSearchOptions& options);

    /// The GMM options part.
    const IVFGMMSearchOptions& options() const {
        return *this;
    }

    /// Throws naming the first out-of-range value (prefixed by `who`):
    /// nprobe in [1, kMaxNprobe], the options, the unsupported FAISS fields.
    void check(const char* who = "SearchParametersIVFGMM") const;
};

/// Which phase a parameter key belongs to.
enum class ParameterPhase : int {
    Build = 0,  ///< IVFGMMBuildParameters
    Search = 1, ///< SearchParametersIVFGMM
};

/** One entry of the key table. */
struct ParameterKey {
    /// key in "key=value" strings, e.g. "tau"
    const char* name;
    /// which parameter type holds it
    ParameterPhase phase;
    /// name of the index_factory option that sets it ("T" for temperature),
    /// or nullptr when the factory has none
    const char* factory_option;
    /// what the value means and its range, for --help texts
    const char* help;
};

/// Every key, build keys first, in the order help texts list them.
const std::vector<ParameterKey>& ivfgmm_parameter_keys();

/// The entry of `name` in the key table, or nullptr.
const ParameterKey* find_parameter_key(const std::string& name);

/// The entry whose factory_option is `option`, or nullptr.
const ParameterKey* find_factory_option(const std::string& option);

/**
 * Set one build key from its text value. Throws naming the key and value
 * when the key is unknown, is a search key, or the value is malformed or
 * out of range (params unchanged then).
 */
void set_build_parameter(
    IVFGMMBuildParameters* params,
    const std::string& key,
    const std::string& value);

/// Set one search key from its text value (see set_build_parameter).
void set_search_parameter(
    SearchParametersIVFGMM* params,
    const std::string& key,
    const std::string& value);

/**
 * Parse "key=value,key=value" (spaces around keys and values ignored) into
 * *params, then check() them. Throws naming the bad token; *params is
 * unchanged then. An empty string changes nothing.
 *
 * @param description the parameter string
 * @param params      build parameters to update
 * @param who         prefix of error messages, e.g. "IndexIVFGMM"
 */
void parse_build_parameters(
    const std::string& description,
    IVFGMMBuildParameters* params,
    const char* who = "parse_build_parameters");

/// Parse search keys "nprobe=32,probe=l2" into *params (see
/// parse_build_parameters).
void parse_search_parameters(
    const std::string& description,
    SearchParametersIVFGMM* params,
    const char* who = "parse_search_parameters");

/// Every build key as "key=value,..." (parse_build_parameters inverts it
/// exactly: floats are printed with all their digits).
std::string format_build_parameters(const IVFGMMBuildParameters& params);

/// Every search key as "key=value,..." (nprobe, max_codes and the options;
/// sel and precomputed_distances are not parameters of the string form).
std::string format_search_parameters(const SearchParametersIVFGMM& params);

/// One line per key of `phase`: "  name  help" (for --help texts).
std::string parameter_help(ParameterPhase phase);

} // namespace faiss_gmm
