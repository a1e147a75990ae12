/**
 * Every public virtual of faiss::Index, faiss::IndexIVF and
 * faiss::IndexIVFFlat in the FAISS version compiled against, called on an
 * IndexIVFGMM with real spill (vectors in up to 3 lists), for the codes
 * Flat, SQ8, fast-scan PQ ("PQ8x4fsr") and, with FAISS >= 1.11, RaBitQ. Each
 * entry point must keep the index's promises (each id at most once per query,
 * each vector's distance computed once, ntotal counting vectors once, every
 * copy removed) or throw a FaissException that names the method. Also FAISS's
 * generic tools on the index: clone_index, write_index, ParameterSpace, and
 * every SearchParametersIVF field.
 *
 * The table `kEntryPoints` lists what is checked; the test
 * EveryVirtualIsInTheTable fails when an entry point of the compiled FAISS
 * is missing from it.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <faiss/AutoTune.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/clone_index.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

// after faiss_compat.h (through IndexIVFGMM.h), which says what exists
#if FAISS_GMM_HAS_SEARCH1
#include <faiss/impl/ResultHandler.h>
#endif
#if FAISS_GMM_HAS_CODE_PACKER
#include <faiss/impl/CodePacker.h>
#endif

#include "test_utils.h"

using faiss_gmm::idx_t;
using faiss_gmm::IndexIVFGMM;
using faiss_gmm::indexIVFGMM_stats;

namespace {

constexpr int kDim = 16;
constexpr int kNlist = 16;
constexpr int kNb = 2000;
constexpr int kNq = 12;
constexpr int kK = 10;
/// ids of the base vectors: kFirstId + 3 i, apart from the sequential ids
/// (ntotal, ntotal + 1, ...) that add() gives
constexpr idx_t kFirstId = 1000000;

/// What an entry point's check gets: a trained index holding kNb spilled
/// vectors with ids kFirstId + 3 i, and the data.
struct Context {
    std::unique_ptr<IndexIVFGMM> index;
    std::vector<float> xb, xq;
    std::vector<idx_t> ids;
    bool exact_codes = false; ///< Flat: distances and reconstructions exact
    /// the scanner's distance is the distance to the decoded vector (all
    /// but RaBitQ, whose scanner estimates the distance to the original)
    bool scans_decoded = true;
    /// largest |decoded - original| per component the code may give
    double decode_tolerance = 0;
    std::string code;

    idx_t id_of(int i) const {
        return ids[i];
    }
    int row_of(idx_t id) const {
        return int((id - kFirstId) / 3);
    }
};

std::unique_ptr<IndexIVFGMM> make_index(const std::string& code) {
    std::unique_ptr<faiss::Index> made(faiss_gmm::index_factory(
        kDim, ("IVF16_GMM_m3_T4_tau0.02," + code).c_str()));
    auto* ivf = dynamic_cast<IndexIVFGMM*>(made.get());
    EXPECT_NE(ivf, nullptr);
    made.release();
    ivf->build_params.gmm.niter = 4;
    ivf->build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    // every entry point is checked against exhaustive results at nprobe =
    // nlist: no list pruning (on by default; it skips whole lists)
    ivf->search_options.prune_margin = 0;
    ivf->search_options.min_expected_hits = 0;
    return std::unique_ptr<IndexIVFGMM>(ivf);
}

/**
 * The per-component decoding error allowed for each code of the table
 * (checked on a few vectors): for 4-bit PQ with 2-d sub-vectors and
 * RaBitQ's 1-bit codes, the largest error over all kNb base vectors
 * measured with FAISS 1.7.3 and 1.15 (2.94, 2.26), rounded up.
 */
double decode_tolerance(const std::string& code) {
    if (code == "Flat") {
        return 0;
    } else if (code == "SQ8") {
        return 0.5;
    } else if (code == "PQ8x4fsr") {
        return 3.0;
    }
    return 2.5;
}

Context make_context(const std::string& code) {
    Context c;
    c.code = code;
    c.exact_codes = code == "Flat";
    c.decode_tolerance = decode_tolerance(code);
    c.scans_decoded = code != "RaBitQ";
    // queries from the same blobs as the base (not among its rows)
    c.xb = faiss_gmm::test::overlapping_blobs(kNb + kNq, kDim, 10, 5);
    c.xq.assign(c.xb.begin() + size_t(kNb) * kDim, c.xb.end());
    c.xb.resize(size_t(kNb) * kDim);
    c.index = make_index(code);
    c.index->train(kNb, c.xb.data());
    c.ids.resize(kNb);
    for (int i = 0; i < kNb; i++) {
        c.ids[i] = kFirstId + 3 * idx_t(i);
    }
    c.index->add_with_ids(kNb, c.xb.data(), c.ids.data());
    EXPECT_GT(c.index->replication_factor(), 1.2) << "too little spill";
    return c;
}

/// Each query's labels hold every id at most once (-1 aside).
void expect_unique_labels(const std::vector<idx_t>& labels, int nq, int k) {
    for (int q = 0; q < nq; q++) {
        std::set<idx_t> seen;
        for (int r = 0; r < k; r++) {
            const idx_t id = labels[size_t(q) * k + r];
            EXPECT_TRUE(id < 0 || seen.insert(id).second)
                << "query " << q << " returned id " << id << " twice";
        }
    }
}

/// Exhaustive exact top-k ids of the queries over xb (ids as c.ids).
std::vector<idx_t> brute_force(const Context& c, int k) {
    faiss::IndexFlatL2 flat(kDim);
    flat.add(kNb, c.xb.data());
    std::vector<float> dis(size_t(kNq) * k);
    std::vector<idx_t> rows(size_t(kNq) * k);
    flat.search(kNq, c.xq.data(), k, dis.data(), rows.data());
    for (idx_t& r : rows) {
        r = c.ids[r];
    }
    return rows;
}

/// Counters of one search at nprobe = nlist: every vector is compared
/// exactly once per query although it sits in several lists.
void expect_each_vector_compared_once(const Context& c, size_t nq) {
    EXPECT_EQ(indexIVFGMM_stats.nq, nq);
    EXPECT_EQ(indexIVFGMM_stats.nfine_distances, nq * size_t(c.index->ntotal));
    EXPECT_EQ(indexIVFGMM_stats.nentries_scanned, nq * c.index->nentries());
    EXPECT_GT(indexIVFGMM_stats.nduplicates_skipped, 0u);
}

void expect_throws_naming(
    const std::function<void()>& f, const std::string& method) {
    try {
        f();
        ADD_FAILURE() << method << " did not throw";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find(method), std::string::npos)
            << "the message does not name " << method << ": " << e.what();
    }
}

void check_search(Context& c) {
    c.index->nprobe = kNlist;
    std::vector<float> dis(kNq * kK);
    std::vector<idx_t> labels(kNq * kK);
    indexIVFGMM_stats.reset();
    c.index->search(kNq, c.xq.data(), kK, dis.data(), labels.data());
    expect_unique_labels(labels, kNq, kK);
    expect_each_vector_compared_once(c, kNq);
    if (c.exact_codes) {
        EXPECT_EQ(labels, brute_force(c, kK));
    }
}

#if FAISS_GMM_HAS_NUMERIC_TYPE_ENTRY_POINTS
void check_search_ex(Context& c) {
    c.index->nprobe = kNlist;
    std::vector<float> d1(kNq * kK), d2(kNq * kK);
    std::vector<idx_t> l1(kNq * kK), l2(kNq * kK);
    c.index->search(kNq, c.xq.data(), kK, d1.data(), l1.data());
    c.index->search_ex(
        kNq,
        c.xq.data(),
        faiss::NumericType::Float32,
        kK,
        d2.data(),
        l2.data());
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(d1, d2);
}

void check_add_ex(Context& c) {
    const idx_t before = c.index->ntotal;
    const size_t entries = c.index->nentries();
    c.index->add_ex(100, c.xb.data(), faiss::NumericType::Float32);
    EXPECT_EQ(c.index->ntotal, before + 100);
    EXPECT_GE(c.index->nentries(), entries + 100);
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_add_with_ids_ex(Context& c) {
    const idx_t before = c.index->ntotal;
    std::vector<idx_t> new_ids = {7, 8};
    c.index->add_with_ids_ex(
        2, c.xq.data(), faiss::NumericType::Float32, new_ids.data());
    EXPECT_EQ(c.index->ntotal, before + 2);
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_train_ex(Context& c) {
    IndexIVFGMM fresh(kDim, kNlist);
    fresh.build_params.gmm.niter = 2;
    fresh.build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    fresh.train_ex(kNb, c.xb.data(), faiss::NumericType::Float32);
    EXPECT_TRUE(fresh.is_trained);
    EXPECT_EQ(fresh.quantizer->ntotal, kNlist);
}
#endif

#if FAISS_GMM_HAS_SEARCH1
/// Collects every result handed to it.
struct CollectAll : faiss::ResultHandler {
    std::vector<std::pair<float, idx_t>> results;
    CollectAll() {
        threshold = std::numeric_limits<float>::infinity();
    }
    bool add_result(float dis, idx_t id) override {
        results.emplace_back(dis, id);
        return false;
    }
};

void check_search1(Context& c) {
    c.index->nprobe = kNlist;
    CollectAll all;
    indexIVFGMM_stats.reset();
    c.index->search1(c.xq.data(), all);
    EXPECT_EQ(all.results.size(), size_t(c.index->ntotal))
        << "every vector exactly once";
    std::set<idx_t> seen;
    for (const auto& r : all.results) {
        EXPECT_TRUE(seen.insert(r.second).second) << "id twice: " << r.second;
    }
    expect_each_vector_compared_once(c, 1);
}

void check_search_subset(Context& c) {
    std::vector<idx_t> base(kNq * 5, kFirstId);
    std::vector<float> dis(kNq);
    std::vector<idx_t> labels(kNq);
    EXPECT_THROW(
        c.index->search_subset(
            kNq, c.xq.data(), 5, base.data(), 1, dis.data(), labels.data()),
        faiss::FaissException);
}
#endif

void check_range_search(Context& c) {
    c.index->nprobe = kNlist;
    const float radius = 40.0f;
    faiss::RangeSearchResult result(kNq);
    indexIVFGMM_stats.reset();
    c.index->range_search(kNq, c.xq.data(), radius, &result);
    expect_each_vector_compared_once(c, kNq);
    for (int q = 0; q < kNq; q++) {
        std::set<idx_t> got;
        for (size_t j = result.lims[q]; j < result.lims[q + 1]; j++) {
            EXPECT_TRUE(got.insert(result.labels[j]).second)
                << "query " << q << " id " << result.labels[j] << " twice";
        }
        if (c.exact_codes) {
            std::set<idx_t> expected;
            for (int i = 0; i < kNb; i++) {
                float d = 0;
                for (int j = 0; j < kDim; j++) {
                    const float t = c.xq[q * kDim + j] - c.xb[i * kDim + j];
                    d += t * t;
                }
                if (d < radius) {
                    expected.insert(c.ids[i]);
                }
            }
            EXPECT_EQ(got, expected) << "query " << q;
        }
    }
}

void check_assign(Context& c) {
    c.index->nprobe = kNlist;
    std::vector<idx_t> labels(kNq * kK);
    c.index->assign(kNq, c.xq.data(), labels.data(), kK);
    expect_unique_labels(labels, kNq, kK);
}

void check_search_preassigned(Context& c) {
    std::vector<idx_t> keys(kNq * kNlist);
    std::vector<float> coarse(kNq * kNlist);
    faiss_gmm::SearchParametersIVFGMM p;
    p.nprobe = kNlist;
    p.prune_margin = 0; // every vector compared: no list pruning
    c.index->coarse_assign(kNq, c.xq.data(), p, keys.data(), coarse.data());
    for (bool store_pairs : {false, true}) {
        std::vector<float> dis(kNq * kK);
        std::vector<idx_t> labels(kNq * kK);
        indexIVFGMM_stats.reset();
        c.index->search_preassigned(
            kNq,
            c.xq.data(),
            kK,
            keys.data(),
            coarse.data(),
            dis.data(),
            labels.data(),
            store_pairs,
            &p);
        EXPECT_EQ(
            indexIVFGMM_stats.nfine_distances,
            size_t(kNq) * size_t(c.index->ntotal));
        if (store_pairs) {
            // (list, offset) pairs, each naming a different vector
            for (idx_t& label : labels) {
                const size_t l = faiss::lo_listno(label);
                const size_t o = faiss::lo_offset(label);
                ASSERT_LT(l, size_t(kNlist));
                ASSERT_LT(o, c.index->invlists->list_size(l));
                label = c.index->invlists->get_single_id(l, o);
            }
        }
        expect_unique_labels(labels, kNq, kK);
    }
}

void check_range_search_preassigned(Context& c) {
    std::vector<idx_t> keys(kNq * kNlist);
    std::vector<float> coarse(kNq * kNlist);
    faiss_gmm::SearchParametersIVFGMM p;
    p.nprobe = kNlist;
    p.prune_margin = 0; // every vector compared: no list pruning
    c.index->coarse_assign(kNq, c.xq.data(), p, keys.data(), coarse.data());
    faiss::RangeSearchResult result(kNq);
    c.index->range_search_preassigned(
        kNq,
        c.xq.data(),
        40.0f,
        keys.data(),
        coarse.data(),
        &result,
        false,
        &p);
    for (int q = 0; q < kNq; q++) {
        std::set<idx_t> got;
        for (size_t j = result.lims[q]; j < result.lims[q + 1]; j++) {
            EXPECT_TRUE(got.insert(result.labels[j]).second);
        }
    }
}

void check_search_and_reconstruct(Context& c) {
    c.index->nprobe = kNlist;
    std::vector<float> dis(kNq * kK), recons(size_t(kNq) * kK * kDim);
    std::vector<idx_t> labels(kNq * kK);
    c.index->search_and_reconstruct(
        kNq, c.xq.data(), kK, dis.data(), labels.data(), recons.data());
    expect_unique_labels(labels, kNq, kK);
    std::vector<float> one(kDim);
    for (int i = 0; i < kNq * kK; i++) {
        c.index->reconstruct(labels[i], one.data());
        EXPECT_TRUE(std::equal(one.begin(), one.end(), &recons[i * kDim]));
    }
}

void check_add(Context& c) {
    const idx_t before = c.index->ntotal;
    c.index->add(100, c.xb.data());
    EXPECT_EQ(c.index->ntotal, before + 100) << "ntotal counts vectors";
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_add_with_ids(Context& c) {
    const idx_t before = c.index->ntotal;
    const size_t entries = c.index->nentries();
    std::vector<idx_t> new_ids(kNq);
    for (int i = 0; i < kNq; i++) {
        new_ids[i] = 10 + i;
    }
    c.index->add_with_ids(kNq, c.xq.data(), new_ids.data());
    EXPECT_EQ(c.index->ntotal, before + kNq);
    EXPECT_GE(c.index->nentries(), entries + kNq);
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_add_core(Context& c) {
    std::vector<idx_t> lists(kNq), new_ids(kNq);
    for (int i = 0; i < kNq; i++) {
        lists[i] = i % kNlist;
        new_ids[i] = 20 + i;
    }
    const idx_t before = c.index->ntotal;
    c.index->add_core(kNq, c.xq.data(), new_ids.data(), lists.data());
    EXPECT_EQ(c.index->ntotal, before + kNq);
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_sa_codes(Context& c) {
    const size_t size = c.index->sa_code_size();
    std::vector<uint8_t> codes(size_t(kNq) * size);
    c.index->sa_encode(kNq, c.xq.data(), codes.data());
    std::vector<float> decoded(kNq * kDim);
    c.index->sa_decode(kNq, codes.data(), decoded.data());
    for (int i = 0; i < kNq * kDim; i++) {
        EXPECT_NEAR(decoded[i], c.xq[i], c.decode_tolerance);
    }
    std::vector<idx_t> new_ids(kNq);
    for (int i = 0; i < kNq; i++) {
        new_ids[i] = 40 + i;
    }
    const idx_t before = c.index->ntotal;
    c.index->add_sa_codes(kNq, codes.data(), new_ids.data());
    EXPECT_EQ(c.index->ntotal, before + kNq);
    faiss_gmm::test::expect_records_consistent(*c.index);
}

void check_train(Context& c) {
    expect_throws_naming(
        [&] { c.index->train(kNb, c.xb.data()); }, "IndexIVFGMM::train");
    IndexIVFGMM fresh(kDim, kNlist);
    fresh.build_params.gmm.niter = 2;
    fresh.build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    fresh.train(kNb, c.xb.data());
    EXPECT_TRUE(fresh.is_trained);
}

void check_train_encoder(Context& c) {
    // the code's own training goes to the code index (a no-op for Flat)
    std::vector<float> residuals(c.xb.begin(), c.xb.begin() + 500 * kDim);
#if FAISS_GMM_HAS_TRAIN_ENCODER
    std::vector<idx_t> assign(500, 0);
    c.index->train_encoder(500, residuals.data(), assign.data());
    EXPECT_EQ(
        c.index->train_encoder_num_vectors(),
        c.index->codes_index->train_encoder_num_vectors());
#else
    c.index->train_residual(500, residuals.data());
#endif
    EXPECT_TRUE(c.index->codes_index->is_trained);
}

void check_remove_ids(Context& c) {
    const idx_t before = c.index->ntotal;
    faiss::IDSelectorRange first(kFirstId, kFirstId + 3 * 500); // rows < 500
    EXPECT_EQ(c.index->remove_ids(first), 500u);
    EXPECT_EQ(c.index->ntotal, before - 500);
    faiss_gmm::test::expect_records_consistent(*c.index);
    const auto where = faiss_gmm::test::lists_of_ids(*c.index);
    for (int i = 0; i < 500; i++) {
        EXPECT_EQ(where.count(c.ids[i]), 0u) << "a copy of a removed vector";
    }
    c.index->nprobe = kNlist;
    std::vector<float> dis(kNq * kK);
    std::vector<idx_t> labels(kNq * kK);
    c.index->search(kNq, c.xq.data(), kK, dis.data(), labels.data());
    for (idx_t id : labels) {
        EXPECT_TRUE(id < 0 || id >= kFirstId + 3 * 500);
    }
}

void check_update_vectors(Context& c) {
    const idx_t before = c.index->ntotal;
    std::vector<idx_t> which = {c.ids[3], c.ids[77]};
    c.index->update_vectors(2, which.data(), c.xq.data());
    EXPECT_EQ(c.index->ntotal, before);
    faiss_gmm::test::expect_records_consistent(*c.index);
    std::vector<float> got(kDim);
    c.index->reconstruct(c.ids[77], got.data());
    for (int j = 0; j < kDim; j++) {
        EXPECT_NEAR(got[j], c.xq[kDim + j], c.decode_tolerance);
    }
    std::vector<idx_t> missing = {5};
    expect_throws_naming(
        [&] { c.index->update_vectors(1, missing.data(), c.xq.data()); },
        "IndexIVFGMM::update_vectors");
}

void check_reset(Context& c) {
    c.index->reset();
    EXPECT_EQ(c.index->ntotal, 0);
    EXPECT_EQ(c.index->nentries(), 0u);
    EXPECT_TRUE(c.index->is_trained);
    c.index->add(10, c.xb.data());
    EXPECT_EQ(c.index->ntotal, 10);
}

void check_reconstruct(Context& c) {
    std::vector<float> got(kDim);
    for (int i : {0, 17, 1999}) {
        c.index->reconstruct(c.ids[i], got.data());
        for (int j = 0; j < kDim; j++) {
            EXPECT_NEAR(got[j], c.xb[i * kDim + j], c.decode_tolerance);
        }
    }
    expect_throws_naming(
        [&] { c.index->reconstruct(1, got.data()); },
        "IndexIVFGMM::reconstruct");
}

void check_reconstruct_batch(Context& c) {
    std::vector<idx_t> keys = {c.ids[5], c.ids[6]};
    std::vector<float> got(2 * kDim), one(kDim);
    c.index->reconstruct_batch(2, keys.data(), got.data());
    c.index->reconstruct(c.ids[6], one.data());
    EXPECT_TRUE(std::equal(one.begin(), one.end(), got.begin() + kDim));
}

void check_reconstruct_n(Context& c) {
    // reconstruct_n takes ids i0 .. i0 + ni - 1: give the index such ids
    IndexIVFGMM& index = *c.index;
    index.reset();
    index.add(20, c.xb.data());
    std::vector<float> got(5 * kDim), one(kDim);
    index.reconstruct_n(3, 5, got.data());
    index.reconstruct(4, one.data());
    EXPECT_TRUE(std::equal(one.begin(), one.end(), got.begin() + kDim));
}

void check_reconstruct_from_offset(Context& c) {
    const size_t l = 3;
    ASSERT_GT(c.index->invlists->list_size(l), 0u);
    const idx_t id = c.index->invlists->get_single_id(l, 0);
    std::vector<float> a(kDim), b(kDim);
    c.index->reconstruct_from_offset(l, 0, a.data());
    c.index->reconstruct(id, b.data());
    if (c.exact_codes) {
        EXPECT_EQ(a, b);
    }
}

void check_compute_residual(Context& c) {
    std::vector<float> residual(kDim), rec(kDim);
    c.index->compute_residual(c.xq.data(), residual.data(), c.ids[9]);
    c.index->reconstruct(c.ids[9], rec.data());
    for (int j = 0; j < kDim; j++) {
        EXPECT_FLOAT_EQ(residual[j], c.xq[j] - rec[j]);
    }
    std::vector<idx_t> keys = {c.ids[9], c.ids[10]};
    std::vector<float> residuals(2 * kDim);
    c.index->compute_residual_n(2, c.xq.data(), residuals.data(), keys.data());
    EXPECT_FLOAT_EQ(residuals[0], residual[0]);
}

void check_get_distance_computer(Context& c) {
    // FAISS's generic computer, through reconstruct(): distances by id
    std::unique_ptr<faiss::DistanceComputer> dc(
        c.index->get_distance_computer());
    dc->set_query(c.xq.data());
    std::vector<float> rec(kDim);
    c.index->reconstruct(c.ids[11], rec.data());
    float expected = 0;
    for (int j = 0; j < kDim; j++) {
        expected += (c.xq[j] - rec[j]) * (c.xq[j] - rec[j]);
    }
    EXPECT_NEAR((*dc)(c.ids[11]), expected, 1e-3);
}

void check_merge_from(Context& c) {
    auto other = make_index(c.code);
    other->set_gmm(c.index->gmm);
    if (!other->is_trained) {
        other->train_codes(kNb, c.xb.data());
    }
    // the code's own parameters (SQ ranges) must match too
    std::unique_ptr<faiss::Index> copy(faiss_gmm::clone_index(c.index.get()));
    auto* twin = dynamic_cast<IndexIVFGMM*>(copy.get());
    ASSERT_NE(twin, nullptr);
    twin->reset();
    twin->add(300, c.xb.data());
    const idx_t before = c.index->ntotal;
    c.index->check_compatible_for_merge(*twin);
    c.index->merge_from(*twin, 100000);
    EXPECT_EQ(c.index->ntotal, before + 300);
    EXPECT_EQ(twin->ntotal, 0);
    faiss_gmm::test::expect_records_consistent(*c.index);
    faiss::IndexFlatL2 not_gmm(kDim);
    expect_throws_naming(
        [&] { c.index->merge_from(not_gmm, 0); }, "IndexIVFGMM::merge_from");
}

void check_copy_subset_to(Context& c) {
    std::unique_ptr<faiss::Index> copy(faiss_gmm::clone_index(c.index.get()));
    auto* subset = dynamic_cast<IndexIVFGMM*>(copy.get());
    ASSERT_NE(subset, nullptr);
    subset->reset();
    c.index->copy_subset_to(
        *subset, faiss_gmm::CopySubsetType(0), kFirstId, kFirstId + 3 * 100);
    EXPECT_EQ(subset->ntotal, 100);
    faiss_gmm::test::expect_records_consistent(*subset);
    expect_throws_naming(
        [&] {
            c.index->copy_subset_to(
                *subset, faiss_gmm::CopySubsetType(2), 1, 1);
        },
        "IndexIVFGMM::copy_subset_to");
}

void check_encode_vectors(Context& c) {
    // each vector against its nearest mean (residual codes are trained on
    // residuals to the nearest mean)
    std::vector<idx_t> lists(kNq);
    c.index->quantizer->assign(kNq, c.xq.data(), lists.data());
    std::vector<uint8_t> codes(kNq * c.index->code_size);
    c.index->encode_vectors(kNq, c.xq.data(), lists.data(), codes.data());
#if FAISS_GMM_HAS_DECODE_VECTORS
    std::vector<float> decoded(kNq * kDim);
    c.index->decode_vectors(kNq, codes.data(), lists.data(), decoded.data());
    for (int i = 0; i < kNq * kDim; i++) {
        EXPECT_NEAR(decoded[i], c.xq[i], c.decode_tolerance);
    }
#endif
}

void check_get_InvertedListScanner(Context& c) {
    // the raw scanner of the code: distances of one list's entries, as
    // search gives them with that list alone probed
    std::unique_ptr<faiss::InvertedListScanner> scanner(
        c.index->get_InvertedListScanner());
    ASSERT_NE(scanner, nullptr);
    scanner->set_query(c.xq.data());
    const size_t l = 1;
    scanner->set_list(l, 0);
    faiss::InvertedLists::ScopedCodes codes(c.index->invlists, l);
    const float dis0 = scanner->distance_to_code(codes.get());
    const idx_t id0 = c.index->invlists->get_single_id(l, 0);
    faiss_gmm::SearchParametersIVFGMM p;
    p.nprobe = 1;
    const idx_t key = idx_t(l);
    const idx_t k = idx_t(c.index->invlists->list_size(l));
    std::vector<float> dis(k);
    std::vector<idx_t> labels(k);
    c.index->search_preassigned(
        1, c.xq.data(), k, &key, nullptr, dis.data(), labels.data(), false, &p);
    const auto at = std::find(labels.begin(), labels.end(), id0);
    ASSERT_NE(at, labels.end());
    EXPECT_NEAR(dis[at - labels.begin()], dis0, 1e-5 * (1 + dis0));
    if (!c.scans_decoded) {
        return;
    }
    std::vector<float> rec(kDim);
    c.index->reconstruct_from_offset(l, 0, rec.data());
    float expected = 0;
    for (int j = 0; j < kDim; j++) {
        expected += (c.xq[j] - rec[j]) * (c.xq[j] - rec[j]);
    }
    EXPECT_NEAR(dis0, expected, 1e-2);
}

#if FAISS_GMM_HAS_CODE_PACKER
void check_get_CodePacker(Context& c) {
    std::unique_ptr<faiss::CodePacker> packer(c.index->get_CodePacker());
    ASSERT_NE(packer, nullptr);
    EXPECT_EQ(packer->code_size, c.index->code_size);
}
#endif

void check_faiss_clone_index(Context& c) {
    // FAISS does not know the class: a clear error, never a sliced copy
    EXPECT_THROW(
        delete faiss::clone_index(c.index.get()), faiss::FaissException);
    std::unique_ptr<faiss::Index> copy(faiss_gmm::clone_index(c.index.get()));
    auto* twin = dynamic_cast<IndexIVFGMM*>(copy.get());
    ASSERT_NE(twin, nullptr);
    EXPECT_EQ(twin->ntotal, c.index->ntotal);
    EXPECT_EQ(twin->nentries(), c.index->nentries());
}

void check_faiss_write_index(Context& c) {
    faiss::VectorIOWriter writer;
    EXPECT_THROW(
        faiss::write_index(c.index.get(), &writer), faiss::FaissException);
}

void check_parameter_space(Context& c) {
    faiss::ParameterSpace ps;
    ps.set_index_parameter(c.index.get(), "nprobe", 5);
    EXPECT_EQ(c.index->nprobe, 5u);
    ps.initialize(c.index.get());
    EXPECT_GT(ps.n_combinations(), 0u);
}

void check_search_parameters_ivf(Context& c) {
    std::vector<float> dis(kNq * kK);
    std::vector<idx_t> labels(kNq * kK);
    // max_codes counts unique vectors: probing stops after the first list
    // in which max_codes vectors were compared
    faiss::SearchParametersIVF p;
    p.nprobe = kNlist;
    p.max_codes = 1;
    indexIVFGMM_stats.reset();
    c.index->search(kNq, c.xq.data(), kK, dis.data(), labels.data(), &p);
    EXPECT_EQ(indexIVFGMM_stats.nlists_probed, size_t(kNq));
    expect_unique_labels(labels, kNq, kK);
    // sel is honoured
    faiss::IDSelectorRange even_rows(kFirstId, kFirstId + 3 * 1000);
    p.max_codes = 0;
    p.sel = &even_rows;
    c.index->search(kNq, c.xq.data(), kK, dis.data(), labels.data(), &p);
    for (idx_t id : labels) {
        EXPECT_TRUE(id < 0 || even_rows.is_member(id));
    }
    p.sel = nullptr;
    // what is not implemented is refused
    faiss::SearchParameters quantizer_params;
    p.quantizer_params = &quantizer_params;
    expect_throws_naming(
        [&] {
            c.index->search(
                kNq, c.xq.data(), kK, dis.data(), labels.data(), &p);
        },
        "quantizer_params");
    p.quantizer_params = nullptr;
#if FAISS_GMM_HAS_IVF_SEARCH_BUDGETS
    p.max_lists_num = 3;
    expect_throws_naming(
        [&] {
            c.index->search(
                kNq, c.xq.data(), kK, dis.data(), labels.data(), &p);
        },
        "max_lists_num");
    p.max_lists_num = 0;
    p.ensure_topk_full = true;
    expect_throws_naming(
        [&] {
            c.index->search(
                kNq, c.xq.data(), kK, dis.data(), labels.data(), &p);
        },
        "ensure_topk_full");
    p.ensure_topk_full = false;
    p.max_empty_result_buckets = 2;
    faiss::RangeSearchResult result(kNq);
    expect_throws_naming(
        [&] { c.index->range_search(kNq, c.xq.data(), 40.0f, &result, &p); },
        "max_empty_result_buckets");
#endif
}

void check_idmap_wrapper(Context& c) {
    // faiss::IndexIDMap assumes its sub-index renumbers vectors after a
    // removal, which an IVF index does not: IndexIVFGMM refuses the removal
    // rather than let the wrapper mislabel results (FAISS >= 1.7.4, where
    // the selector IndexIDMap passes is a public type; 1.7.3 keeps it
    // private, so there the composition stays FAISS's).
    IndexIVFGMM empty(kDim, kNlist);
    empty.set_gmm(c.index->gmm);
    faiss::IndexIDMap idmap(&empty);
    std::vector<idx_t> external = {5, 6};
    idmap.add_with_ids(2, c.xq.data(), external.data());
#if FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
    faiss::IDSelectorRange sel(5, 6);
    expect_throws_naming(
        [&] { idmap.remove_ids(sel); }, "IndexIVFGMM::remove_ids");
#endif
    EXPECT_EQ(idmap.ntotal, 2);
}

struct EntryPoint {
    const char* name;
    void (*check)(Context&);
};

const std::vector<EntryPoint> kEntryPoints = {
    // faiss::Index
    {"train", check_train},
    {"add", check_add},
    {"add_with_ids", check_add_with_ids},
    {"search", check_search},
    {"range_search", check_range_search},
    {"assign", check_assign},
    {"reset", check_reset},
    {"remove_ids", check_remove_ids},
    {"reconstruct", check_reconstruct},
    {"reconstruct_batch", check_reconstruct_batch},
    {"reconstruct_n", check_reconstruct_n},
    {"search_and_reconstruct", check_search_and_reconstruct},
    {"compute_residual / compute_residual_n", check_compute_residual},
    {"get_distance_computer", check_get_distance_computer},
    {"sa_code_size / sa_encode / sa_decode / add_sa_codes", check_sa_codes},
    {"merge_from / check_compatible_for_merge", check_merge_from},
#if FAISS_GMM_HAS_NUMERIC_TYPE_ENTRY_POINTS
    {"train_ex", check_train_ex},
    {"add_ex", check_add_ex},
    {"add_with_ids_ex", check_add_with_ids_ex},
    {"search_ex", check_search_ex},
#endif
#if FAISS_GMM_HAS_SEARCH1
    {"search1", check_search1},
    {"search_subset", check_search_subset},
#endif
    // faiss::IndexIVF (and IndexIVFFlat's overrides)
    {"add_core", check_add_core},
    {"encode_vectors / decode_vectors", check_encode_vectors},
    {"train_encoder / train_residual", check_train_encoder},
    {"search_preassigned", check_search_preassigned},
    {"range_search_preassigned", check_range_search_preassigned},
    {"get_InvertedListScanner", check_get_InvertedListScanner},
    {"update_vectors", check_update_vectors},
    {"reconstruct_from_offset", check_reconstruct_from_offset},
#if FAISS_GMM_HAS_CODE_PACKER
    {"get_CodePacker", check_get_CodePacker},
#endif
    {"copy_subset_to", check_copy_subset_to},
    // FAISS's tools and parameters
    {"faiss::clone_index", check_faiss_clone_index},
    {"faiss::write_index", check_faiss_write_index},
    {"faiss::ParameterSpace", check_parameter_space},
    {"SearchParametersIVF fields", check_search_parameters_ivf},
    {"faiss::IndexIDMap around it", check_idmap_wrapper},
};

class EntryPoints : public ::testing::TestWithParam<std::string> {};

TEST_P(EntryPoints, KeepThePromisesOrThrow) {
    for (const EntryPoint& e : kEntryPoints) {
        SCOPED_TRACE(std::string(e.name) + " (" + GetParam() + " codes)");
        Context c = make_context(GetParam());
        e.check(c);
        if (HasFatalFailure()) {
            return;
        }
    }
}

/// Flat, SQ8, fast-scan PQ (residual) and, where FAISS has it, RaBitQ.
std::vector<std::string> codes_in_the_table() {
    std::vector<std::string> codes = {"Flat", "SQ8", "PQ8x4fsr"};
#if FAISS_GMM_HAS_RABITQ
    codes.push_back("RaBitQ");
#endif
    return codes;
}

INSTANTIATE_TEST_SUITE_P(
    Codes,
    EntryPoints,
    ::testing::ValuesIn(codes_in_the_table()),
    [](const ::testing::TestParamInfo<std::string>& info) {
        return info.param;
    });

TEST(EntryPointTable, EveryVirtualIsInTheTable) {
    // the FAISS virtuals of this version, by name; each must appear in
    // kEntryPoints (possibly inside a combined name)
    std::vector<std::string> virtuals = {
        "train",
        "add",
        "add_with_ids",
        "search",
        "range_search",
        "assign",
        "reset",
        "remove_ids",
        "reconstruct",
        "reconstruct_batch",
        "reconstruct_n",
        "search_and_reconstruct",
        "compute_residual",
        "compute_residual_n",
        "get_distance_computer",
        "sa_code_size",
        "sa_encode",
        "sa_decode",
        "merge_from",
        "check_compatible_for_merge",
        "add_sa_codes",
        "add_core",
        "encode_vectors",
        "search_preassigned",
        "range_search_preassigned",
        "get_InvertedListScanner",
        "update_vectors",
        "reconstruct_from_offset",
        "copy_subset_to"};
#if FAISS_GMM_HAS_CODE_PACKER
    virtuals.push_back("get_CodePacker");
#endif
#if FAISS_GMM_HAS_TRAIN_ENCODER
    virtuals.push_back("train_encoder");
#else
    virtuals.push_back("train_residual");
#endif
#if FAISS_GMM_HAS_DECODE_VECTORS
    virtuals.push_back("decode_vectors");
#endif
#if FAISS_GMM_HAS_NUMERIC_TYPE_ENTRY_POINTS
    for (const char* v :
         {"train_ex", "add_ex", "add_with_ids_ex", "search_ex"}) {
        virtuals.push_back(v);
    }
#endif
#if FAISS_GMM_HAS_SEARCH1
    virtuals.push_back("search1");
    virtuals.push_back("search_subset");
#endif
    for (const std::string& v : virtuals) {
        bool found = false;
        for (const EntryPoint& e : kEntryPoints) {
            std::string names = std::string(" ") + e.name + " ";
            for (char& ch : names) {
                ch = ch == '/' ? ' ' : ch;
            }
            found = found || names.find(" " + v + " ") != std::string::npos;
        }
        EXPECT_TRUE(found) << v << " has no row in kEntryPoints";
    }
}

} // namespace
