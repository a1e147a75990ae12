/**
 * IndexIVFGMM invariants on small synthetic data: spill rules, deduplicated
 * search and range search, exact counters, adaptive probing, remove_ids,
 * reconstruct, reset, merge_from, set_parameters and input errors.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/distances.h>

#include <faiss_gmm/IndexIVFGMM.h>

#include "test_utils.h"

using faiss_gmm::GaussianMixture;
using faiss_gmm::idx_t;
using faiss_gmm::IndexIVFGMM;
using faiss_gmm::ProbeOrder;
using faiss_gmm::SpillParameters;
using faiss_gmm::SpillRule;

namespace {

constexpr int kDim = 16;
constexpr int kNlist = 32;

std::vector<float> make_blobs(int n, int d, int nblobs, uint32_t seed) {
    return faiss_gmm::test::overlapping_blobs(n, d, nblobs, seed);
}

/// A hand-made spherical model: means from a few k-means iterations, equal
/// weights, each component's variance from the points nearest to it.
GaussianMixture hand_made_model(int d, int k, const std::vector<float>& x) {
    const idx_t n = idx_t(x.size() / d);
    faiss::ClusteringParameters cp;
    cp.niter = 5;
    cp.seed = 7;
    faiss::Clustering clustering(d, k, cp);
    faiss::IndexFlatL2 assigner(d);
    clustering.train(n, x.data(), assigner);

    std::vector<float> dis(n);
    std::vector<idx_t> nearest(n);
    assigner.search(n, x.data(), 1, dis.data(), nearest.data());
    std::vector<double> sum(k, 0.0);
    std::vector<double> count(k, 0.0);
    for (idx_t i = 0; i < n; i++) {
        sum[nearest[i]] += dis[i];
        count[nearest[i]] += 1;
    }
    GaussianMixture model(d, k, faiss_gmm::CovarianceType::Spherical);
    model.means = clustering.centroids;
    model.weights.assign(k, 1.0f / k);
    for (int j = 0; j < k; j++) {
        model.variances[j] =
            float(std::max(sum[j] / (std::max(count[j], 1.0) * d), 0.05));
    }
    model.is_trained = true;
    return model;
}

struct Fixture : ::testing::Test {
    static constexpr int nb = 3000;
    static constexpr int nq = 16; // < 20: IndexFlatL2 uses the exact path
    std::vector<float> xb = make_blobs(nb, kDim, 12, 1);
    std::vector<float> xq = make_blobs(nq, kDim, 12, 1 + 1000);
    GaussianMixture model = hand_made_model(kDim, kNlist, xb);

    /// An index on the hand-made model, searching without list pruning
    /// (these tests check the scan itself; the pruning rules, on by
    /// default, have tests of their own).
    std::unique_ptr<IndexIVFGMM>
    make_index(const SpillParameters& spill = SpillParameters()) {
        auto index = std::make_unique<IndexIVFGMM>(
            kDim, kNlist, faiss_gmm::test::build_params(spill));
        index->set_gmm(model);
        index->search_options.prune_margin = 0;
        index->search_options.min_expected_hits = 0;
        return index;
    }

    /// The exact k nearest base vectors of the queries (IndexFlatL2).
    void
    brute_force(int k, std::vector<float>* dis, std::vector<idx_t>* ids) const {
        faiss::IndexFlatL2 flat(kDim);
        flat.add(nb, xb.data());
        dis->resize(nq * k);
        ids->resize(nq * k);
        flat.search(nq, xq.data(), k, dis->data(), ids->data());
    }
};

using faiss_gmm::test::expect_records_consistent;
using faiss_gmm::test::lists_of_ids;

/// IndexIVFGMM::coarse_assign with nprobe, the order and the mass only.
void coarse_assign(
    const IndexIVFGMM& index,
    idx_t n,
    const float* x,
    size_t nprobe,
    ProbeOrder order,
    float mass,
    idx_t* assign,
    float* coarse_dis) {
    faiss_gmm::SearchParametersIVFGMM params;
    params.nprobe = nprobe;
    params.probe_order = order;
    params.posterior_mass = mass;
    index.coarse_assign(n, x, params, assign, coarse_dis);
}

std::vector<idx_t>
nearest_means(const IndexIVFGMM& index, const std::vector<float>& x) {
    const idx_t n = idx_t(x.size() / index.d);
    std::vector<float> dis(n);
    std::vector<idx_t> nearest(n);
    index.quantizer->search(n, x.data(), 1, dis.data(), nearest.data());
    return nearest;
}

/// Tempered posteriors of all components, from one row of log-joints.
std::vector<double>
tempered_posteriors(const float* log_joint, int k, double temperature) {
    const double top = *std::max_element(log_joint, log_joint + k);
    std::vector<double> p(k);
    double sum = 0;
    for (int j = 0; j < k; j++) {
        p[j] = std::exp((log_joint[j] - top) / temperature);
        sum += p[j];
    }
    for (double& v : p) {
        v /= sum;
    }
    return p;
}

TEST_F(Fixture, PosteriorSpillInvariants) {
    std::vector<float> log_joint(size_t(nb) * kNlist);
    model.log_joint(nb, xb.data(), log_joint.data());
    for (bool nearest_primary : {true, false}) {
        for (float temperature : {1.0f, 4.0f}) {
            for (int max_assign : {1, 2, 3}) {
                SpillParameters spill;
                spill.rule = SpillRule::Posterior;
                spill.tau = 0.05f;
                spill.temperature = temperature;
                spill.max_assign = max_assign;
                spill.primary_is_nearest_mean = nearest_primary;
                auto index = make_index(spill);
                index->add(nb, xb.data());
                ASSERT_EQ(index->ntotal, nb);
                expect_records_consistent(*index);
                EXPECT_GE(index->replication_factor(), 1.0);
                EXPECT_LE(index->replication_factor(), double(max_assign));

                std::vector<idx_t> assigned(size_t(nb) * max_assign);
                index->assign_lists(nb, xb.data(), assigned.data());
                const auto where = lists_of_ids(*index);
                const auto nearest = nearest_means(*index, xb);
                std::vector<float> post(nb);
                std::vector<idx_t> argmax(nb);
                model.top_posteriors(
                    nb, xb.data(), 1, post.data(), argmax.data(), 1.0f);
                for (idx_t i = 0; i < nb; i++) {
                    const auto& lists = where.at(i);
                    ASSERT_GE(lists.size(), 1u);
                    ASSERT_LE(lists.size(), size_t(max_assign));
                    const idx_t primary =
                        nearest_primary ? nearest[i] : argmax[i];
                    EXPECT_EQ(assigned[i * max_assign], primary);
                    EXPECT_NE(
                        std::find(lists.begin(), lists.end(), primary),
                        lists.end());
                    const auto p = tempered_posteriors(
                        log_joint.data() + i * kNlist, kNlist, temperature);
                    for (idx_t l : lists) {
                        if (l != primary) {
                            EXPECT_GE(p[l], spill.tau * 0.999);
                        }
                    }
                    std::set<idx_t> listed(lists.begin(), lists.end());
                    std::set<idx_t> from_assign;
                    for (int a = 0; a < max_assign; a++) {
                        if (assigned[i * max_assign + a] >= 0) {
                            from_assign.insert(assigned[i * max_assign + a]);
                        }
                    }
                    EXPECT_EQ(listed, from_assign);
                }
            }
        }
    }
}

TEST_F(Fixture, PosteriorSpillActuallySpillsAndTauOneDoesNot) {
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.temperature = 4.0f;
    spill.tau = 0.02f;
    spill.max_assign = 3;
    auto spilled = make_index(spill);
    spilled->add(nb, xb.data());
    EXPECT_GT(spilled->replication_factor(), 1.05);
    EXPECT_EQ(spilled->spill_records.width, 2);

    spill.tau = 1.0f;
    auto none = make_index(spill);
    none->add(nb, xb.data());
    EXPECT_EQ(none->nentries(), size_t(nb));
    EXPECT_DOUBLE_EQ(none->replication_factor(), 1.0);
}

TEST_F(Fixture, NoneClosureSoarInvariants) {
    const auto nearest = nearest_means(*make_index(), xb);
    std::vector<float> post(nb);
    std::vector<idx_t> argmax(nb);
    model.top_posteriors(nb, xb.data(), 1, post.data(), argmax.data(), 1.0f);
    size_t primaries_differ = 0;
    for (bool nearest_primary : {true, false}) {
        SpillParameters spill;
        spill.rule = SpillRule::None;
        spill.max_assign = 3; // ignored: one list per vector
        spill.primary_is_nearest_mean = nearest_primary;
        auto index = make_index(spill);
        index->add(nb, xb.data());
        expect_records_consistent(*index);
        EXPECT_EQ(index->nentries(), size_t(nb));
        const auto where = lists_of_ids(*index);
        for (idx_t i = 0; i < nb; i++) {
            const idx_t primary = nearest_primary ? nearest[i] : argmax[i];
            ASSERT_EQ(where.at(i), std::vector<idx_t>{primary});
            primaries_differ += nearest[i] != argmax[i];
        }
    }
    // the hand-made variances differ, so the two primaries do too
    EXPECT_GT(primaries_differ, 0u);
    {
        SpillParameters spill;
        spill.rule = SpillRule::Closure;
        spill.closure_ratio = 1.3f;
        spill.max_assign = 3;
        auto index = make_index(spill);
        index->add(nb, xb.data());
        expect_records_consistent(*index);
        EXPECT_GT(index->replication_factor(), 1.0);
        const auto where = lists_of_ids(*index);
        std::vector<float> dis(size_t(nb) * kNlist);
        std::vector<idx_t> ids(size_t(nb) * kNlist);
        index->quantizer->search(nb, xb.data(), kNlist, dis.data(), ids.data());
        for (idx_t i = 0; i < nb; i++) {
            const auto& lists = where.at(i);
            ASSERT_LE(lists.size(), 3u);
            EXPECT_NE(
                std::find(lists.begin(), lists.end(), nearest[i]), lists.end());
            // exactly the top lists by L2 within the ratio, up to 3
            std::set<idx_t> expected;
            for (int t = 0; t < 3; t++) {
                if (t == 0 || dis[i * kNlist + t] <= 1.3f * dis[i * kNlist]) {
                    expected.insert(ids[i * kNlist + t]);
                } else {
                    break;
                }
            }
            EXPECT_EQ(std::set<idx_t>(lists.begin(), lists.end()), expected);
        }
    }
    for (SpillRule rule : {SpillRule::Soar, SpillRule::Rair}) {
        SCOPED_TRACE(faiss_gmm::spill_rule_name(rule));
        SpillParameters spill;
        spill.rule = rule;
        spill.soar_lambda = 1.0f;
        spill.rair_lambda = 0.5f;
        spill.max_assign = 2;
        auto index = make_index(spill);
        index->add(nb, xb.data());
        expect_records_consistent(*index);
        EXPECT_DOUBLE_EQ(index->replication_factor(), 2.0);
        const auto where = lists_of_ids(*index);
        const int ncand = 16;
        std::vector<float> dis(size_t(nb) * ncand);
        std::vector<idx_t> ids(size_t(nb) * ncand);
        index->quantizer->search(nb, xb.data(), ncand, dis.data(), ids.data());
        for (idx_t i = 0; i < nb; i++) {
            const auto& lists = where.at(i);
            ASSERT_EQ(lists.size(), 2u);
            const idx_t primary = nearest[i];
            const idx_t secondary = lists[0] == primary ? lists[1] : lists[0];
            ASSERT_TRUE(lists[0] == primary || lists[1] == primary);
            // the secondary minimises the rule's loss among the candidates
            const float* xi = xb.data() + i * kDim;
            auto loss = [&](idx_t j) {
                const float* m1 = model.means.data() + primary * kDim;
                const float* mj = model.means.data() + j * kDim;
                double r2 = 0, rj2 = 0, dot = 0;
                for (int c = 0; c < kDim; c++) {
                    r2 += (xi[c] - m1[c]) * (xi[c] - m1[c]);
                    rj2 += (xi[c] - mj[c]) * (xi[c] - mj[c]);
                    dot += (xi[c] - m1[c]) * (xi[c] - mj[c]);
                }
                return rule == SpillRule::Soar ? rj2 + dot * dot / r2
                                               : rj2 + 0.5 * dot;
            };
            const double chosen = loss(secondary);
            for (int t = 1; t < ncand; t++) {
                EXPECT_LE(chosen, loss(ids[i * ncand + t]) * (1 + 1e-4) + 1e-4);
            }
        }
    }
}

TEST_F(Fixture, FullProbeEqualsBruteForce) {
    const int k = 10;
    std::vector<float> dref;
    std::vector<idx_t> iref;
    brute_force(k, &dref, &iref);

    for (SpillRule rule :
         {SpillRule::None,
          SpillRule::Posterior,
          SpillRule::Closure,
          SpillRule::Soar,
          SpillRule::Rair}) {
        for (ProbeOrder order : {ProbeOrder::L2, ProbeOrder::Posterior}) {
            SpillParameters spill;
            spill.rule = rule;
            spill.max_assign = 3;
            spill.temperature = 4.0f;
            auto index = make_index(spill);
            index->add(nb, xb.data());
            index->nprobe = kNlist;
            index->search_options.probe_order = order;
            std::vector<float> dis(nq * k);
            std::vector<idx_t> ids(nq * k);
            index->search(nq, xq.data(), k, dis.data(), ids.data());
            EXPECT_EQ(ids, iref) << faiss_gmm::spill_rule_name(rule);
            EXPECT_EQ(dis, dref) << faiss_gmm::spill_rule_name(rule);
        }
    }
}

TEST_F(Fixture, DefaultSearchPrunesListsAndKeepsTheNeighbours) {
    // the library default prunes (IVFGMMSearchOptions::prune_margin);
    // probing every list it still finds nearly all true neighbours, each
    // once, and prune_margin = 0 gives back the exact scan
    EXPECT_FLOAT_EQ(faiss_gmm::IVFGMMSearchOptions().prune_margin, 0.4f);
    const int k = 10;
    std::vector<float> dref;
    std::vector<idx_t> iref;
    brute_force(k, &dref, &iref);
    IndexIVFGMM index(kDim, kNlist);
    index.set_gmm(model);
    index.add(nb, xb.data());
    index.nprobe = kNlist;
    std::vector<float> dis(nq * k);
    std::vector<idx_t> ids(nq * k);
    faiss_gmm::indexIVFGMM_stats.reset();
    index.search(nq, xq.data(), k, dis.data(), ids.data());
    EXPECT_GT(faiss_gmm::indexIVFGMM_stats.nlists_pruned, 0u);
    size_t found = 0;
    for (int q = 0; q < nq; q++) {
        std::set<idx_t> truth(iref.begin() + q * k, iref.begin() + (q + 1) * k);
        std::set<idx_t> seen;
        for (int j = 0; j < k; j++) {
            const idx_t id = ids[q * k + j];
            EXPECT_TRUE(seen.insert(id).second) << "query " << q;
            found += truth.count(id);
        }
    }
    EXPECT_GE(double(found), 0.95 * nq * k);
    index.set_search_parameters("prune_margin=0");
    index.search(nq, xq.data(), k, dis.data(), ids.data());
    EXPECT_EQ(ids, iref);
    EXPECT_EQ(dis, dref);
}

TEST_F(Fixture, ResultsNeverRepeatAnId) {
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.temperature = 8.0f;
    spill.tau = 0.01f;
    spill.max_assign = 4;
    auto index = make_index(spill);
    index->add(nb, xb.data());
    ASSERT_GT(index->replication_factor(), 1.2);
    const int k = 50;
    for (size_t nprobe : {1, 2, 4, 8, 32}) {
        faiss_gmm::SearchParametersIVFGMM params;
        params.nprobe = nprobe;
        std::vector<float> dis(nq * k);
        std::vector<idx_t> ids(nq * k);
        index->search(nq, xq.data(), k, dis.data(), ids.data(), &params);
        for (int q = 0; q < nq; q++) {
            std::set<idx_t> seen;
            for (int r = 0; r < k; r++) {
                const idx_t id = ids[q * k + r];
                if (id >= 0) {
                    EXPECT_TRUE(seen.insert(id).second)
                        << "id " << id << " twice, nprobe " << nprobe;
                }
                if (r > 0) {
                    EXPECT_LE(dis[q * k + r - 1], dis[q * k + r]);
                }
            }
        }
    }
}

TEST_F(Fixture, CountersAreExact) {
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.temperature = 4.0f;
    spill.tau = 0.02f;
    spill.max_assign = 3;
    auto index = make_index(spill);
    index->add(nb, xb.data());
    const size_t nprobe = 5;
    index->nprobe = nprobe;

    // expected counts from the probed lists' contents
    std::vector<float> cdis(nq * nprobe);
    std::vector<idx_t> probed(nq * nprobe);
    index->quantizer->search(nq, xq.data(), nprobe, cdis.data(), probed.data());
    size_t unique = 0, entries = 0, nonempty = 0;
    for (int q = 0; q < nq; q++) {
        std::set<idx_t> ids;
        for (size_t r = 0; r < nprobe; r++) {
            const idx_t l = probed[q * nprobe + r];
            const size_t size = index->invlists->list_size(l);
            const idx_t* lid = index->invlists->get_ids(l);
            ids.insert(lid, lid + size);
            entries += size;
            nonempty += size > 0;
        }
        unique += ids.size();
    }

    faiss_gmm::indexIVFGMM_stats.reset();
    faiss::indexIVF_stats.reset();
    const int k = 5;
    std::vector<float> dis(nq * k);
    std::vector<idx_t> labels(nq * k);
    index->search(nq, xq.data(), k, dis.data(), labels.data());
    const auto& s = faiss_gmm::indexIVFGMM_stats;
    EXPECT_EQ(s.nq, size_t(nq));
    EXPECT_EQ(s.ncoarse_distances, size_t(nq) * kNlist);
    EXPECT_EQ(s.nfine_distances, unique);
    EXPECT_EQ(s.nentries_scanned, entries);
    EXPECT_EQ(s.nduplicates_skipped, entries - unique);
    EXPECT_EQ(s.nlists_probed, nonempty);
    EXPECT_GT(s.nduplicates_skipped, 0u);
    EXPECT_EQ(faiss::indexIVF_stats.nq, size_t(nq));
    EXPECT_EQ(faiss::indexIVF_stats.ndis, unique);
    EXPECT_EQ(faiss::indexIVF_stats.nlist, nonempty);

    // the posterior probe order costs the same coarse distances
    faiss_gmm::indexIVFGMM_stats.reset();
    index->search_options.probe_order = ProbeOrder::Posterior;
    index->search(nq, xq.data(), k, dis.data(), labels.data());
    EXPECT_EQ(s.ncoarse_distances, size_t(nq) * kNlist);
    EXPECT_EQ(s.nfine_distances + s.nduplicates_skipped, s.nentries_scanned);
}

TEST_F(Fixture, PosteriorProbeOrderFollowsLogJoint) {
    auto index = make_index();
    const size_t nprobe = 6;
    std::vector<idx_t> assign(nq * nprobe);
    std::vector<float> coarse(nq * nprobe);
    coarse_assign(
        *index,
        nq,
        xq.data(),
        nprobe,
        ProbeOrder::Posterior,
        0.0f,
        assign.data(),
        coarse.data());
    std::vector<float> lj(size_t(nq) * kNlist);
    model.log_joint(nq, xq.data(), lj.data());
    for (int q = 0; q < nq; q++) {
        std::vector<int> order(kNlist);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int a, int b) {
            return lj[q * kNlist + a] > lj[q * kNlist + b];
        });
        for (size_t r = 0; r < nprobe; r++) {
            EXPECT_EQ(assign[q * nprobe + r], order[r]);
        }
    }
}

TEST_F(Fixture, AdaptiveProbingNeverExceedsNprobe) {
    auto index = make_index();
    index->add(nb, xb.data());
    const int k = 10;
    std::vector<float> dis(nq * k);
    std::vector<idx_t> labels(nq * k);
    for (ProbeOrder order : {ProbeOrder::L2, ProbeOrder::Posterior}) {
        for (float mass : {0.1f, 0.5f, 0.9f, 0.999f, 1.0f}) {
            faiss_gmm::SearchParametersIVFGMM params;
            params.nprobe = 4;
            params.probe_order = order;
            params.posterior_mass = mass;
            faiss_gmm::indexIVFGMM_stats.reset();
            index->search(nq, xq.data(), k, dis.data(), labels.data(), &params);
            EXPECT_LE(
                faiss_gmm::indexIVFGMM_stats.nlists_probed, size_t(nq) * 4);
            EXPECT_GE(faiss_gmm::indexIVFGMM_stats.nlists_probed, size_t(nq));

            std::vector<idx_t> assign(nq * 4);
            std::vector<float> coarse(nq * 4);
            coarse_assign(
                *index,
                nq,
                xq.data(),
                4,
                order,
                mass,
                assign.data(),
                coarse.data());
            std::vector<float> lj(size_t(nq) * kNlist);
            model.log_joint(nq, xq.data(), lj.data());
            for (int q = 0; q < nq; q++) {
                // probed lists form a prefix; the mass before the last one
                // was still below the target
                const float* row = lj.data() + q * kNlist;
                const float top = *std::max_element(row, row + kNlist);
                double z = 0;
                for (int j = 0; j < kNlist; j++) {
                    z += std::exp(double(row[j]) - top);
                }
                int nprobed = 0;
                double before_last = 0, total = 0;
                for (int r = 0; r < 4; r++) {
                    const idx_t l = assign[q * 4 + r];
                    if (l < 0) {
                        for (int r2 = r; r2 < 4; r2++) {
                            ASSERT_LT(assign[q * 4 + r2], 0);
                        }
                        break;
                    }
                    nprobed++;
                    before_last = total;
                    total += std::exp(double(row[l]) - top) / z;
                }
                ASSERT_GE(nprobed, 1);
                EXPECT_LT(before_last, mass + 1e-6);
                if (nprobed < 4) {
                    EXPECT_GE(total, mass - 1e-5);
                }
            }
        }
    }
}

/// Runs one search; returns the counters it added.
faiss_gmm::IndexIVFGMMStats counted_search(
    const IndexIVFGMM& index,
    int n,
    const float* x,
    int k,
    const faiss_gmm::SearchParametersIVFGMM& params,
    std::vector<float>* dis,
    std::vector<idx_t>* labels) {
    dis->resize(size_t(n) * k);
    labels->resize(size_t(n) * k);
    faiss_gmm::indexIVFGMM_stats.reset();
    index.search(n, x, k, dis->data(), labels->data(), &params);
    return faiss_gmm::indexIVFGMM_stats;
}

TEST_F(Fixture, DistanceRatioProbesAPrefixWithinTheRatio) {
    auto index = make_index();
    index->add(nb, xb.data());
    const size_t nprobe = 8;
    std::vector<float> all_dis(nq * kNlist);
    std::vector<idx_t> all_lists(nq * kNlist);
    index->quantizer->search(
        nq, xq.data(), kNlist, all_dis.data(), all_lists.data());
    for (float ratio : {1.0f, 1.1f, 1.3f, 2.0f, 1e30f}) {
        SCOPED_TRACE(ratio);
        faiss_gmm::SearchParametersIVFGMM params;
        params.nprobe = nprobe;
        params.distance_ratio = ratio;
        params.prune_margin = 0; // the lists the ratio keeps, all scanned
        std::vector<idx_t> assign(nq * nprobe);
        std::vector<float> coarse(nq * nprobe);
        index->coarse_assign(
            nq, xq.data(), params, assign.data(), coarse.data());
        size_t expected_lists = 0;
        for (int q = 0; q < nq; q++) {
            const float d1 = all_dis[q * kNlist];
            for (size_t r = 0; r < nprobe; r++) {
                // the nearest list always, then exactly those in the ratio
                const bool kept =
                    r == 0 || all_dis[q * kNlist + r] <= ratio * d1;
                EXPECT_EQ(
                    assign[q * nprobe + r],
                    kept ? all_lists[q * kNlist + r] : idx_t(-1));
                expected_lists += kept && index->invlists->list_size(
                                              all_lists[q * kNlist + r]) > 0;
            }
        }
        std::vector<float> dis;
        std::vector<idx_t> labels;
        const auto s =
            counted_search(*index, nq, xq.data(), 10, params, &dis, &labels);
        EXPECT_EQ(s.nlists_probed, expected_lists);
        EXPECT_LE(s.nlists_probed, size_t(nq) * nprobe);
        EXPECT_EQ(s.ncoarse_distances, size_t(nq) * kNlist);
        EXPECT_EQ(
            s.nfine_distances + s.nduplicates_skipped, s.nentries_scanned);
    }

    // a huge ratio is fixed nprobe, to the bit and to the counter (an
    // infinite one is refused, as every non-finite parameter)
    faiss_gmm::SearchParametersIVFGMM fixed, unbounded;
    fixed.nprobe = unbounded.nprobe = nprobe;
    unbounded.distance_ratio = 1e30f;
    std::vector<float> d1, d2;
    std::vector<idx_t> l1, l2;
    const auto s1 = counted_search(*index, nq, xq.data(), 10, fixed, &d1, &l1);
    const auto s2 =
        counted_search(*index, nq, xq.data(), 10, unbounded, &d2, &l2);
    EXPECT_EQ(d1, d2);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(s1.nfine_distances, s2.nfine_distances);
    EXPECT_EQ(s1.nlists_probed, s2.nlists_probed);
}

TEST_F(Fixture, TemperedPosteriorMassFollowsItsDefinition) {
    auto index = make_index();
    index->add(nb, xb.data());
    const size_t nprobe = kNlist;
    std::vector<float> lj(size_t(nq) * kNlist);
    model.log_joint(nq, xq.data(), lj.data());
    for (float temperature : {1.0f, 4.0f, 30.0f, 1e6f}) {
        for (float mass : {0.3f, 0.6f, 0.9f}) {
            SCOPED_TRACE(
                testing::Message() << "T " << temperature << " mass " << mass);
            faiss_gmm::SearchParametersIVFGMM params;
            params.nprobe = nprobe;
            params.posterior_mass = mass;
            params.mass_temperature = temperature;
            std::vector<idx_t> assign(nq * nprobe);
            std::vector<float> coarse(nq * nprobe);
            index->coarse_assign(
                nq, xq.data(), params, assign.data(), coarse.data());
            for (int q = 0; q < nq; q++) {
                const float* row = lj.data() + q * kNlist;
                const float top = *std::max_element(row, row + kNlist);
                double z = 0;
                for (int j = 0; j < kNlist; j++) {
                    z += std::exp((double(row[j]) - top) / temperature);
                }
                double before_last = 0, total = 0;
                size_t nprobed = 0;
                for (size_t r = 0; r < nprobe; r++) {
                    const idx_t l = assign[q * nprobe + r];
                    if (l < 0) {
                        continue;
                    }
                    EXPECT_EQ(r, nprobed) << "probed lists are not a prefix";
                    nprobed++;
                    before_last = total;
                    total += std::exp((double(row[l]) - top) / temperature) / z;
                }
                EXPECT_GE(total, mass - 1e-5);
                EXPECT_LT(before_last, mass + 1e-5);
                if (temperature >= 1e6f) {
                    // a flat posterior: the mass is the share of lists
                    EXPECT_NEAR(double(nprobed), std::ceil(mass * kNlist), 1.0);
                }
            }
        }
    }
}

TEST_F(Fixture, BisectorPruningIsExactAtMarginOneAndCountsItsDistances) {
    SpillParameters no_spill;
    no_spill.rule = SpillRule::None;
    no_spill.primary_is_nearest_mean = true; // lists are Voronoi cells
    auto index = make_index(no_spill);
    index->add(nb, xb.data());
    const int k = 10;
    for (size_t nprobe : {size_t(4), size_t(12), size_t(kNlist)}) {
        SCOPED_TRACE(nprobe);
        faiss_gmm::SearchParametersIVFGMM fixed, pruned;
        fixed.nprobe = pruned.nprobe = nprobe;
        fixed.prune_margin = 0;
        pruned.prune_margin = 1.0f;
        std::vector<float> d1, d2;
        std::vector<idx_t> l1, l2;
        const auto s1 =
            counted_search(*index, nq, xq.data(), k, fixed, &d1, &l1);
        const auto s2 =
            counted_search(*index, nq, xq.data(), k, pruned, &d2, &l2);
        // no vector of a pruned cell could enter the top k
        for (size_t i = 0; i < d1.size(); i++) {
            EXPECT_NEAR(d1[i], d2[i], 1e-4f * (1 + d1[i])) << "rank " << i;
        }
        EXPECT_EQ(
            s2.ncoarse_distances, size_t(nq) * kNlist + s2.nbound_distances);
        EXPECT_LE(s2.nlists_probed + s2.nlists_pruned, size_t(nq) * nprobe);
        EXPECT_LE(s2.nfine_distances, s1.nfine_distances);
        EXPECT_EQ(
            s2.nfine_distances + s2.nduplicates_skipped, s2.nentries_scanned);
        if (nprobe == size_t(kNlist)) {
            EXPECT_GT(s2.nlists_pruned, 0u) << "nothing pruned at full probe";
        }
    }

    // any margin: counters add up, ids stay unique; infinite prunes nothing
    auto spilled = make_index();
    spilled->add(nb, xb.data());
    for (float margin : {0.1f, 0.3f, 0.6f, 1.0f}) {
        faiss_gmm::SearchParametersIVFGMM params;
        params.nprobe = 16;
        params.prune_margin = margin;
        std::vector<float> dis;
        std::vector<idx_t> labels;
        const auto s =
            counted_search(*spilled, nq, xq.data(), k, params, &dis, &labels);
        EXPECT_EQ(
            s.ncoarse_distances, size_t(nq) * kNlist + s.nbound_distances);
        EXPECT_LE(s.nlists_probed + s.nlists_pruned, size_t(nq) * 16);
        EXPECT_GE(s.nlists_probed, size_t(nq));
        for (int q = 0; q < nq; q++) {
            std::set<idx_t> seen;
            for (int r = 0; r < k; r++) {
                const idx_t id = labels[q * k + r];
                EXPECT_TRUE(id < 0 || seen.insert(id).second);
            }
        }
    }
    faiss_gmm::SearchParametersIVFGMM fixed, unbounded;
    fixed.nprobe = unbounded.nprobe = 16;
    fixed.prune_margin = 0;
    unbounded.prune_margin = 1e30f;
    std::vector<float> d1, d2;
    std::vector<idx_t> l1, l2;
    const auto s1 = counted_search(*spilled, nq, xq.data(), k, fixed, &d1, &l1);
    const auto s2 =
        counted_search(*spilled, nq, xq.data(), k, unbounded, &d2, &l2);
    EXPECT_EQ(d1, d2);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(s1.nfine_distances, s2.nfine_distances);
    EXPECT_EQ(s2.nlists_pruned, 0u);

    // range search: the radius bounds the distances; margin 1 is exact.
    // Base points as queries: the radius then is a near-neighbour one.
    const float* xr = xb.data();
    std::vector<float> dr;
    std::vector<idx_t> lr;
    counted_search(*index, nq, xr, k, fixed, &dr, &lr);
    std::vector<float> mid_ranks;
    for (int q = 0; q < nq; q++) {
        mid_ranks.push_back(dr[q * k + k / 2]);
    }
    std::sort(mid_ranks.begin(), mid_ranks.end());
    const float radius = mid_ranks[nq / 2];
    faiss::RangeSearchResult plain(nq), with_pruning(nq);
    index->nprobe = kNlist;
    index->range_search(nq, xr, radius, &plain);
    index->search_options.prune_margin = 1.0f;
    faiss_gmm::indexIVFGMM_stats.reset();
    index->range_search(nq, xr, radius, &with_pruning);
    EXPECT_GT(faiss_gmm::indexIVFGMM_stats.nlists_pruned, 0u);
    EXPECT_GT(plain.lims[nq], size_t(nq)) << "radius too small to test";
    for (int q = 0; q < nq; q++) {
        std::set<idx_t> a(
            plain.labels + plain.lims[q], plain.labels + plain.lims[q + 1]);
        std::set<idx_t> b(
            with_pruning.labels + with_pruning.lims[q],
            with_pruning.labels + with_pruning.lims[q + 1]);
        EXPECT_EQ(a, b) << "query " << q;
    }
}

TEST_F(Fixture, ExpectedHitsPruningStopsOnceTheHeapIsFull) {
    SpillParameters no_spill;
    no_spill.rule = SpillRule::None;
    auto index = make_index(no_spill);
    index->add(nb, xb.data());
    const int k = 10;
    const size_t nprobe = 12;
    std::vector<float> cdis(nq * nprobe);
    std::vector<idx_t> lists(nq * nprobe);
    index->quantizer->search(nq, xq.data(), nprobe, cdis.data(), lists.data());
    // an unreachable target prunes every list once k results are held:
    // the probed lists are the shortest L2-order prefix holding k vectors
    size_t expected_fine = 0, expected_lists = 0;
    for (int q = 0; q < nq; q++) {
        size_t held = 0;
        for (size_t r = 0; r < nprobe && held < size_t(k); r++) {
            const size_t size =
                index->invlists->list_size(lists[q * nprobe + r]);
            held += size;
            expected_lists += size > 0;
        }
        expected_fine += held;
    }
    faiss_gmm::SearchParametersIVFGMM params;
    params.nprobe = nprobe;
    params.min_expected_hits = 1e30f;
    std::vector<float> dis;
    std::vector<idx_t> labels;
    auto s = counted_search(*index, nq, xq.data(), k, params, &dis, &labels);
    EXPECT_EQ(s.nfine_distances, expected_fine);
    EXPECT_EQ(s.nlists_probed, expected_lists);
    EXPECT_EQ(s.ncoarse_distances, size_t(nq) * kNlist);
    EXPECT_EQ(s.nbound_distances, 0u);
    EXPECT_LE(s.nlists_probed + s.nlists_pruned, size_t(nq) * nprobe);

    // a spilled index: counters add up for any target, ids stay unique
    auto spilled = make_index();
    spilled->add(nb, xb.data());
    for (float hits : {0.001f, 0.1f, 1.0f}) {
        params.min_expected_hits = hits;
        s = counted_search(*spilled, nq, xq.data(), k, params, &dis, &labels);
        EXPECT_LE(s.nlists_probed + s.nlists_pruned, size_t(nq) * nprobe);
        EXPECT_GE(s.nlists_probed, size_t(nq));
        EXPECT_EQ(
            s.nfine_distances + s.nduplicates_skipped, s.nentries_scanned);
        for (int q = 0; q < nq; q++) {
            std::set<idx_t> seen;
            for (int r = 0; r < k; r++) {
                const idx_t id = labels[q * k + r];
                EXPECT_TRUE(id < 0 || seen.insert(id).second);
            }
        }
    }
}

TEST_F(Fixture, AdaptiveProbingParametersAreValidated) {
    auto index = make_index();
    index->add(nb, xb.data());
    index->set_search_parameters(
        "mass_temperature=20,distance_ratio=1.5,prune_margin=0.3");
    EXPECT_FLOAT_EQ(index->search_options.mass_temperature, 20.0f);
    EXPECT_FLOAT_EQ(index->search_options.distance_ratio, 1.5f);
    EXPECT_FLOAT_EQ(index->search_options.prune_margin, 0.3f);
    for (const char* bad :
         {"min_expected_hits=-0.5",
          "mass_temperature=0",
          "distance_ratio=0.5",
          "prune_margin=-1",
          "distance_ratio=x"}) {
        EXPECT_THROW(index->set_search_parameters(bad), faiss::FaissException)
            << bad;
    }
    // the distance rules need L2 distances to the means
    EXPECT_THROW(
        index->set_search_parameters("probe=posterior"), faiss::FaissException);
    EXPECT_EQ(index->search_options.probe_order, ProbeOrder::L2);
    EXPECT_FLOAT_EQ(index->search_options.distance_ratio, 1.5f)
        << "changed by a bad call";
    std::vector<float> dis(nq * 5);
    std::vector<idx_t> labels(nq * 5);
    // the distance rules need L2 distances to the means
    faiss_gmm::SearchParametersIVFGMM params;
    params.probe_order = ProbeOrder::Posterior;
    params.distance_ratio = 1.5f;
    EXPECT_THROW(
        index->search(nq, xq.data(), 5, dis.data(), labels.data(), &params),
        faiss::FaissException);
    // the pruning rules are not applied in posterior order (the library
    // default prunes, and probe=posterior alone must keep working)
    params.distance_ratio = 0;
    params.prune_margin = 0;
    params.min_expected_hits = 0;
    std::vector<float> plain_dis(nq * 5);
    std::vector<idx_t> plain_labels(nq * 5);
    index->search(
        nq, xq.data(), 5, plain_dis.data(), plain_labels.data(), &params);
    params.prune_margin = 0.5f;
    params.min_expected_hits = 0.1f;
    index->search(nq, xq.data(), 5, dis.data(), labels.data(), &params);
    EXPECT_EQ(labels, plain_labels);
    EXPECT_EQ(dis, plain_dis);
    params.prune_margin = 0;
    params.min_expected_hits = 0;
    params.mass_temperature = -1;
    EXPECT_THROW(
        index->search(nq, xq.data(), 5, dis.data(), labels.data(), &params),
        faiss::FaissException);
    // index defaults apply to plain SearchParametersIVF
    faiss::SearchParametersIVF plain;
    plain.nprobe = 8;
    faiss_gmm::indexIVFGMM_stats.reset();
    index->search(nq, xq.data(), 5, dis.data(), labels.data(), &plain);
    EXPECT_GT(faiss_gmm::indexIVFGMM_stats.nlists_pruned, 0u);
}

TEST_F(Fixture, RangeSearchDeduplicatedMatchesBruteForce) {
    SpillParameters spill;
    spill.rule = SpillRule::Closure;
    spill.closure_ratio = 1.5f;
    spill.max_assign = 3;
    auto index = make_index(spill);
    index->add(nb, xb.data());
    ASSERT_GT(index->replication_factor(), 1.1);
    index->nprobe = kNlist;
    faiss::IndexFlatL2 flat(kDim);
    flat.add(nb, xb.data());

    // a radius that catches a few dozen neighbours per query
    std::vector<float> dis(nq * 30);
    std::vector<idx_t> ids(nq * 30);
    flat.search(nq, xq.data(), 30, dis.data(), ids.data());
    const float radius = dis[29];

    faiss::RangeSearchResult mine(nq), ref(nq);
    index->range_search(nq, xq.data(), radius, &mine);
    flat.range_search(nq, xq.data(), radius, &ref);
    size_t total = 0;
    for (int q = 0; q < nq; q++) {
        std::map<idx_t, float> a, b;
        for (size_t j = mine.lims[q]; j < mine.lims[q + 1]; j++) {
            EXPECT_TRUE(a.emplace(mine.labels[j], mine.distances[j]).second)
                << "id " << mine.labels[j] << " twice";
        }
        for (size_t j = ref.lims[q]; j < ref.lims[q + 1]; j++) {
            b.emplace(ref.labels[j], ref.distances[j]);
        }
        EXPECT_EQ(a, b) << "query " << q;
        total += a.size();
    }
    EXPECT_GT(total, 0u);
}

TEST_F(Fixture, RemoveIdsRemovesEveryCopy) {
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.temperature = 4.0f;
    spill.max_assign = 3;
    auto index = make_index(spill);
    index->add(nb, xb.data());
    const size_t entries_before = index->nentries();

    // remove every third id
    std::vector<idx_t> to_remove;
    for (idx_t i = 0; i < nb; i += 3) {
        to_remove.push_back(i);
    }
    const auto where = lists_of_ids(*index);
    size_t removed_entries = 0;
    for (idx_t id : to_remove) {
        removed_entries += where.at(id).size();
    }
    faiss::IDSelectorBatch sel(to_remove.size(), to_remove.data());
    EXPECT_EQ(index->remove_ids(sel), to_remove.size());
    EXPECT_EQ(size_t(index->ntotal), nb - to_remove.size());
    EXPECT_EQ(index->nentries(), entries_before - removed_entries);
    expect_records_consistent(*index);
    const auto after = lists_of_ids(*index);
    for (idx_t id : to_remove) {
        EXPECT_EQ(after.count(id), 0u);
    }
    // removing them again removes nothing
    EXPECT_EQ(index->remove_ids(sel), 0u);

    // the rest is still searchable exactly
    std::vector<float> kept;
    std::vector<idx_t> kept_ids;
    for (idx_t i = 0; i < nb; i++) {
        if (i % 3 != 0) {
            kept.insert(
                kept.end(), xb.data() + i * kDim, xb.data() + (i + 1) * kDim);
            kept_ids.push_back(i);
        }
    }
    faiss::IndexFlatL2 flat(kDim);
    flat.add(idx_t(kept_ids.size()), kept.data());
    const int k = 8;
    std::vector<float> dref(nq * k), dis(nq * k);
    std::vector<idx_t> iref(nq * k), ids(nq * k);
    flat.search(nq, xq.data(), k, dref.data(), iref.data());
    index->nprobe = kNlist;
    index->search(nq, xq.data(), k, dis.data(), ids.data());
    for (int j = 0; j < nq * k; j++) {
        EXPECT_EQ(ids[j], kept_ids[iref[j]]);
        EXPECT_EQ(dis[j], dref[j]);
    }
}

TEST_F(Fixture, ReconstructBeforeAndAfterRemove) {
    SpillParameters spill;
    spill.rule = SpillRule::Soar;
    spill.max_assign = 2;
    auto index = make_index(spill);
    std::vector<idx_t> ids(nb);
    for (idx_t i = 0; i < nb; i++) {
        ids[i] = 1000 + 7 * i;
    }
    index->add_with_ids(nb, xb.data(), ids.data());
    std::vector<float> v(kDim);
    for (idx_t i = 0; i < nb; i += 97) {
        index->reconstruct(ids[i], v.data());
        EXPECT_EQ(
            v,
            std::vector<float>(
                xb.data() + i * kDim, xb.data() + (i + 1) * kDim));
    }
    EXPECT_THROW(index->reconstruct(5, v.data()), faiss::FaissException);

    faiss::IDSelectorRange sel(1000, 1000 + 7 * 1500);
    EXPECT_EQ(index->remove_ids(sel), 1500u);
    EXPECT_THROW(index->reconstruct(ids[10], v.data()), faiss::FaissException);
    for (idx_t i = 1500; i < nb; i++) {
        index->reconstruct(ids[i], v.data());
        ASSERT_EQ(
            v,
            std::vector<float>(
                xb.data() + i * kDim, xb.data() + (i + 1) * kDim));
    }
}

TEST_F(Fixture, SequentialIdsAndReset) {
    auto index = make_index();
    index->add(1000, xb.data());
    index->add(nb - 1000, xb.data() + 1000 * kDim);
    const auto where = lists_of_ids(*index);
    ASSERT_EQ(where.size(), size_t(nb));
    EXPECT_EQ(where.begin()->first, 0);
    EXPECT_EQ(where.rbegin()->first, nb - 1);

    index->reset();
    EXPECT_EQ(index->ntotal, 0);
    EXPECT_EQ(index->nentries(), 0u);
    EXPECT_TRUE(index->is_trained);
    EXPECT_DOUBLE_EQ(index->replication_factor(), 1.0);
    std::vector<float> dis(nq * 3);
    std::vector<idx_t> labels(nq * 3);
    index->search(nq, xq.data(), 3, dis.data(), labels.data());
    for (idx_t l : labels) {
        EXPECT_EQ(l, -1);
    }
    index->add(nb, xb.data());
    EXPECT_EQ(index->ntotal, nb);
    expect_records_consistent(*index);
}

TEST_F(Fixture, MergeFromEqualsBuildingOnTheUnion) {
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.temperature = 4.0f;
    spill.max_assign = 3;
    auto whole = make_index(spill);
    auto first = make_index(spill);
    spill.max_assign = 2; // a narrower record width must merge too
    auto second = make_index(spill);
    whole->add(nb, xb.data());
    const int half = nb / 2;
    first->add(half, xb.data());
    second->add(nb - half, xb.data() + size_t(half) * kDim);
    // second's ids restart at 0; shift them past first's
    first->merge_from(*second, half);
    EXPECT_EQ(second->ntotal, 0);
    EXPECT_EQ(second->nentries(), 0u);
    EXPECT_EQ(first->ntotal, nb);
    expect_records_consistent(*first);

    // first half identical to `whole`, second half spilled with max 2 lists
    const auto merged = lists_of_ids(*first);
    const auto reference = lists_of_ids(*whole);
    for (idx_t i = 0; i < half; i++) {
        EXPECT_EQ(merged.at(i), reference.at(i));
    }
    first->nprobe = whole->nprobe = kNlist;
    const int k = 10;
    std::vector<float> d1(nq * k), d2(nq * k);
    std::vector<idx_t> i1(nq * k), i2(nq * k);
    first->search(nq, xq.data(), k, d1.data(), i1.data());
    whole->search(nq, xq.data(), k, d2.data(), i2.data());
    EXPECT_EQ(i1, i2);
    EXPECT_EQ(d1, d2);

    // identical halves with identical spill give identical lists
    spill.max_assign = 3;
    auto a = make_index(spill);
    auto b = make_index(spill);
    a->add(half, xb.data());
    std::vector<idx_t> upper(nb - half);
    std::iota(upper.begin(), upper.end(), idx_t(half));
    b->add_with_ids(nb - half, xb.data() + size_t(half) * kDim, upper.data());
    a->merge_from(*b, 0);
    EXPECT_EQ(a->nentries(), whole->nentries());
    EXPECT_EQ(lists_of_ids(*a), reference);
}

TEST_F(Fixture, MergeFromRejectsIncompatibleIndexes) {
    auto index = make_index();
    index->add(100, xb.data());
    {
        IndexIVFGMM other(kDim, kNlist / 2);
        other.set_gmm(hand_made_model(kDim, kNlist / 2, xb));
        try {
            index->merge_from(other, 0);
            FAIL() << "merging different nlist must throw";
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(std::string(e.what()).find("nlist=16"), std::string::npos)
                << e.what();
        }
    }
    {
        std::vector<float> x8 = make_blobs(nb, 8, 12, 3);
        IndexIVFGMM other(8, kNlist);
        other.set_gmm(hand_made_model(8, kNlist, x8));
        try {
            index->merge_from(other, 0);
            FAIL() << "merging different d must throw";
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(std::string(e.what()).find("d=8"), std::string::npos)
                << e.what();
        }
    }
    {
        GaussianMixture shifted = model;
        shifted.means[5 * kDim] += 1.0f;
        IndexIVFGMM other(kDim, kNlist);
        other.set_gmm(shifted);
        try {
            index->merge_from(other, 0);
            FAIL() << "merging different means must throw";
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(
                std::string(e.what()).find("component 5"), std::string::npos)
                << e.what();
        }
    }
    faiss::IndexFlatL2 plain(kDim);
    EXPECT_THROW(index->merge_from(plain, 0), faiss::FaissException);
    EXPECT_EQ(index->ntotal, 100);
}

TEST_F(Fixture, AddCoreKeepsRecordsInSync) {
    SpillParameters spill;
    spill.max_assign = 3;
    auto index = make_index(spill);
    index->add(1000, xb.data());
    std::vector<idx_t> lists(500);
    for (idx_t i = 0; i < 500; i++) {
        lists[i] = i % kNlist;
    }
    std::vector<idx_t> ids(500);
    std::iota(ids.begin(), ids.end(), idx_t(5000));
    index->add_core(500, xb.data() + 1000 * kDim, ids.data(), lists.data());
    EXPECT_EQ(index->ntotal, 1500);
    expect_records_consistent(*index);
    const auto where = lists_of_ids(*index);
    EXPECT_EQ(where.at(5007), std::vector<idx_t>{7});
}

TEST_F(Fixture, SetParameters) {
    auto index = make_index();
    index->set_search_parameters(
        "nprobe=32,probe=posterior,posterior_mass=0.9");
    index->set_build_parameters(
        "tau=0.05,temperature=2,max_assign=3,spill=closure,closure_ratio=1.2,"
        "soar_lambda=1");
    EXPECT_EQ(index->nprobe, 32u);
    EXPECT_EQ(index->search_options.probe_order, ProbeOrder::Posterior);
    EXPECT_FLOAT_EQ(index->search_options.posterior_mass, 0.9f);
    EXPECT_FLOAT_EQ(index->build_params.spill.tau, 0.05f);
    EXPECT_FLOAT_EQ(index->build_params.spill.temperature, 2.0f);
    EXPECT_EQ(index->build_params.spill.max_assign, 3);
    EXPECT_EQ(index->build_params.spill.rule, SpillRule::Closure);
    EXPECT_FLOAT_EQ(index->build_params.spill.closure_ratio, 1.2f);
    EXPECT_FLOAT_EQ(index->build_params.spill.soar_lambda, 1.0f);
    index->set_build_parameters("spill=soar, primary=posterior");
    index->set_search_parameters(" probe=l2");
    EXPECT_EQ(index->build_params.spill.rule, SpillRule::Soar);
    EXPECT_FALSE(index->build_params.spill.primary_is_nearest_mean);

    auto expect_error = [&](const std::string& description,
                            const std::string& named) {
        const SpillParameters before = index->build_params.spill;
        const size_t nprobe_before = index->nprobe;
        try {
            if (description.find("nprobe") != std::string::npos ||
                description.find("probe=") != std::string::npos) {
                index->set_search_parameters(description);
            } else {
                index->set_build_parameters(description);
            }
            FAIL() << description << " must throw";
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(std::string(e.what()).find(named), std::string::npos)
                << e.what();
        }
        EXPECT_EQ(index->nprobe, nprobe_before) << "changed on error";
        EXPECT_EQ(index->build_params.spill.max_assign, before.max_assign);
    };
    expect_error("nprobe=8,bogus=3", "bogus");
    expect_error("nprobe=abc", "nprobe=abc");
    expect_error("nprobe=0", "nprobe=0");
    expect_error("max_assign=2,tau=1.5", "tau=1.5");
    expect_error("temperature=-1", "temperature=-1");
    expect_error("probe=sideways", "sideways");
    expect_error("spill=everywhere", "everywhere");
    expect_error("nprobe", "nprobe");
    expect_error("closure_ratio=0.5", "closure_ratio=0.5");
}

TEST_F(Fixture, SearchParametersPerCall) {
    auto index = make_index();
    index->add(nb, xb.data());
    index->nprobe = 1;
    const int k = 10;
    std::vector<float> dis(nq * k);
    std::vector<idx_t> ids(nq * k);
    faiss::SearchParametersIVF plain;
    plain.nprobe = kNlist;
    faiss_gmm::indexIVFGMM_stats.reset();
    index->search(nq, xq.data(), k, dis.data(), ids.data(), &plain);
    EXPECT_GT(faiss_gmm::indexIVFGMM_stats.nlists_probed, size_t(nq) * 8);

    faiss::SearchParameters wrong_type;
    EXPECT_THROW(
        index->search(nq, xq.data(), k, dis.data(), ids.data(), &wrong_type),
        faiss::FaissException);

    // an id selector restricts the results
    std::vector<idx_t> allowed{3, 5, 8, 13, 21};
    faiss::IDSelectorBatch sel(allowed.size(), allowed.data());
    faiss_gmm::SearchParametersIVFGMM with_sel;
    with_sel.nprobe = kNlist;
    with_sel.sel = &sel;
    index->search(nq, xq.data(), k, dis.data(), ids.data(), &with_sel);
    for (int q = 0; q < nq; q++) {
        for (int r = 0; r < k; r++) {
            const idx_t id = ids[q * k + r];
            if (r < 5) {
                EXPECT_NE(
                    std::find(allowed.begin(), allowed.end(), id),
                    allowed.end());
            } else {
                EXPECT_EQ(id, -1);
            }
        }
    }
}

TEST_F(Fixture, BadInputIsRejected) {
    EXPECT_THROW(IndexIVFGMM(0, 8), faiss::FaissException);
    EXPECT_THROW(IndexIVFGMM(8, 0), faiss::FaissException);
    {
        SpillParameters bad;
        bad.max_assign = 0;
        EXPECT_THROW(
            IndexIVFGMM(kDim, kNlist, faiss_gmm::test::build_params(bad)),
            faiss::FaissException);
    }
    IndexIVFGMM untrained(kDim, kNlist);
    EXPECT_FALSE(untrained.is_trained);
    EXPECT_THROW(untrained.add(10, xb.data()), faiss::FaissException);
    try {
        untrained.train(10, xb.data());
        FAIL() << "n < nlist must throw";
    } catch (const faiss::FaissException& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("n=10"), std::string::npos) << what;
        EXPECT_NE(what.find("nlist=32"), std::string::npos) << what;
    }
    {
        GaussianMixture wrong_d =
            hand_made_model(8, kNlist, make_blobs(500, 8, 4, 2));
        try {
            untrained.set_gmm(wrong_d);
            FAIL() << "d mismatch must throw";
        } catch (const faiss::FaissException& e) {
            EXPECT_NE(std::string(e.what()).find("d=8"), std::string::npos)
                << e.what();
        }
    }

    auto index = make_index();
    std::vector<float> bad(xb.begin(), xb.begin() + 10 * kDim);
    bad[3 * kDim + 4] = std::numeric_limits<float>::quiet_NaN();
    try {
        index->add(10, bad.data());
        FAIL() << "NaN must be rejected";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("vector 3"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(index->ntotal, 0);
    index->add(nb, xb.data());
    std::vector<float> q(xq.begin(), xq.begin() + kDim);
    q[0] = std::numeric_limits<float>::infinity();
    std::vector<float> dis(5);
    std::vector<idx_t> ids(5);
    EXPECT_THROW(
        index->search(1, q.data(), 5, dis.data(), ids.data()),
        faiss::FaissException);
    EXPECT_THROW(
        index->search(1, xq.data(), 0, dis.data(), ids.data()),
        faiss::FaissException);
    // retraining or adopting a model with vectors inside would orphan them
    EXPECT_THROW(index->set_gmm(model), faiss::FaissException);
    EXPECT_THROW(index->train(nb, xb.data()), faiss::FaissException);
#ifdef FAISS_GMM_WITH_GPU
    const bool gpu_usable = faiss_gmm::gpu::gpu_is_available(0);
#else
    const bool gpu_usable = false;
#endif
    if (!gpu_usable) {
        IndexIVFGMM gpu_only(kDim, kNlist);
        gpu_only.build_params.train_device = faiss_gmm::TrainDevice::Gpu;
        EXPECT_THROW(gpu_only.train(nb, xb.data()), faiss::FaissException);
    }
}

TEST_F(Fixture, ImbalanceFactor) {
    auto index = make_index();
    EXPECT_DOUBLE_EQ(index->imbalance_factor(), 1.0);
    index->add(nb, xb.data());
    double sum = 0, sum_sq = 0;
    for (size_t l = 0; l < kNlist; l++) {
        const double s = double(index->invlists->list_size(l));
        sum += s;
        sum_sq += s * s;
    }
    EXPECT_NEAR(index->imbalance_factor(), sum_sq * kNlist / (sum * sum), 1e-9);
    EXPECT_GE(index->imbalance_factor(), 1.0);
}

TEST_F(Fixture, TrainFitsTheModelAndLoadsTheMeans) {
    faiss_gmm::GmmParameters params;
    params.niter = 3;
    params.kmeans_niter = 5;
    IndexIVFGMM index(kDim, kNlist, faiss_gmm::test::build_params(params));
    index.build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    index.train(nb, xb.data());
    ASSERT_TRUE(index.is_trained);
    ASSERT_TRUE(index.gmm.is_trained);
    EXPECT_EQ(index.quantizer->ntotal, kNlist);
    std::vector<float> mean(kDim);
    for (int c = 0; c < kNlist; c++) {
        index.quantizer->reconstruct(c, mean.data());
        EXPECT_EQ(
            mean,
            std::vector<float>(
                index.gmm.means.begin() + c * kDim,
                index.gmm.means.begin() + (c + 1) * kDim));
    }
    index.add(nb, xb.data());
    EXPECT_EQ(index.ntotal, nb);
    expect_records_consistent(index);
}

} // namespace

/// Row i: query i's squared L2 distances to base rows 0 .. nb-1, by the
/// same fvec_L2sqr the scan uses.
static std::vector<float> direct_distance_table(
    int d, int n, const float* x, int nbase, const float* base) {
    std::vector<float> table(size_t(n) * nbase);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < nbase; j++) {
            table[size_t(i) * nbase + j] = faiss::fvec_L2sqr(
                x + size_t(i) * d, base + size_t(j) * d, size_t(d));
        }
    }
    return table;
}

TEST_F(Fixture, PrecomputedDistancesReplaceTheComputationOnly) {
    // with a table of the very distances the scan computes, every result
    // and counter is unchanged under spill, pruning and adaptive probing
    auto index = make_index();
    index->add(nb, xb.data());
    ASSERT_GT(index->replication_factor(), 1.0);
    const std::vector<float> table =
        direct_distance_table(kDim, nq, xq.data(), nb, xb.data());
    const int k = 10;
    std::vector<faiss_gmm::SearchParametersIVFGMM> settings(5);
    settings[0].nprobe = 4;
    settings[1].nprobe = kNlist;
    settings[2].nprobe = 12;
    settings[2].prune_margin = 0.4f;
    settings[3].nprobe = kNlist;
    settings[3].posterior_mass = 0.9f;
    settings[3].mass_temperature = 4;
    settings[4].nprobe = 12;
    settings[4].min_expected_hits = 0.01f;
    settings[4].distance_ratio = 2;
    for (size_t s = 0; s < settings.size(); s++) {
        SCOPED_TRACE(s);
        faiss_gmm::SearchParametersIVFGMM lookup = settings[s];
        lookup.precomputed_distances = table.data();
        std::vector<float> d1, d2;
        std::vector<idx_t> l1, l2;
        const auto s1 =
            counted_search(*index, nq, xq.data(), k, settings[s], &d1, &l1);
        const auto s2 =
            counted_search(*index, nq, xq.data(), k, lookup, &d2, &l2);
        EXPECT_EQ(l1, l2);
        EXPECT_EQ(d1, d2);
        EXPECT_EQ(s1.nfine_distances, s2.nfine_distances);
        EXPECT_EQ(s1.nentries_scanned, s2.nentries_scanned);
        EXPECT_EQ(s1.nduplicates_skipped, s2.nduplicates_skipped);
        EXPECT_EQ(s1.nlists_probed, s2.nlists_probed);
        EXPECT_EQ(s1.nlists_pruned, s2.nlists_pruned);
        EXPECT_EQ(s1.ncoarse_distances, s2.ncoarse_distances);
    }
    // the table really is what is read: a shifted table shifts the results
    std::vector<float> shifted = table;
    for (float& v : shifted) {
        v += 1.0f;
    }
    faiss_gmm::SearchParametersIVFGMM lookup;
    lookup.nprobe = 4;
    lookup.precomputed_distances = shifted.data();
    std::vector<float> d1, d2;
    std::vector<idx_t> l1, l2;
    faiss_gmm::SearchParametersIVFGMM plain;
    plain.nprobe = 4;
    counted_search(*index, nq, xq.data(), k, plain, &d1, &l1);
    counted_search(*index, nq, xq.data(), k, lookup, &d2, &l2);
    EXPECT_EQ(l1, l2);
    for (size_t i = 0; i < d1.size(); i++) {
        EXPECT_EQ(d2[i], d1[i] + 1.0f);
    }
}

TEST_F(Fixture, PrecomputedDistancesNeedIdsInRange) {
    auto index = make_index();
    // ids 1000 .. 1000 + nb - 1: not rows of a table of nb columns
    std::vector<idx_t> ids(nb);
    std::iota(ids.begin(), ids.end(), idx_t(1000));
    index->add_with_ids(nb, xb.data(), ids.data());
    const std::vector<float> table =
        direct_distance_table(kDim, nq, xq.data(), nb, xb.data());
    faiss_gmm::SearchParametersIVFGMM lookup;
    lookup.nprobe = 4;
    lookup.precomputed_distances = table.data();
    std::vector<float> dis(size_t(nq) * 10);
    std::vector<idx_t> labels(size_t(nq) * 10);
    try {
        index->search(nq, xq.data(), 10, dis.data(), labels.data(), &lookup);
        FAIL() << "ids outside [0, ntotal) must be rejected";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find("sequential ids"), std::string::npos)
            << e.what();
    }
    // range search has no lookup path
    auto sequential = make_index();
    sequential->add(nb, xb.data());
    faiss::RangeSearchResult result(nq);
    EXPECT_THROW(
        sequential->range_search(nq, xq.data(), 1.0f, &result, &lookup),
        faiss::FaissException);
}
