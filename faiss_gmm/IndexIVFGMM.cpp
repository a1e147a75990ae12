#include <faiss_gmm/IndexIVFGMM.h>

#include <omp.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>

#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/DirectMap.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/impl/GmmScoring.h>
#include <faiss_gmm/impl/SpillRules.h>

#ifdef FAISS_GMM_WITH_GPU
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#endif

namespace faiss_gmm {

IndexIVFGMMStats indexIVFGMM_stats;

void IndexIVFGMMStats::reset() {
    *this = IndexIVFGMMStats();
}

void IndexIVFGMMStats::add(const IndexIVFGMMStats& other) {
    nq += other.nq;
    ncoarse_distances += other.ncoarse_distances;
    nfine_distances += other.nfine_distances;
    nentries_scanned += other.nentries_scanned;
    nduplicates_skipped += other.nduplicates_skipped;
    nlists_probed += other.nlists_probed;
    nbound_distances += other.nbound_distances;
    nlists_pruned += other.nlists_pruned;
}

const char* probe_order_name(ProbeOrder order) {
    switch (order) {
    case ProbeOrder::L2:
        return "l2";
    case ProbeOrder::Posterior:
        return "posterior";
    }
    FAISS_THROW_FMT("unknown ProbeOrder %d", int(order));
}

ProbeOrder probe_order_from_name(const std::string& name) {
    if (name == "l2") {
        return ProbeOrder::L2;
    }
    if (name == "posterior") {
        return ProbeOrder::Posterior;
    }
    FAISS_THROW_FMT(
        "unknown probe order '%s' (expected l2 or posterior)", name.c_str());
}

const char* spill_rule_name(SpillRule rule) {
    switch (rule) {
    case SpillRule::None:
        return "none";
    case SpillRule::Posterior:
        return "posterior";
    case SpillRule::Closure:
        return "closure";
    case SpillRule::Soar:
        return "soar";
    }
    FAISS_THROW_FMT("unknown SpillRule %d", int(rule));
}

SpillRule spill_rule_from_name(const std::string& name) {
    if (name == "none") {
        return SpillRule::None;
    }
    if (name == "posterior") {
        return SpillRule::Posterior;
    }
    if (name == "closure") {
        return SpillRule::Closure;
    }
    if (name == "soar") {
        return SpillRule::Soar;
    }
    FAISS_THROW_FMT(
        "unknown spill rule '%s' (expected none, posterior, closure or "
        "soar)",
        name.c_str());
}

const char* train_device_name(TrainDevice device) {
    switch (device) {
    case TrainDevice::Auto:
        return "auto";
    case TrainDevice::Cpu:
        return "cpu";
    case TrainDevice::Gpu:
        return "gpu";
    }
    FAISS_THROW_FMT("unknown TrainDevice %d", int(device));
}

TrainDevice train_device_from_name(const std::string& name) {
    if (name == "auto") {
        return TrainDevice::Auto;
    }
    if (name == "cpu") {
        return TrainDevice::Cpu;
    }
    if (name == "gpu") {
        return TrainDevice::Gpu;
    }
    FAISS_THROW_FMT(
        "unknown train device '%s' (expected auto, cpu or gpu)", name.c_str());
}

namespace {

using IdLocationMap = std::unordered_map<idx_t, uint64_t>;
using HeapForL2 = faiss::CMax<float, idx_t>;

/// Rank of a list that the current query has not probed (yet).
constexpr int32_t kNotProbed = std::numeric_limits<int32_t>::max();

/// Vectors per block in add(): bounds the temporary memory of assignment.
constexpr idx_t kAddBlockSize = 65536;

/// Throws naming the first non-finite value of x (n vectors of dimension d).
constexpr auto check_finite = impl::check_finite_vectors;

/// The owned quantizer; validates d and nlist before anything is allocated.
faiss::Index* make_quantizer(int d, size_t nlist) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "IndexIVFGMM: d=%d must be >= 1", d);
    FAISS_THROW_IF_NOT_FMT(
        nlist >= 1 && nlist <= size_t(std::numeric_limits<int32_t>::max()),
        "IndexIVFGMM: nlist=%zu must be in [1, 2^31)",
        nlist);
    return new faiss::IndexFlatL2(d);
}

void validate_spill(const SpillParameters& spill) {
    FAISS_THROW_IF_NOT_FMT(
        spill.max_assign >= 1,
        "IndexIVFGMM: spill max_assign=%d must be >= 1",
        spill.max_assign);
    FAISS_THROW_IF_NOT_FMT(
        spill.tau >= 0 && spill.tau <= 1,
        "IndexIVFGMM: spill tau=%g must be in [0, 1]",
        spill.tau);
    FAISS_THROW_IF_NOT_FMT(
        spill.temperature > 0 && std::isfinite(spill.temperature),
        "IndexIVFGMM: spill temperature=%g must be > 0",
        spill.temperature);
    FAISS_THROW_IF_NOT_FMT(
        spill.closure_ratio >= 1 && std::isfinite(spill.closure_ratio),
        "IndexIVFGMM: spill closure_ratio=%g must be >= 1",
        spill.closure_ratio);
    FAISS_THROW_IF_NOT_FMT(
        spill.soar_lambda >= 0 && std::isfinite(spill.soar_lambda),
        "IndexIVFGMM: spill soar_lambda=%g must be >= 0",
        spill.soar_lambda);
}

/// The entry of a vector in list l is its canonical copy when l is the
/// smallest of its lists: exactly one copy per vector has that property.
bool is_canonical_copy(size_t list_no, const int32_t* record, int width) {
    for (int t = 0; t < width && record[t] >= 0; t++) {
        if (size_t(record[t]) < list_no) {
            return false;
        }
    }
    return true;
}

/// An entry is a duplicate for this query when one of its other lists was
/// probed before the list it is read from (probe rank `rank_here`).
bool probed_earlier(
    const int32_t* record,
    int width,
    const int32_t* probe_rank,
    int32_t rank_here) {
    for (int t = 0; t < width && record[t] >= 0; t++) {
        if (probe_rank[record[t]] < rank_here) {
            return true;
        }
    }
    return false;
}

/**
 * Bisector pruning of one list (see SearchParametersIVFGMM::prune_margin):
 * q is at least (d_l - d_1) / (2 ||mu_l - mu_1||) from every point whose
 * nearest mean is mu_l (d_j: squared distance from q to mu_j).
 */
struct BisectorPruner {
    float margin; ///< 0 = off
    int d;
    const float* means;

    bool active() const {
        return margin > 0;
    }

    /// true when list l can be skipped given the current k-th neighbour
    /// squared distance kth_dis; counts a mean-to-mean distance in *nbound
    /// when the free triangle bound does not decide.
    bool
    prunes(idx_t l1, float d1, idx_t l, float dl, float kth_dis, size_t* nbound)
        const {
        if (!(kth_dis < std::numeric_limits<float>::infinity())) {
            return false; // fewer than k results so far
        }
        const float limit = margin * std::sqrt(kth_dis);
        const float s1 = std::sqrt(std::max(d1, 0.0f));
        const float sl = std::sqrt(std::max(dl, 0.0f));
        // ||mu_l - mu_1|| <= sl + s1, so the gap is >= (sl - s1) / 2
        if ((sl - s1) * 0.5f > limit) {
            return true;
        }
        const float mean_dis = faiss::fvec_L2sqr(
            means + int64_t(l) * d, means + int64_t(l1) * d, size_t(d));
        (*nbound)++;
        return dl - d1 > 2 * limit * std::sqrt(mean_dis);
    }
};

/**
 * Model-based pruning of one list (see
 * SearchParametersIVFGMM::min_expected_hits): the expected number of the
 * list's vectors, modelled as N(mu_l, sigma_l^2 I), closer to q than the
 * current k-th neighbour, from the normal approximation of ||q - x||^2.
 */
struct HitModelPruner {
    float min_hits; ///< 0 = off
    int d;
    std::vector<float> variance; ///< per list: mean per-dimension variance
    const faiss::InvertedLists* invlists;

    HitModelPruner(
        float min_hits,
        const GaussianMixture& gmm,
        const faiss::InvertedLists* invlists)
        : min_hits(min_hits), d(gmm.d), invlists(invlists) {
        if (min_hits == 0) {
            return;
        }
        const int vpc = gmm.variances_per_component();
        variance.resize(gmm.k);
        for (int j = 0; j < gmm.k; j++) {
            double sum = 0;
            for (int c = 0; c < vpc; c++) {
                sum += gmm.variances[size_t(j) * vpc + c];
            }
            variance[j] = float(sum / vpc);
        }
    }

    bool active() const {
        return min_hits > 0;
    }

    /// true when list l (squared distance dl to its mean) is expected to
    /// hold fewer than min_hits vectors within kth_dis (squared)
    bool prunes(idx_t l, float dl, float kth_dis) const {
        if (!(kth_dis < std::numeric_limits<float>::infinity())) {
            return false; // fewer than k results so far
        }
        const double s2 = variance[l];
        const double mean = double(dl) + d * s2;
        const double sd = std::sqrt(4 * s2 * dl + 2 * d * s2 * s2);
        const double z = (double(kth_dis) - mean) / std::max(sd, 1e-30);
        const double expected = double(invlists->list_size(l)) * 0.5 *
                                std::erfc(-z / std::sqrt(2.0));
        return expected < min_hits;
    }
};

/// Parsed value of one set_parameters token; throws naming the token.
double parse_number(const std::string& token, const std::string& value) {
    const char* begin = value.c_str();
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    FAISS_THROW_IF_NOT_FMT(
        end != begin && *end == '\0' && std::isfinite(v),
        "IndexIVFGMM::set_parameters: '%s' is not a number in '%s'",
        value.c_str(),
        token.c_str());
    return v;
}

int64_t parse_integer(const std::string& token, const std::string& value) {
    const char* begin = value.c_str();
    char* end = nullptr;
    const long long v = std::strtoll(begin, &end, 10);
    FAISS_THROW_IF_NOT_FMT(
        end != begin && *end == '\0',
        "IndexIVFGMM::set_parameters: '%s' is not an integer in '%s'",
        value.c_str(),
        token.c_str());
    return v;
}

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) {
        return "";
    }
    const size_t e = s.find_last_not_of(" \t");
    return s.substr(b, e - b + 1);
}

/// Throws (naming `where`, the list and the id) unless every stored id is in
/// [0, ntotal): the rows of SearchParametersIVFGMM::precomputed_distances
/// are indexed by id.
void check_sequential_ids(
    const faiss::InvertedLists& invlists, idx_t ntotal, const char* where) {
    for (size_t l = 0; l < invlists.nlist; l++) {
        const size_t size = invlists.list_size(l);
        if (size == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds ids(&invlists, l);
        for (size_t j = 0; j < size; j++) {
            FAISS_THROW_IF_NOT_FMT(
                ids[j] >= 0 && ids[j] < ntotal,
                "%s: list %zu holds id %" PRId64 ", outside [0, ntotal=%" PRId64
                "): the distance rows need sequential ids",
                where,
                l,
                int64_t(ids[j]),
                int64_t(ntotal));
        }
    }
}

/// Per-query counters of scan_probed_lists, summed by the callers.
struct ScanCounts {
    size_t lists = 0;      ///< non-empty lists visited
    size_t distances = 0;  ///< unique vectors compared
    size_t scanned = 0;    ///< list entries visited, duplicates included
    size_t duplicates = 0; ///< entries skipped as already compared
    size_t bound = 0;      ///< mean-to-mean distances of the bisector bound
    size_t pruned = 0;     ///< lists skipped by a pruning rule
};

/// What the probe loop reads besides the query.
struct ScanContext {
    const faiss::InvertedLists* invlists;
    const std::vector<std::vector<int32_t>>* other_lists;
    int other_lists_width;
    int d;
    const faiss::IDSelector* sel;
    size_t max_codes;
    const BisectorPruner* pruner;
    const HitModelPruner* hit_pruner;
};

/**
 * The probe loop shared by search and range search. Visits the query's
 * lists in probe order, skips lists a pruning rule rejects and entries whose
 * vector was compared in an earlier-probed list, and hands every other
 * distance, computed once, to consume(dis, list, offset, id). threshold()
 * is the current k-th neighbour distance (search) or the radius (range
 * search). probe_rank (size nlist, all kNotProbed) is restored on return.
 * distance_row, when not null, replaces each distance computation by the
 * lookup distance_row[id] (SearchParametersIVFGMM::precomputed_distances;
 * the caller checked the ids).
 */
template <class Threshold, class Consumer>
void scan_probed_lists(
    const ScanContext& ctx,
    const float* q,
    const float* distance_row,
    const idx_t* keys,
    const float* cdis,
    size_t nprobe,
    std::vector<int32_t>& probe_rank,
    Threshold threshold,
    Consumer consume,
    ScanCounts* counts) {
    const int w = ctx.other_lists_width;
    const int d = ctx.d;
    size_t scanned_here = 0;
    for (size_t r = 0; r < nprobe; r++) {
        const idx_t l = keys[r];
        if (l < 0 || probe_rank[l] != kNotProbed) {
            continue;
        }
        if (r > 0 && ((ctx.hit_pruner->active() &&
                       ctx.hit_pruner->prunes(l, cdis[r], threshold())) ||
                      (ctx.pruner->active() && ctx.pruner->prunes(
                                                   keys[0],
                                                   cdis[0],
                                                   l,
                                                   cdis[r],
                                                   threshold(),
                                                   &counts->bound)))) {
            counts->pruned++;
            continue;
        }
        probe_rank[l] = int32_t(r);
        const size_t list_size = ctx.invlists->list_size(l);
        if (list_size == 0) {
            continue;
        }
        counts->lists++;
        faiss::InvertedLists::ScopedCodes scodes(ctx.invlists, l);
        faiss::InvertedLists::ScopedIds sids(ctx.invlists, l);
        const float* codes = reinterpret_cast<const float*>(scodes.get());
        const idx_t* ids = sids.get();
        const int32_t* records = (*ctx.other_lists)[l].data();
        for (size_t j = 0; j < list_size; j++) {
            if (w > 0 &&
                probed_earlier(
                    records + j * w, w, probe_rank.data(), int32_t(r))) {
                counts->duplicates++;
                continue;
            }
            if (ctx.sel && !ctx.sel->is_member(ids[j])) {
                continue;
            }
            const float dis = distance_row
                                  ? distance_row[ids[j]]
                                  : faiss::fvec_L2sqr(q, codes + j * d, d);
            counts->distances++;
            consume(dis, l, j, ids[j]);
        }
        counts->scanned += list_size;
        scanned_here += list_size;
        if (ctx.max_codes && scanned_here >= ctx.max_codes) {
            break;
        }
    }
    for (size_t r = 0; r < nprobe; r++) {
        if (keys[r] >= 0) {
            probe_rank[keys[r]] = kNotProbed;
        }
    }
}

} // namespace

void check_search_parameters(const SearchParametersIVFGMM& p, const char* who) {
    FAISS_THROW_IF_NOT_FMT(
        p.posterior_mass >= 0 && p.posterior_mass <= 1,
        "%s: posterior_mass=%g must be in [0, 1]",
        who,
        p.posterior_mass);
    FAISS_THROW_IF_NOT_FMT(
        p.mass_temperature > 0 && std::isfinite(p.mass_temperature),
        "%s: mass_temperature=%g must be > 0",
        who,
        p.mass_temperature);
    FAISS_THROW_IF_NOT_FMT(
        p.distance_ratio == 0 ||
            (p.distance_ratio >= 1 && !std::isnan(p.distance_ratio)),
        "%s: distance_ratio=%g must be 0 (off) or >= 1",
        who,
        p.distance_ratio);
    FAISS_THROW_IF_NOT_FMT(
        p.prune_margin >= 0 && !std::isnan(p.prune_margin),
        "%s: prune_margin=%g must be >= 0 (0 = off)",
        who,
        p.prune_margin);
    FAISS_THROW_IF_NOT_FMT(
        p.min_expected_hits >= 0 && !std::isnan(p.min_expected_hits),
        "%s: min_expected_hits=%g must be >= 0 (0 = off)",
        who,
        p.min_expected_hits);
    FAISS_THROW_IF_NOT_FMT(
        p.probe_order == ProbeOrder::L2 ||
            (p.distance_ratio == 0 && p.prune_margin == 0 &&
             p.min_expected_hits == 0),
        "%s: distance_ratio=%g, prune_margin=%g and "
        "min_expected_hits=%g need probe order l2, not %s",
        who,
        p.distance_ratio,
        p.prune_margin,
        p.min_expected_hits,
        probe_order_name(p.probe_order));
}

/*************************************************************
 * construction, training
 *************************************************************/

IndexIVFGMM::IndexIVFGMM(
    int d,
    size_t nlist,
    const GmmParameters& gmm_params,
    const SpillParameters& spill)
    : faiss::IndexIVFFlat(make_quantizer(d, nlist), d, nlist, faiss::METRIC_L2),
      gmm(d, int(nlist), gmm_params.covariance),
      gmm_params(gmm_params),
      spill(spill),
      other_lists(nlist),
      other_lists_width(std::max(spill.max_assign - 1, 0)) {
    own_fields = true;
    validate_spill(spill);
}

IndexIVFGMM::IndexIVFGMM() = default;

IndexIVFGMM::~IndexIVFGMM() = default;

void IndexIVFGMM::check_usable(const char* where) const {
    FAISS_THROW_IF_NOT_FMT(
        metric_type == faiss::METRIC_L2,
        "%s: metric_type=%d is not supported (L2 only)",
        where,
        int(metric_type));
    FAISS_THROW_IF_NOT_FMT(
        quantizer && invlists,
        "%s: index has no quantizer or inverted lists",
        where);
    FAISS_THROW_IF_NOT_FMT(
        other_lists.size() == nlist,
        "%s: other_lists has %zu lists, nlist=%zu",
        where,
        other_lists.size(),
        nlist);
}

void IndexIVFGMM::train(idx_t n, const float* x) {
    check_usable("IndexIVFGMM::train");
    FAISS_THROW_IF_NOT_FMT(
        n >= idx_t(nlist),
        "IndexIVFGMM::train: n=%" PRId64
        " training vectors, need at least nlist=%zu",
        int64_t(n),
        nlist);
    FAISS_THROW_IF_NOT_FMT(
        nentries == 0,
        "IndexIVFGMM::train: the index holds %zu entries; reset() it "
        "before training again",
        nentries);
    check_finite(n, d, x, "IndexIVFGMM::train");

#ifdef FAISS_GMM_WITH_GPU
    const bool gpu_usable = gpu::gpu_is_available(0);
    const char* no_gpu_reason = "no usable CUDA device";
#else
    const bool gpu_usable = false;
    const char* no_gpu_reason = "faiss_gmm was built without GPU support";
#endif
    FAISS_THROW_IF_NOT_FMT(
        train_device != TrainDevice::Gpu || gpu_usable,
        "IndexIVFGMM::train: train_device=gpu but %s",
        no_gpu_reason);
    const bool on_gpu = train_device != TrainDevice::Cpu && gpu_usable;

    GmmParameters params = gmm_params;
    params.verbose = params.verbose || verbose;
    if (verbose) {
        printf(
            "IndexIVFGMM::train: fitting a %s GMM, %zu components, on "
            "%" PRId64 " vectors in %dD (%s)\n",
            covariance_type_name(params.covariance),
            nlist,
            int64_t(n),
            d,
            on_gpu ? "GPU" : "CPU");
    }
    const double t0 = faiss::getmillisecs();
    GaussianMixture model(d, int(nlist), params.covariance);
    if (on_gpu) {
#ifdef FAISS_GMM_WITH_GPU
        gpu::train_gmm_gpu(&model, n, x, params);
#endif
    } else {
        model.train(n, x, params);
    }
    install_model(model);
    if (verbose) {
        printf(
            "IndexIVFGMM::train: done in %.2f s (%zu EM iterations)\n",
            (faiss::getmillisecs() - t0) / 1000,
            model.iteration_stats.size());
    }
}

void IndexIVFGMM::set_gmm(const GaussianMixture& model) {
    check_usable("IndexIVFGMM::set_gmm");
    FAISS_THROW_IF_NOT_FMT(
        model.d == d,
        "IndexIVFGMM::set_gmm: model d=%d, index d=%d",
        model.d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        model.k == int(nlist),
        "IndexIVFGMM::set_gmm: model k=%d, index nlist=%zu",
        model.k,
        nlist);
    FAISS_THROW_IF_NOT_MSG(
        model.is_trained, "IndexIVFGMM::set_gmm: model is not trained");
    FAISS_THROW_IF_NOT_FMT(
        nentries == 0,
        "IndexIVFGMM::set_gmm: the index holds %zu entries; reset() "
        "it first",
        nentries);
    model.check_consistency();
    install_model(model);
}

void IndexIVFGMM::install_model(const GaussianMixture& model) {
    gmm = model;
    quantizer->reset();
    quantizer->add(idx_t(nlist), gmm.means.data());
    is_trained = true;
}

/*************************************************************
 * adding
 *************************************************************/

void IndexIVFGMM::assign_lists(idx_t n, const float* x, idx_t* lists) const {
    check_usable("IndexIVFGMM::assign_lists");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::assign_lists: index is not trained");
    validate_spill(spill);
    const int m = spill.max_assign;
    std::fill(lists, lists + int64_t(n) * m, idx_t(-1));
    if (n == 0) {
        return;
    }
    const bool by_l2 = spill.rule == SpillRule::Closure ||
                       spill.rule == SpillRule::Soar ||
                       spill.primary_is_nearest_mean;
    // Soar looks for its secondary among the nearest means only.
    const int ncand = spill.rule == SpillRule::Soar
                          ? int(std::min<size_t>(nlist, std::max(16, 4 * m)))
                      : spill.rule == SpillRule::Closure
                          ? int(std::min<size_t>(nlist, m))
                          : 1;
    const int mpost = int(std::min<size_t>(nlist, m));
    const idx_t bs = std::min(n, kAddBlockSize);
    std::vector<float> l2_dis(by_l2 ? bs * ncand : 0);
    std::vector<idx_t> l2_idx(by_l2 ? bs * ncand : 0);
    const bool need_posteriors =
        spill.rule == SpillRule::Posterior ||
        (spill.rule == SpillRule::None && !spill.primary_is_nearest_mean);
    std::vector<float> post(need_posteriors ? bs * mpost : 0);
    std::vector<idx_t> comp(need_posteriors ? bs * mpost : 0);

    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        idx_t* lb = lists + int64_t(i0) * m;
        if (by_l2) {
            quantizer->search(nb, xb, ncand, l2_dis.data(), l2_idx.data());
        }
        if (need_posteriors) {
            const int mp = spill.rule == SpillRule::None ? 1 : mpost;
            gmm.top_posteriors(
                nb,
                xb,
                mp,
                post.data(),
                comp.data(),
                spill.rule == SpillRule::None ? 1.0f : spill.temperature);
            if (spill.rule == SpillRule::None) {
                for (idx_t i = 0; i < nb; i++) {
                    lb[i * m] = comp[i];
                }
                continue;
            }
        }
        switch (spill.rule) {
        case SpillRule::None:
            for (idx_t i = 0; i < nb; i++) {
                lb[i * m] = l2_idx[i * ncand];
            }
            break;
        case SpillRule::Posterior:
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                const float* pi = post.data() + i * mpost;
                impl::posterior_spill_row(
                    spill,
                    m,
                    mpost,
                    comp.data() + i * mpost,
                    [pi](int t) { return pi[t]; },
                    [&l2_idx, i, ncand]() { return l2_idx[i * ncand]; },
                    lb + i * m);
            }
            break;
        case SpillRule::Closure:
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                impl::closure_spill_row(
                    spill.closure_ratio,
                    ncand,
                    l2_dis.data() + i * ncand,
                    l2_idx.data() + i * ncand,
                    lb + i * m);
            }
            break;
        case SpillRule::Soar: {
            const float* means = gmm.means.data();
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                const float* xi = xb + int64_t(i) * d;
                const float* di = l2_dis.data() + i * ncand;
                const idx_t* ii = l2_idx.data() + i * ncand;
                idx_t* li = lb + i * m;
                li[0] = ii[0];
                if (m < 2) {
                    continue;
                }
                // loss(j) = ||r_j||^2 + lambda (<r, r_j> / ||r||)^2,
                // r = x - mu_primary, r_j = x - mu_j
                const float* mu1 = means + int64_t(ii[0]) * d;
                float best_loss = std::numeric_limits<float>::infinity();
                idx_t best = -1;
                for (int t = 1; t < ncand; t++) {
                    if (ii[t] < 0) {
                        break;
                    }
                    const float* muj = means + int64_t(ii[t]) * d;
                    float dot = 0;
                    for (int c = 0; c < d; c++) {
                        dot += (xi[c] - mu1[c]) * (xi[c] - muj[c]);
                    }
                    const float parallel = di[0] > 0 ? dot * dot / di[0] : 0.0f;
                    const float loss = di[t] + spill.soar_lambda * parallel;
                    if (loss < best_loss) {
                        best_loss = loss;
                        best = ii[t];
                    }
                }
                li[1] = best;
            }
            break;
        }
        }
    }
}

void IndexIVFGMM::set_other_lists_width(int width) {
    if (nentries == 0) {
        other_lists.assign(nlist, {});
        other_lists_width = width;
        return;
    }
    if (width <= other_lists_width) {
        return;
    }
    const int old_width = other_lists_width;
#pragma omp parallel for schedule(dynamic)
    for (size_t l = 0; l < nlist; l++) {
        const size_t n_l = other_lists[l].size() / std::max(old_width, 1);
        std::vector<int32_t> wider(n_l * width, -1);
        for (size_t j = 0; j < n_l && old_width > 0; j++) {
            std::copy_n(
                other_lists[l].data() + j * old_width,
                old_width,
                wider.data() + j * width);
        }
        if (old_width == 0) {
            wider.assign(invlists->list_size(l) * width, -1);
        }
        other_lists[l].swap(wider);
    }
    other_lists_width = width;
}

void IndexIVFGMM::add_assigned(
    idx_t n,
    const float* x,
    const idx_t* xids,
    idx_t first_sequential_id,
    const idx_t* lists,
    int m) {
    const int w = other_lists_width;
    size_t n_entries = 0, n_vectors = 0;
#pragma omp parallel reduction(+ : n_entries, n_vectors)
    {
        const int nt = omp_get_num_threads();
        const int rank = omp_get_thread_num();
        std::vector<int32_t> record(w);
        // each thread owns the lists l with l % nt == rank, so list order
        // follows the input order whatever the thread count
        for (idx_t i = 0; i < n; i++) {
            const idx_t* li = lists + int64_t(i) * m;
            if (rank == 0 && li[0] >= 0) {
                n_vectors++;
            }
            for (int a = 0; a < m; a++) {
                const idx_t l = li[a];
                if (l < 0 || l % nt != rank) {
                    continue;
                }
                const idx_t id = xids ? xids[i] : first_sequential_id + i;
                invlists->add_entry(
                    l,
                    id,
                    reinterpret_cast<const uint8_t*>(x + int64_t(i) * d));
                std::fill(record.begin(), record.end(), -1);
                int c = 0;
                for (int b = 0; b < m; b++) {
                    if (b != a && li[b] >= 0) {
                        record[c++] = int32_t(li[b]);
                    }
                }
                other_lists[l].insert(
                    other_lists[l].end(), record.begin(), record.end());
                n_entries++;
            }
        }
    }
    ntotal += n_vectors;
    nentries += n_entries;
}

void IndexIVFGMM::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    check_usable("IndexIVFGMM::add_with_ids");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::add_with_ids: index is not trained");
    validate_spill(spill);
    check_finite(n, d, x, "IndexIVFGMM::add_with_ids");
    if (n == 0) {
        return;
    }
    const double t0 = faiss::getmillisecs();
    const int m = spill.max_assign;
    set_other_lists_width(m - 1);
    invalidate_id_locations();
    const idx_t first_id = idx_t(ntotal);
    const size_t nentries0 = nentries;
    const idx_t bs = std::min(n, kAddBlockSize);
    std::vector<idx_t> lists(int64_t(bs) * m);
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        assign_lists(nb, xb, lists.data());
        add_assigned(
            nb, xb, xids ? xids + i0 : nullptr, first_id + i0, lists.data(), m);
    }
    if (verbose) {
        printf(
            "IndexIVFGMM::add_with_ids: %" PRId64
            " vectors in %zu entries (spill %s, max_assign %d), "
            "replication now %.3f, %.2f s\n",
            int64_t(n),
            nentries - nentries0,
            spill_rule_name(spill.rule),
            m,
            replication_factor(),
            (faiss::getmillisecs() - t0) / 1000);
    }
}

void IndexIVFGMM::add_core(
    idx_t n,
    const float* x,
    const idx_t* xids,
    const idx_t* coarse_idx FAISS_GMM_ADD_CORE_CONTEXT_PARAM) {
#if FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 8, 0)
    (void)inverted_list_context; // array lists need no context
#endif
    check_usable("IndexIVFGMM::add_core");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::add_core: index is not trained");
    FAISS_THROW_IF_NOT_MSG(coarse_idx, "IndexIVFGMM::add_core: no lists");
    for (idx_t i = 0; i < n; i++) {
        FAISS_THROW_IF_NOT_FMT(
            coarse_idx[i] >= -1 && coarse_idx[i] < idx_t(nlist),
            "IndexIVFGMM::add_core: list %" PRId64 " of vector %" PRId64
            " is not in [-1, nlist=%zu)",
            int64_t(coarse_idx[i]),
            int64_t(i),
            nlist);
    }
    check_finite(n, d, x, "IndexIVFGMM::add_core");
    if (nentries == 0) {
        set_other_lists_width(0);
    }
    invalidate_id_locations();
    add_assigned(n, x, xids, idx_t(ntotal), coarse_idx, 1);
}

/*************************************************************
 * searching
 *************************************************************/

void IndexIVFGMM::coarse_assign(
    idx_t n,
    const float* x,
    size_t nprobe,
    ProbeOrder order,
    float mass,
    idx_t* assign,
    float* coarse_dis) const {
    SearchParametersIVFGMM params;
    params.nprobe = nprobe;
    params.probe_order = order;
    params.posterior_mass = mass;
    coarse_assign(n, x, params, assign, coarse_dis);
}

namespace {

/// Drops (-1, +inf) the lists of each query whose squared distance exceeds
/// ratio times the nearest one's; coarse_dis is sorted per query.
void cut_by_distance_ratio(
    idx_t n, size_t nprobe, float ratio, idx_t* assign, float* coarse_dis) {
    if (ratio == 0) {
        return;
    }
    for (idx_t i = 0; i < n; i++) {
        idx_t* ai = assign + size_t(i) * nprobe;
        float* di = coarse_dis + size_t(i) * nprobe;
        for (size_t r = 1; r < nprobe; r++) {
            if (ai[r] >= 0 && di[r] > ratio * di[0]) {
                ai[r] = -1;
                di[r] = std::numeric_limits<float>::infinity();
            }
        }
    }
}

} // namespace

void IndexIVFGMM::coarse_assign(
    idx_t n,
    const float* x,
    const SearchParametersIVFGMM& params,
    idx_t* assign,
    float* coarse_dis) const {
    const size_t nprobe = params.nprobe;
    FAISS_THROW_IF_NOT_FMT(
        nprobe >= 1 && nprobe <= nlist,
        "IndexIVFGMM: nprobe=%zu must be in [1, nlist=%zu]",
        nprobe,
        nlist);
    check_search_parameters(params, "IndexIVFGMM");
    if (n == 0) {
        return;
    }
    const ProbeOrder order = params.probe_order;
    const float mass = params.posterior_mass;
    const double inv_temperature = 1.0 / double(params.mass_temperature);
    if (order == ProbeOrder::L2 && mass == 0) {
        quantizer->search(n, x, nprobe, coarse_dis, assign);
        cut_by_distance_ratio(
            n, nprobe, params.distance_ratio, assign, coarse_dis);
        return;
    }
    // log-joint of a block of queries against every component
    const idx_t bs =
        std::max<idx_t>(1, std::min<idx_t>(n, (idx_t(1) << 22) / idx_t(nlist)));
    std::vector<float> log_joint(size_t(bs) * nlist);
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        idx_t* ab = assign + int64_t(i0) * nprobe;
        float* db = coarse_dis + int64_t(i0) * nprobe;
        gmm.log_joint(nb, xb, log_joint.data());
        if (order == ProbeOrder::L2) {
            quantizer->search(nb, xb, nprobe, db, ab);
            cut_by_distance_ratio(nb, nprobe, params.distance_ratio, ab, db);
        }
#pragma omp parallel
        {
            std::vector<idx_t> order_buf(
                order == ProbeOrder::Posterior ? nlist : 0);
#pragma omp for
            for (idx_t i = 0; i < nb; i++) {
                const float* row = log_joint.data() + size_t(i) * nlist;
                idx_t* ai = ab + size_t(i) * nprobe;
                float* di = db + size_t(i) * nprobe;
                if (order == ProbeOrder::Posterior) {
                    std::iota(order_buf.begin(), order_buf.end(), idx_t(0));
                    std::partial_sort(
                        order_buf.begin(),
                        order_buf.begin() + nprobe,
                        order_buf.end(),
                        [row](idx_t a, idx_t b) {
                            return row[a] > row[b] ||
                                   (row[a] == row[b] && a < b);
                        });
                    for (size_t r = 0; r < nprobe; r++) {
                        ai[r] = order_buf[r];
                        di[r] = -row[order_buf[r]];
                    }
                }
                if (mass > 0) {
                    const float max_lj = *std::max_element(row, row + nlist);
                    // tempered posterior: softmax of log-joint / T
                    double sum = 0;
                    for (size_t j = 0; j < nlist; j++) {
                        sum += std::exp(
                            (double(row[j]) - max_lj) * inv_temperature);
                    }
                    double cumulated = 0;
                    for (size_t r = 0; r < nprobe; r++) {
                        if (cumulated >= mass) {
                            ai[r] = -1;
                            di[r] = std::numeric_limits<float>::infinity();
                        } else if (ai[r] >= 0) {
                            cumulated += std::exp(
                                             (double(row[ai[r]]) - max_lj) *
                                             inv_temperature) /
                                         sum;
                        }
                    }
                }
            }
        }
    }
}

void IndexIVFGMM::resolve_search_parameters(
    const faiss::SearchParameters* params_in,
    SearchParametersIVFGMM* resolved) const {
    const faiss::SearchParametersIVF* ivf = nullptr;
    const SearchParametersIVFGMM* gmm_p = nullptr;
    if (params_in) {
        ivf = dynamic_cast<const faiss::SearchParametersIVF*>(params_in);
        FAISS_THROW_IF_NOT_MSG(
            ivf,
            "IndexIVFGMM: search parameters must be a "
            "SearchParametersIVF or SearchParametersIVFGMM");
        gmm_p = dynamic_cast<const SearchParametersIVFGMM*>(params_in);
    }
    const size_t nprobe_asked = ivf ? ivf->nprobe : this->nprobe;
    FAISS_THROW_IF_NOT_FMT(
        nprobe_asked >= 1, "IndexIVFGMM: nprobe=%zu", nprobe_asked);
    resolved->nprobe = std::min(nlist, nprobe_asked);
    resolved->max_codes = ivf ? ivf->max_codes : this->max_codes;
    resolved->sel = params_in ? params_in->sel : nullptr;
    resolved->probe_order = gmm_p ? gmm_p->probe_order : probe_order;
    resolved->posterior_mass = gmm_p ? gmm_p->posterior_mass : posterior_mass;
    resolved->mass_temperature =
        gmm_p ? gmm_p->mass_temperature : mass_temperature;
    resolved->distance_ratio = gmm_p ? gmm_p->distance_ratio : distance_ratio;
    resolved->prune_margin = gmm_p ? gmm_p->prune_margin : prune_margin;
    resolved->min_expected_hits =
        gmm_p ? gmm_p->min_expected_hits : min_expected_hits;
    resolved->precomputed_distances =
        gmm_p ? gmm_p->precomputed_distances : nullptr;
    check_search_parameters(*resolved, "IndexIVFGMM");
}

void IndexIVFGMM::search(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    const faiss::SearchParameters* params_in) const {
    check_usable("IndexIVFGMM::search");
    FAISS_THROW_IF_NOT_FMT(
        k > 0, "IndexIVFGMM::search: k=%" PRId64 " must be > 0", int64_t(k));
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::search: index is not trained");
    SearchParametersIVFGMM resolved;
    resolve_search_parameters(params_in, &resolved);
    check_finite(n, d, x, "IndexIVFGMM::search");
    const size_t nprobe = resolved.nprobe;

    const idx_t bs = std::min<idx_t>(n, 16384);
    std::vector<idx_t> assign(size_t(bs) * nprobe);
    std::vector<float> coarse_dis(size_t(bs) * nprobe);
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        const double t0 = faiss::getmillisecs();
        coarse_assign(nb, xb, resolved, assign.data(), coarse_dis.data());
        const double t1 = faiss::getmillisecs();
        // the precomputed rows of this batch's queries
        SearchParametersIVFGMM batch_params = resolved;
        if (resolved.precomputed_distances) {
            batch_params.precomputed_distances += size_t(i0) * size_t(ntotal);
        }
        search_preassigned(
            nb,
            xb,
            k,
            assign.data(),
            coarse_dis.data(),
            distances + int64_t(i0) * k,
            labels + int64_t(i0) * k,
            false,
            &batch_params,
            &faiss::indexIVF_stats);
        faiss::indexIVF_stats.quantization_time += t1 - t0;
        faiss::indexIVF_stats.search_time += faiss::getmillisecs() - t0;
    }
    indexIVFGMM_stats.ncoarse_distances += size_t(n) * nlist;
}

void IndexIVFGMM::check_lists_in_sync(const char* where) const {
    const size_t w = other_lists_width;
    for (size_t l = 0; l < nlist; l++) {
        FAISS_THROW_IF_NOT_FMT(
            other_lists[l].size() == invlists->list_size(l) * w,
            "%s: list %zu has %zu entries but %zu spill records of "
            "width %zu (inverted lists changed behind IndexIVFGMM)",
            where,
            l,
            invlists->list_size(l),
            other_lists[l].size(),
            w);
    }
}

void IndexIVFGMM::search_preassigned(
    idx_t n,
    const float* x,
    idx_t k,
    const idx_t* assign,
    const float* centroid_dis,
    float* distances,
    idx_t* labels,
    bool store_pairs,
    const faiss::IVFSearchParameters* params,
    faiss::IndexIVFStats* stats) const {
    check_usable("IndexIVFGMM::search_preassigned");
    FAISS_THROW_IF_NOT_FMT(
        k > 0,
        "IndexIVFGMM::search_preassigned: k=%" PRId64 " must be > 0",
        int64_t(k));
    const size_t nprobe =
        std::min(nlist, params ? params->nprobe : this->nprobe);
    FAISS_THROW_IF_NOT_MSG(
        nprobe > 0, "IndexIVFGMM::search_preassigned: nprobe is 0");
    const size_t max_codes = params ? params->max_codes : this->max_codes;
    const faiss::IDSelector* sel = params ? params->sel : nullptr;
    FAISS_THROW_IF_NOT_MSG(
        !(sel && store_pairs),
        "IndexIVFGMM: selector and store_pairs cannot be combined");
    for (size_t i = 0; i < size_t(n) * nprobe; i++) {
        FAISS_THROW_IF_NOT_FMT(
            assign[i] >= -1 && assign[i] < idx_t(nlist),
            "IndexIVFGMM::search_preassigned: list %" PRId64
            " is not in [-1, nlist=%zu)",
            int64_t(assign[i]),
            nlist);
    }
    check_lists_in_sync("IndexIVFGMM::search_preassigned");
    const auto* gmm_params_in =
        dynamic_cast<const SearchParametersIVFGMM*>(params);
    const float margin =
        gmm_params_in ? gmm_params_in->prune_margin : prune_margin;
    FAISS_THROW_IF_NOT_FMT(
        margin >= 0 && !std::isnan(margin),
        "IndexIVFGMM::search_preassigned: prune_margin=%g must be >= 0",
        margin);
    FAISS_THROW_IF_NOT_MSG(
        margin == 0 || centroid_dis,
        "IndexIVFGMM::search_preassigned: prune_margin > 0 needs the "
        "squared L2 distances to the means (centroid_dis is null)");
    const BisectorPruner pruner{margin, d, gmm.means.data()};
    const float min_hits =
        gmm_params_in ? gmm_params_in->min_expected_hits : min_expected_hits;
    FAISS_THROW_IF_NOT_FMT(
        min_hits >= 0 && !std::isnan(min_hits),
        "IndexIVFGMM::search_preassigned: min_expected_hits=%g must be >= 0",
        min_hits);
    FAISS_THROW_IF_NOT_MSG(
        min_hits == 0 || centroid_dis,
        "IndexIVFGMM::search_preassigned: min_expected_hits > 0 needs the "
        "squared L2 distances to the means (centroid_dis is null)");
    const HitModelPruner hit_pruner(min_hits, gmm, invlists);
    const float* precomputed =
        gmm_params_in ? gmm_params_in->precomputed_distances : nullptr;
    if (precomputed) {
        check_sequential_ids(
            *invlists,
            idx_t(ntotal),
            "IndexIVFGMM::search_preassigned (precomputed_distances)");
    }

    const ScanContext ctx{
        invlists,
        &other_lists,
        other_lists_width,
        d,
        sel,
        max_codes,
        &pruner,
        &hit_pruner};
    size_t nlistv = 0, ndis = 0, nheap = 0, nscanned = 0, ndup = 0;
    size_t nbound = 0, npruned = 0;
#pragma omp parallel reduction( \
        + : nlistv, ndis, nheap, nscanned, ndup, nbound, npruned)
    {
        std::vector<int32_t> probe_rank(nlist, kNotProbed);
#pragma omp for schedule(dynamic)
        for (idx_t i = 0; i < n; i++) {
            float* simi = distances + int64_t(i) * k;
            idx_t* idxi = labels + int64_t(i) * k;
            faiss::heap_heapify<HeapForL2>(k, simi, idxi);
            ScanCounts counts;
            scan_probed_lists(
                ctx,
                x + int64_t(i) * d,
                precomputed ? precomputed + size_t(i) * size_t(ntotal)
                            : nullptr,
                assign + size_t(i) * nprobe,
                centroid_dis ? centroid_dis + size_t(i) * nprobe : nullptr,
                nprobe,
                probe_rank,
                [&]() { return simi[0]; },
                [&](float dis, idx_t list, size_t offset, idx_t id) {
                    if (dis < simi[0]) {
                        const idx_t label =
                            store_pairs ? idx_t(faiss::lo_build(list, offset))
                                        : id;
                        faiss::heap_replace_top<HeapForL2>(
                            k, simi, idxi, dis, label);
                        nheap++;
                    }
                },
                &counts);
            faiss::heap_reorder<HeapForL2>(k, simi, idxi);
            nlistv += counts.lists;
            ndis += counts.distances;
            nscanned += counts.scanned;
            ndup += counts.duplicates;
            nbound += counts.bound;
            npruned += counts.pruned;
        }
    }

    if (stats) {
        stats->nq += n;
        stats->nlist += nlistv;
        stats->ndis += ndis;
        stats->nheap_updates += nheap;
    }
    indexIVFGMM_stats.nq += n;
    indexIVFGMM_stats.ncoarse_distances += nbound;
    indexIVFGMM_stats.nbound_distances += nbound;
    indexIVFGMM_stats.nlists_pruned += npruned;
    indexIVFGMM_stats.nfine_distances += ndis;
    indexIVFGMM_stats.nentries_scanned += nscanned;
    indexIVFGMM_stats.nduplicates_skipped += ndup;
    indexIVFGMM_stats.nlists_probed += nlistv;
}

void IndexIVFGMM::range_search(
    idx_t n,
    const float* x,
    float radius,
    faiss::RangeSearchResult* result,
    const faiss::SearchParameters* params_in) const {
    check_usable("IndexIVFGMM::range_search");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::range_search: index is not trained");
    SearchParametersIVFGMM ivf_params;
    resolve_search_parameters(params_in, &ivf_params);
    FAISS_THROW_IF_NOT_MSG(
        !ivf_params.precomputed_distances,
        "IndexIVFGMM::range_search: precomputed_distances is for search "
        "only");
    check_finite(n, d, x, "IndexIVFGMM::range_search");
    check_lists_in_sync("IndexIVFGMM::range_search");
    const size_t nprobe = ivf_params.nprobe;
    const size_t max_codes = ivf_params.max_codes;
    const faiss::IDSelector* sel = ivf_params.sel;

    const double t0 = faiss::getmillisecs();
    std::vector<idx_t> assign(size_t(n) * nprobe);
    std::vector<float> coarse_dis(size_t(n) * nprobe);
    coarse_assign(n, x, ivf_params, assign.data(), coarse_dis.data());
    const double t1 = faiss::getmillisecs();
    // the radius plays the part of the k-th neighbour distance
    const BisectorPruner pruner{ivf_params.prune_margin, d, gmm.means.data()};
    const HitModelPruner hit_pruner(
        ivf_params.min_expected_hits, gmm, invlists);

    const ScanContext ctx{
        invlists,
        &other_lists,
        other_lists_width,
        d,
        sel,
        max_codes,
        &pruner,
        &hit_pruner};
    size_t nlistv = 0, ndis = 0, nscanned = 0, ndup = 0;
    size_t nbound = 0, npruned = 0;
#pragma omp parallel reduction(+ : nlistv, ndis, nscanned, ndup, nbound, npruned)
    {
        faiss::RangeSearchPartialResult pres(result);
        std::vector<int32_t> probe_rank(nlist, kNotProbed);
#pragma omp for schedule(dynamic)
        for (idx_t i = 0; i < n; i++) {
            faiss::RangeQueryResult& qres = pres.new_result(i);
            ScanCounts counts;
            scan_probed_lists(
                ctx,
                x + int64_t(i) * d,
                nullptr,
                assign.data() + size_t(i) * nprobe,
                coarse_dis.data() + size_t(i) * nprobe,
                nprobe,
                probe_rank,
                [&]() { return radius; },
                [&](float dis, idx_t, size_t, idx_t id) {
                    if (dis < radius) {
                        qres.add(dis, id);
                    }
                },
                &counts);
            nlistv += counts.lists;
            ndis += counts.distances;
            nscanned += counts.scanned;
            ndup += counts.duplicates;
            nbound += counts.bound;
            npruned += counts.pruned;
        }
        pres.finalize();
    }

    faiss::indexIVF_stats.nq += n;
    faiss::indexIVF_stats.nlist += nlistv;
    faiss::indexIVF_stats.ndis += ndis;
    faiss::indexIVF_stats.quantization_time += t1 - t0;
    faiss::indexIVF_stats.search_time += faiss::getmillisecs() - t0;
    indexIVFGMM_stats.nq += n;
    indexIVFGMM_stats.ncoarse_distances += size_t(n) * nlist + nbound;
    indexIVFGMM_stats.nbound_distances += nbound;
    indexIVFGMM_stats.nlists_pruned += npruned;
    indexIVFGMM_stats.nfine_distances += ndis;
    indexIVFGMM_stats.nentries_scanned += nscanned;
    indexIVFGMM_stats.nduplicates_skipped += ndup;
    indexIVFGMM_stats.nlists_probed += nlistv;
}

/*************************************************************
 * maintenance
 *************************************************************/

size_t IndexIVFGMM::remove_ids(const faiss::IDSelector& sel) {
    check_usable("IndexIVFGMM::remove_ids");
    check_lists_in_sync("IndexIVFGMM::remove_ids");
    const int w = other_lists_width;
    std::vector<size_t> removed_entries(nlist, 0);
    size_t removed_vectors = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : removed_vectors)
    for (size_t l = 0; l < nlist; l++) {
        const size_t size0 = invlists->list_size(l);
        if (size0 == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds sids(invlists, l);
        const idx_t* ids = sids.get();
        int32_t* records = other_lists[l].data();
        size_t size = size0, j = 0;
        // swap-with-last removal, as FAISS's DirectMap::remove_ids does
        while (j < size) {
            if (!sel.is_member(ids[j])) {
                j++;
                continue;
            }
            if (is_canonical_copy(l, records + j * w, w)) {
                removed_vectors++;
            }
            size--;
            if (j < size) {
                invlists->update_entry(
                    l,
                    j,
                    ids[size],
                    faiss::InvertedLists::ScopedCodes(invlists, l, size).get());
                std::copy_n(records + size * w, w, records + j * w);
            }
        }
        removed_entries[l] = size0 - size;
    }
    size_t removed_total = 0;
    for (size_t l = 0; l < nlist; l++) {
        if (removed_entries[l] > 0) {
            const size_t size = invlists->list_size(l) - removed_entries[l];
            invlists->resize(l, size);
            other_lists[l].resize(size * w);
            removed_total += removed_entries[l];
        }
    }
    ntotal -= removed_vectors;
    nentries -= removed_total;
    invalidate_id_locations();
    return removed_vectors;
}

void IndexIVFGMM::reset() {
    faiss::IndexIVFFlat::reset();
    other_lists.assign(nlist, {});
    nentries = 0;
    invalidate_id_locations();
}

void IndexIVFGMM::invalidate_id_locations() {
    std::atomic_store(
        &id_location_cache, std::shared_ptr<const IdLocationMap>());
}

void IndexIVFGMM::reconstruct(idx_t key, float* recons) const {
    check_usable("IndexIVFGMM::reconstruct");
    std::shared_ptr<const IdLocationMap> locations =
        std::atomic_load(&id_location_cache);
    if (!locations) {
        auto built = std::make_shared<IdLocationMap>();
        built->reserve(ntotal);
        for (size_t l = 0; l < nlist; l++) {
            const size_t list_size = invlists->list_size(l);
            if (list_size == 0) {
                continue;
            }
            faiss::InvertedLists::ScopedIds sids(invlists, l);
            for (size_t j = 0; j < list_size; j++) {
                built->emplace(sids[j], faiss::lo_build(l, j));
            }
        }
        locations = built;
        std::atomic_store(&id_location_cache, locations);
    }
    const auto it = locations->find(key);
    FAISS_THROW_IF_NOT_FMT(
        it != locations->end(),
        "IndexIVFGMM::reconstruct: no vector with id %" PRId64,
        int64_t(key));
    reconstruct_from_offset(
        faiss::lo_listno(it->second), faiss::lo_offset(it->second), recons);
}

void IndexIVFGMM::merge_from(faiss::Index& other_index, idx_t add_id) {
    check_usable("IndexIVFGMM::merge_from");
    IndexIVFGMM* other = dynamic_cast<IndexIVFGMM*>(&other_index);
    FAISS_THROW_IF_NOT_MSG(
        other,
        "IndexIVFGMM::merge_from: the other index is not an "
        "IndexIVFGMM");
    FAISS_THROW_IF_NOT_MSG(
        other != this,
        "IndexIVFGMM::merge_from: cannot merge an index into itself");
    FAISS_THROW_IF_NOT_FMT(
        other->d == d,
        "IndexIVFGMM::merge_from: other d=%d, this d=%d",
        other->d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        other->nlist == nlist,
        "IndexIVFGMM::merge_from: other nlist=%zu, this nlist=%zu",
        other->nlist,
        nlist);
    FAISS_THROW_IF_NOT_MSG(
        is_trained && other->is_trained,
        "IndexIVFGMM::merge_from: both indexes must be trained");
    other->check_usable("IndexIVFGMM::merge_from (other)");
    other->check_lists_in_sync("IndexIVFGMM::merge_from (other)");
    check_lists_in_sync("IndexIVFGMM::merge_from");
    {
        std::vector<float> mine(d), theirs(d);
        for (size_t c = 0; c < nlist; c++) {
            quantizer->reconstruct(c, mine.data());
            other->quantizer->reconstruct(c, theirs.data());
            FAISS_THROW_IF_NOT_FMT(
                mine == theirs,
                "IndexIVFGMM::merge_from: mean of component %zu differs "
                "between the indexes (different models)",
                c);
        }
    }
    const int w = std::max(other_lists_width, other->other_lists_width);
    set_other_lists_width(w);
    const int ow = other->other_lists_width;
#pragma omp parallel for schedule(dynamic)
    for (size_t l = 0; l < nlist; l++) {
        const size_t n_other = other->invlists->list_size(l);
        if (n_other == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds sids(other->invlists, l);
        faiss::InvertedLists::ScopedCodes scodes(other->invlists, l);
        std::vector<idx_t> shifted(sids.get(), sids.get() + n_other);
        for (idx_t& id : shifted) {
            id += add_id;
        }
        invlists->add_entries(l, n_other, shifted.data(), scodes.get());
        std::vector<int32_t>& mine = other_lists[l];
        const size_t start = mine.size();
        mine.resize(start + n_other * w, -1);
        for (size_t j = 0; j < n_other && ow > 0; j++) {
            std::copy_n(
                other->other_lists[l].data() + j * ow,
                ow,
                mine.data() + start + j * w);
        }
    }
    ntotal += other->ntotal;
    nentries += other->nentries;
    invalidate_id_locations();
    other->reset();
}

double IndexIVFGMM::replication_factor() const {
    return ntotal == 0 ? 1.0 : double(nentries) / double(ntotal);
}

double IndexIVFGMM::imbalance_factor() const {
    if (nentries == 0 || !invlists) {
        return 1.0;
    }
    double sum = 0, sum_sq = 0;
    for (size_t l = 0; l < nlist; l++) {
        const double size = double(invlists->list_size(l));
        sum += size;
        sum_sq += size * size;
    }
    return sum_sq * double(nlist) / (sum * sum);
}

void IndexIVFGMM::set_parameters(const std::string& description) {
    size_t new_nprobe = nprobe;
    size_t new_max_codes = max_codes;
    ProbeOrder new_order = probe_order;
    float new_mass = posterior_mass;
    SearchParametersIVFGMM new_search;
    new_search.mass_temperature = mass_temperature;
    new_search.distance_ratio = distance_ratio;
    new_search.prune_margin = prune_margin;
    new_search.min_expected_hits = min_expected_hits;
    SpillParameters new_spill = spill;
    TrainDevice new_device = train_device;

    size_t start = 0;
    while (start <= description.size()) {
        size_t end = description.find(',', start);
        if (end == std::string::npos) {
            end = description.size();
        }
        const std::string token = trim(description.substr(start, end - start));
        start = end + 1;
        if (token.empty()) {
            FAISS_THROW_IF_NOT_FMT(
                end == description.size() || description.empty(),
                "IndexIVFGMM::set_parameters: empty token in '%s'",
                description.c_str());
            continue;
        }
        const size_t eq = token.find('=');
        FAISS_THROW_IF_NOT_FMT(
            eq != std::string::npos,
            "IndexIVFGMM::set_parameters: token '%s' is not key=value",
            token.c_str());
        const std::string key = trim(token.substr(0, eq));
        const std::string value = trim(token.substr(eq + 1));
        if (key == "nprobe") {
            const int64_t v = parse_integer(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 1,
                "IndexIVFGMM::set_parameters: '%s': nprobe must be >= 1",
                token.c_str());
            new_nprobe = size_t(v);
        } else if (key == "max_codes") {
            const int64_t v = parse_integer(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0,
                "IndexIVFGMM::set_parameters: '%s': max_codes must be "
                ">= 0",
                token.c_str());
            new_max_codes = size_t(v);
        } else if (key == "probe") {
            new_order = probe_order_from_name(value);
        } else if (key == "posterior_mass") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0 && v <= 1,
                "IndexIVFGMM::set_parameters: '%s': posterior_mass must "
                "be in [0, 1]",
                token.c_str());
            new_mass = float(v);
        } else if (key == "mass_temperature") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v > 0,
                "IndexIVFGMM::set_parameters: '%s': mass_temperature must "
                "be > 0",
                token.c_str());
            new_search.mass_temperature = float(v);
        } else if (key == "distance_ratio") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v == 0 || v >= 1,
                "IndexIVFGMM::set_parameters: '%s': distance_ratio must "
                "be 0 (off) or >= 1",
                token.c_str());
            new_search.distance_ratio = float(v);
        } else if (key == "prune_margin") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0,
                "IndexIVFGMM::set_parameters: '%s': prune_margin must be "
                ">= 0 (0 = off)",
                token.c_str());
            new_search.prune_margin = float(v);
        } else if (key == "min_expected_hits") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0,
                "IndexIVFGMM::set_parameters: '%s': min_expected_hits must "
                "be >= 0 (0 = off)",
                token.c_str());
            new_search.min_expected_hits = float(v);
        } else if (key == "spill") {
            new_spill.rule = spill_rule_from_name(value);
        } else if (key == "tau") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0 && v <= 1,
                "IndexIVFGMM::set_parameters: '%s': tau must be in "
                "[0, 1]",
                token.c_str());
            new_spill.tau = float(v);
        } else if (key == "temperature") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v > 0,
                "IndexIVFGMM::set_parameters: '%s': temperature must be "
                "> 0",
                token.c_str());
            new_spill.temperature = float(v);
        } else if (key == "max_assign") {
            const int64_t v = parse_integer(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 1 && v <= 1024,
                "IndexIVFGMM::set_parameters: '%s': max_assign must be "
                "in [1, 1024]",
                token.c_str());
            new_spill.max_assign = int(v);
        } else if (key == "closure_ratio") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 1,
                "IndexIVFGMM::set_parameters: '%s': closure_ratio must "
                "be >= 1",
                token.c_str());
            new_spill.closure_ratio = float(v);
        } else if (key == "soar_lambda") {
            const double v = parse_number(token, value);
            FAISS_THROW_IF_NOT_FMT(
                v >= 0,
                "IndexIVFGMM::set_parameters: '%s': soar_lambda must be "
                ">= 0",
                token.c_str());
            new_spill.soar_lambda = float(v);
        } else if (key == "primary") {
            FAISS_THROW_IF_NOT_FMT(
                value == "l2" || value == "posterior",
                "IndexIVFGMM::set_parameters: '%s': primary must be l2 "
                "or posterior",
                token.c_str());
            new_spill.primary_is_nearest_mean = value == "l2";
        } else if (key == "train_device") {
            new_device = train_device_from_name(value);
        } else {
            FAISS_THROW_FMT(
                "IndexIVFGMM::set_parameters: unknown key '%s' in '%s'",
                key.c_str(),
                token.c_str());
        }
    }
    validate_spill(new_spill);
    new_search.probe_order = new_order;
    new_search.posterior_mass = new_mass;
    check_search_parameters(new_search, "IndexIVFGMM");
    nprobe = new_nprobe;
    max_codes = new_max_codes;
    probe_order = new_order;
    posterior_mass = new_mass;
    mass_temperature = new_search.mass_temperature;
    distance_ratio = new_search.distance_ratio;
    prune_margin = new_search.prune_margin;
    min_expected_hits = new_search.min_expected_hits;
    spill = new_spill;
    train_device = new_device;
}

} // namespace faiss_gmm
