/**
 * Oracles of the GpuIndexIVFGMM tests (test_gpu_index*.cpp): random
 * models and samples, a CPU / GPU pair on one model, and comparisons of
 * stored lists, search results and counters that accept only differences
 * float rounding can explain (near-ties).
 *
 * Results may differ only where float rounding decides a near-tie (the GPU
 * computes distances with fp32 direct differences, the CPU with SIMD or
 * BLAS expansions); every difference is checked to be such a tie.
 */

#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

#include "test_utils.h"

namespace faiss_gmm {
namespace test {

using faiss_gmm::gpu::GpuIndexIVFGMM;
using faiss_gmm::gpu::GpuIndexIVFGMMConfig;

/// Relative tolerance under which two scores count as a near-tie.
constexpr double kTieTolerance = 1e-4;

inline bool near(double a, double b) {
    return std::abs(a - b) <=
           kTieTolerance * std::max({1.0, std::abs(a), std::abs(b)});
}

/// A trained random model: means around an offset of 5 (exercises the
/// centring of the coarse products), variances 0.5..1.5. weight_skew > 0
/// gives component 0 that much extra weight (a huge list).
inline GaussianMixture make_model(
    int d, int k, CovarianceType cov, uint64_t seed, float weight_skew = 0) {
    GaussianMixture model(d, k, cov);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> uni(0.5f, 1.5f);
    double wsum = 0;
    for (int j = 0; j < k; j++) {
        model.weights[j] = uni(rng) + (j == 0 ? weight_skew : 0.0f);
        wsum += model.weights[j];
    }
    for (int j = 0; j < k; j++) {
        model.weights[j] = float(model.weights[j] / wsum);
    }
    for (auto& m : model.means) {
        m = 5.0f + 2.0f * normal(rng);
    }
    for (auto& v : model.variances) {
        v = uni(rng);
    }
    model.is_trained = true;
    return model;
}

/// n points drawn from the components in `components` (all when empty),
/// uniformly, plus `noise` extra standard deviations.
inline std::vector<float> sample(
    const GaussianMixture& model,
    idx_t n,
    uint64_t seed,
    const std::vector<int>& components = {}) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> pick(
        0, components.empty() ? model.k - 1 : int(components.size()) - 1);
    const int d = model.d;
    std::vector<float> x(size_t(n) * d);
    for (idx_t i = 0; i < n; i++) {
        const int j = components.empty() ? pick(rng) : components[pick(rng)];
        for (int l = 0; l < d; l++) {
            const float v = model.covariance == CovarianceType::Spherical
                                ? model.variances[j]
                                : model.variances[size_t(j) * d + l];
            x[size_t(i) * d + l] =
                model.means[size_t(j) * d + l] + std::sqrt(v) * normal(rng);
        }
    }
    return x;
}

/// The default search options without list pruning.
inline IVFGMMSearchOptions unpruned_options() {
    IVFGMMSearchOptions o;
    o.prune_margin = 0;
    o.min_expected_hits = 0;
    return o;
}

/// The same trained model and parameters, CPU and GPU side, both empty,
/// searching without list pruning by default.
struct Pair {
    std::unique_ptr<IndexIVFGMM> cpu;
    std::unique_ptr<GpuIndexIVFGMM> gpu;
};

inline Pair make_pair(
    const GaussianMixture& model,
    const SpillParameters& spill,
    const GpuIndexIVFGMMConfig& config = GpuIndexIVFGMMConfig()) {
    GmmParameters gp;
    gp.covariance = model.covariance;
    Pair p;
    p.cpu.reset(
        new IndexIVFGMM(model.d, size_t(model.k), build_params(gp, spill)));
    p.cpu->set_gmm(model);
    p.gpu.reset(new GpuIndexIVFGMM(
        model.d, size_t(model.k), build_params(gp, spill), config));
    p.gpu->set_gmm(model);
    // list pruning bounds with the running k-th distance on the CPU and
    // with the first lists' on the GPU: the searches compared here run
    // unpruned (pruning has its own tests)
    p.cpu->search_options = p.gpu->search_options = unpruned_options();
    return p;
}

/// Lists of every vector (id -> sorted lists) of a CPU index.
inline std::map<idx_t, std::set<idx_t>>
list_sets_of_ids(const IndexIVFGMM& cpu) {
    std::map<idx_t, std::set<idx_t>> out;
    for (size_t l = 0; l < cpu.nlist; l++) {
        const size_t n = cpu.invlists->list_size(l);
        const idx_t* ids = cpu.invlists->get_ids(l);
        for (size_t j = 0; j < n; j++) {
            out[ids[j]].insert(idx_t(l));
        }
        cpu.invlists->release_ids(l, ids);
    }
    return out;
}

inline std::map<idx_t, std::set<idx_t>>
list_sets_of_ids(const GpuIndexIVFGMM& gpu) {
    std::map<idx_t, std::set<idx_t>> out;
    for (size_t l = 0; l < gpu.nlist; l++) {
        for (idx_t id : gpu.list_ids(idx_t(l))) {
            out[id].insert(idx_t(l));
        }
    }
    return out;
}

/**
 * True when the list choice of vector x can flip under float rounding:
 * two of the involved lists (or the next best) are near-tied in log-joint
 * or L2 distance, or a tempered posterior / closure ratio sits at its
 * threshold.
 */
inline bool assignment_near_tie(
    const IndexIVFGMM& cpu,
    const float* x,
    const std::set<idx_t>& a,
    const std::set<idx_t>& b) {
    const GaussianMixture& g = cpu.gmm;
    std::vector<float> lj(g.k), l2(g.k);
    g.log_joint(1, x, lj.data());
    for (int j = 0; j < g.k; j++) {
        double s = 0;
        for (int c = 0; c < g.d; c++) {
            const double diff = x[c] - g.means[size_t(j) * g.d + c];
            s += diff * diff;
        }
        l2[j] = float(s);
    }
    std::set<idx_t> involved(a.begin(), a.end());
    involved.insert(b.begin(), b.end());
    // the best-ranked lists outside the sets take part in the ties too
    std::vector<int> by_lj(g.k), by_l2(g.k);
    for (int j = 0; j < g.k; j++) {
        by_lj[j] = by_l2[j] = j;
    }
    std::sort(by_lj.begin(), by_lj.end(), [&](int p, int q) {
        return lj[p] > lj[q];
    });
    std::sort(by_l2.begin(), by_l2.end(), [&](int p, int q) {
        return l2[p] < l2[q];
    });
    const int extra = std::min(g.k, int(involved.size()) + 2);
    for (int t = 0; t < extra; t++) {
        involved.insert(by_lj[t]);
        involved.insert(by_l2[t]);
    }
    double mx = *std::max_element(lj.begin(), lj.end()), sum = 0;
    const double inv_t = 1.0 / cpu.build_params.spill.temperature;
    for (int j = 0; j < g.k; j++) {
        sum += std::exp((lj[j] - mx) * inv_t);
    }
    for (idx_t p : involved) {
        const double post = std::exp((lj[p] - mx) * inv_t) / sum;
        if (std::abs(post - cpu.build_params.spill.tau) <= 1e-4) {
            return true;
        }
        if (near(l2[p], cpu.build_params.spill.closure_ratio * l2[by_l2[0]])) {
            return true;
        }
        for (idx_t q : involved) {
            if (p != q && (near(lj[p], lj[q]) || near(l2[p], l2[q]))) {
                return true;
            }
        }
    }
    return false;
}

/**
 * The GPU index stores exactly the CPU's lists: per vector the same lists
 * (but for near-ties), per list the same ids in the same order (near-tie
 * vectors left out), the same codes (byte for byte: vectors, or FAISS's SQ
 * codes) and records; same counts.
 */
inline void expect_same_lists(
    const IndexIVFGMM& cpu,
    const GpuIndexIVFGMM& gpu,
    const float* x,
    idx_t n) {
    ASSERT_EQ(cpu.nlist, gpu.nlist);
    ASSERT_EQ(cpu.spill_records.width, gpu.other_lists_width());
    EXPECT_EQ(cpu.ntotal, gpu.ntotal);
    const auto cpu_sets = list_sets_of_ids(cpu);
    const auto gpu_sets = list_sets_of_ids(gpu);
    ASSERT_EQ(cpu_sets.size(), gpu_sets.size());
    std::set<idx_t> tied;
    for (const auto& kv : cpu_sets) {
        const auto it = gpu_sets.find(kv.first);
        ASSERT_NE(it, gpu_sets.end()) << "id " << kv.first << " not on GPU";
        if (it->second != kv.second) {
            ASSERT_TRUE(kv.first >= 0 && kv.first < n);
            EXPECT_TRUE(assignment_near_tie(
                cpu, x + size_t(kv.first) * cpu.d, kv.second, it->second))
                << "vector " << kv.first
                << " is in different lists on CPU and GPU without a tie";
            tied.insert(kv.first);
        }
    }
    EXPECT_LE(tied.size(), size_t(n / 1000 + 1)) << "too many near-ties";
    if (tied.empty()) {
        EXPECT_EQ(cpu.nentries(), gpu.nentries());
    }
    const int w = cpu.spill_records.width;
    for (size_t l = 0; l < cpu.nlist; l++) {
        const size_t n_l = cpu.invlists->list_size(l);
        const idx_t* ids = cpu.invlists->get_ids(l);
        const uint8_t* codes = cpu.invlists->get_codes(l);
        const size_t cs = cpu.code_size;
        const std::vector<idx_t> g_ids = gpu.list_ids(idx_t(l));
        const std::vector<uint8_t> g_codes = gpu.list_codes(idx_t(l));
        ASSERT_EQ(g_codes.size(), g_ids.size() * cs);
        const std::vector<int32_t> g_rec = gpu.list_records(idx_t(l));
        size_t jg = 0;
        for (size_t jc = 0; jc < n_l; jc++) {
            if (tied.count(ids[jc])) {
                continue;
            }
            while (jg < g_ids.size() && tied.count(g_ids[jg])) {
                jg++;
            }
            ASSERT_LT(jg, g_ids.size()) << "list " << l << " is shorter";
            ASSERT_EQ(ids[jc], g_ids[jg]) << "list " << l << " entry " << jc;
            for (size_t c = 0; c < cs; c++) {
                ASSERT_EQ(codes[jc * cs + c], g_codes[jg * cs + c])
                    << "list " << l << " entry " << jc << " code byte " << c;
            }
            if (tied.empty()) {
                for (int t = 0; t < w; t++) {
                    ASSERT_EQ(
                        cpu.spill_records.records[l][jc * w + t],
                        g_rec[jg * w + t])
                        << "record of list " << l << " entry " << jc;
                }
            }
            jg++;
        }
        while (jg < g_ids.size() && tied.count(g_ids[jg])) {
            jg++;
        }
        EXPECT_EQ(jg, g_ids.size()) << "list " << l << " is longer on GPU";
        cpu.invlists->release_ids(l, ids);
        cpu.invlists->release_codes(l, codes);
    }
}

/// Counters of one search, CPU or GPU.
struct Counters {
    IndexIVFGMMStats gmm;
    faiss::IndexIVFStats ivf;
};

template <class Index>
inline Counters search_counted(
    const Index& index,
    idx_t nq,
    const float* q,
    idx_t k,
    std::vector<float>* dis,
    std::vector<idx_t>* ids,
    const SearchParametersIVFGMM* params) {
    dis->assign(size_t(nq) * k, 0);
    ids->assign(size_t(nq) * k, 0);
    indexIVFGMM_stats.reset();
    faiss::indexIVF_stats.reset();
    index.search(nq, q, k, dis->data(), ids->data(), params);
    return Counters{indexIVFGMM_stats, faiss::indexIVF_stats};
}

/// True when query q's probe set can change under rounding: the coarse
/// scores at ranks nprobe - 1 and nprobe are near-tied.
inline bool coarse_boundary_tie(
    const IndexIVFGMM& cpu,
    const float* q,
    const SearchParametersIVFGMM& params) {
    const size_t np = std::min(params.nprobe, cpu.nlist);
    if (np >= cpu.nlist) {
        return false;
    }
    SearchParametersIVFGMM wider;
    wider.nprobe = np + 1;
    wider.probe_order = params.probe_order;
    std::vector<idx_t> assign(np + 1);
    std::vector<float> dis(np + 1);
    cpu.coarse_assign(1, q, wider, assign.data(), dis.data());
    return near(dis[np - 1], dis[np]);
}

/**
 * GPU and CPU results of the same search agree: per rank the same
 * distance (float tolerance) and the same id unless the CPU's distance at
 * that rank is near-tied with a neighbouring rank (or it is the last
 * rank). A query whose probe set sits on a coarse near-tie may differ
 * (then counters are not compared). Counters are equal otherwise.
 */
inline void expect_same_search(
    const IndexIVFGMM& cpu,
    const GpuIndexIVFGMM& gpu,
    idx_t nq,
    const float* q,
    idx_t k,
    const SearchParametersIVFGMM& params,
    const std::string& what) {
    std::vector<float> dc, dg;
    std::vector<idx_t> ic, ig;
    const Counters cc = search_counted(cpu, nq, q, k, &dc, &ic, &params);
    const Counters cg = search_counted(gpu, nq, q, k, &dg, &ig, &params);
    size_t coarse_ties = 0;
    for (idx_t i = 0; i < nq; i++) {
        const float* dci = dc.data() + size_t(i) * k;
        const float* dgi = dg.data() + size_t(i) * k;
        const idx_t* ici = ic.data() + size_t(i) * k;
        const idx_t* igi = ig.data() + size_t(i) * k;
        bool same = true;
        for (idx_t j = 0; j < k && same; j++) {
            same =
                near(dci[j], dgi[j]) && (ici[j] == igi[j] || j == k - 1 ||
                                         (j > 0 && near(dci[j], dci[j - 1])) ||
                                         near(dci[j], dci[j + 1]));
        }
        if (same) {
            continue;
        }
        const bool tie =
            coarse_boundary_tie(cpu, q + size_t(i) * cpu.d, params);
        EXPECT_TRUE(tie) << what << ": query " << i
                         << " differs without a near-tie (first ids " << ici[0]
                         << " vs " << igi[0] << ")";
        coarse_ties++;
    }
    EXPECT_LE(coarse_ties, size_t(nq / 20 + 1)) << what;
    EXPECT_EQ(cc.gmm.nq, cg.gmm.nq) << what;
    EXPECT_EQ(cc.gmm.ncoarse_distances, cg.gmm.ncoarse_distances) << what;
    EXPECT_EQ(cc.ivf.nq, cg.ivf.nq) << what;
    if (coarse_ties == 0) {
        EXPECT_EQ(cc.gmm.nfine_distances, cg.gmm.nfine_distances) << what;
        EXPECT_EQ(cc.gmm.nentries_scanned, cg.gmm.nentries_scanned) << what;
        EXPECT_EQ(cc.gmm.nduplicates_skipped, cg.gmm.nduplicates_skipped)
            << what;
        EXPECT_EQ(cc.gmm.nlists_probed, cg.gmm.nlists_probed) << what;
        EXPECT_EQ(cc.ivf.nlist, cg.ivf.nlist) << what;
        EXPECT_EQ(cc.ivf.ndis, cg.ivf.ndis) << what;
    }
}

/// Unpruned search parameters (see make_pair).
inline SearchParametersIVFGMM
search_params(size_t nprobe, ProbeOrder order = ProbeOrder::L2) {
    SearchParametersIVFGMM p(nprobe, 0, unpruned_options());
    p.probe_order = order;
    return p;
}

inline std::string
describe(CovarianceType cov, ProbeOrder order, size_t nprobe, idx_t k) {
    return std::string(covariance_type_name(cov)) +
           " probe=" + probe_order_name(order) +
           " nprobe=" + std::to_string(nprobe) + " k=" + std::to_string(k);
}

/// Throws, with a message that contains `needle`.
template <class F>
inline void expect_throw_naming(F f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "no exception; expected one naming '" << needle << "'";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "message '" << e.what() << "' does not name '" << needle << "'";
    }
}

} // namespace test
} // namespace faiss_gmm
