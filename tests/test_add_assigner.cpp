/**
 * The assignment seam of IndexIVFGMM::add_with_ids (ListAssigner,
 * ListAssignment.h) on the CPU: an installed assigner gets the batches it
 * asks for, an overlapping one runs beside the encoding, and either way the
 * index ends up byte for byte as with the built-in CPU rule (Flat and PQ
 * codes, every spill rule); errors part way leave a consistent index. Also
 * the streaming synthetic generator the scale benchmark draws from.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/invlists/InvertedLists.h>

#include <datasets/synthetic.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "test_utils.h"

using namespace faiss_gmm;

namespace {

constexpr int kDim = 16;
constexpr int kNlist = 24;

/// assign_lists in batches of a chosen size, recording its calls.
struct RecordingAssigner : ListAssigner {
    idx_t batch = 1;
    bool overlap = false;
    /// throw on this call (0-based; -1: never)
    int throw_on_call = -1;
    std::mutex mutex;
    std::vector<idx_t> sizes;
    std::atomic<int> calls_off_caller_thread{0};
    std::thread::id caller = std::this_thread::get_id();

    RecordingAssigner(idx_t batch, bool overlap)
        : batch(batch), overlap(overlap) {}

    void assign(
        const GaussianMixture& gmm,
        const faiss::Index& quantizer,
        const SpillParameters& spill,
        idx_t n,
        const float* x,
        idx_t* lists) override {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (int(sizes.size()) == throw_on_call) {
                sizes.push_back(n);
                FAISS_THROW_MSG("RecordingAssigner: planned failure");
            }
            sizes.push_back(n);
        }
        if (std::this_thread::get_id() != caller) {
            calls_off_caller_thread++;
        }
        assign_lists(gmm, quantizer, spill, n, x, lists);
    }
    idx_t batch_size() const override {
        return batch;
    }
    bool overlaps_encoding(
        const GaussianMixture&, const SpillParameters&) const override {
        return overlap;
    }
    std::string name() const override {
        return "recording";
    }
};

/// A trained spherical model on x.
GaussianMixture trained_model(const std::vector<float>& x) {
    GmmParameters params;
    params.niter = 5;
    params.kmeans_niter = 5;
    GaussianMixture model(kDim, kNlist, CovarianceType::Spherical);
    model.train(idx_t(x.size() / kDim), x.data(), params);
    return model;
}

/// Every list of a and b holds the same ids and codes in the same order,
/// with the same spill records.
void expect_same_lists(const IndexIVFGMM& a, const IndexIVFGMM& b) {
    ASSERT_EQ(a.ntotal, b.ntotal);
    ASSERT_EQ(a.nentries(), b.nentries());
    ASSERT_EQ(a.code_size, b.code_size);
    for (size_t l = 0; l < a.nlist; l++) {
        const size_t size = a.invlists->list_size(l);
        ASSERT_EQ(size, b.invlists->list_size(l)) << "list " << l;
        const idx_t* ia = a.invlists->get_ids(l);
        const idx_t* ib = b.invlists->get_ids(l);
        EXPECT_EQ(
            std::vector<idx_t>(ia, ia + size),
            std::vector<idx_t>(ib, ib + size))
            << "list " << l;
        const uint8_t* ca = a.invlists->get_codes(l);
        const uint8_t* cb = b.invlists->get_codes(l);
        EXPECT_EQ(
            std::vector<uint8_t>(ca, ca + size * a.code_size),
            std::vector<uint8_t>(cb, cb + size * b.code_size))
            << "list " << l;
        EXPECT_EQ(a.spill_records.records[l], b.spill_records.records[l]);
    }
}

struct AddAssigner : ::testing::Test {
    static constexpr int nb = 5000;
    std::vector<float> xb = faiss_gmm::test::overlapping_blobs(nb, kDim, 30, 7);
    GaussianMixture model = trained_model(xb);

    std::unique_ptr<IndexIVFGMM> make_index(const SpillParameters& spill) {
        auto index = std::make_unique<IndexIVFGMM>(
            kDim, kNlist, faiss_gmm::test::build_params(spill));
        index->set_gmm(model);
        return index;
    }
};

SpillParameters rule(SpillRule r) {
    SpillParameters spill;
    spill.rule = r;
    spill.max_assign = r == SpillRule::None ? 1 : 3;
    spill.tau = 0.01f;
    return spill;
}

TEST_F(AddAssigner, BatchesAndOverlapGiveTheCpuRulesLists) {
    for (SpillRule r :
         {SpillRule::Posterior,
          SpillRule::None,
          SpillRule::Closure,
          SpillRule::Soar,
          SpillRule::Rair}) {
        SCOPED_TRACE(spill_rule_name(r));
        auto reference = make_index(rule(r));
        reference->add(nb, xb.data());
        for (bool overlap : {false, true}) {
            for (idx_t batch : {idx_t(1), idx_t(777), idx_t(nb), idx_t(1e6)}) {
                if (batch == 1 && (overlap || r != SpillRule::Posterior)) {
                    continue; // slow; once is enough
                }
                SCOPED_TRACE(
                    "batch " + std::to_string(batch) +
                    (overlap ? " overlapped" : ""));
                auto index = make_index(rule(r));
                auto assigner =
                    std::make_shared<RecordingAssigner>(batch, overlap);
                index->set_assigner(assigner);
                EXPECT_EQ(index->get_assigner(), assigner);
                index->add(nb, xb.data());
                expect_same_lists(*reference, *index);
                faiss_gmm::test::expect_records_consistent(*index);
                // the batches it asked for, in order
                std::vector<idx_t> expected;
                for (idx_t i0 = 0; i0 < nb; i0 += batch) {
                    expected.push_back(std::min<idx_t>(batch, nb - i0));
                }
                EXPECT_EQ(assigner->sizes, expected);
                if (overlap && expected.size() > 1) {
                    EXPECT_EQ(
                        assigner->calls_off_caller_thread.load(),
                        int(expected.size()) - 1);
                } else {
                    EXPECT_EQ(assigner->calls_off_caller_thread.load(), 0);
                }
            }
        }
    }
}

TEST_F(AddAssigner, AssignListsAndUpdateUseTheAssigner) {
    auto index = make_index(rule(SpillRule::Posterior));
    auto assigner = std::make_shared<RecordingAssigner>(1000, true);
    index->set_assigner(assigner);
    const int m = index->build_params.spill.max_assign;
    std::vector<idx_t> got(size_t(nb) * m), want(size_t(nb) * m);
    index->assign_lists(nb, xb.data(), got.data());
    EXPECT_EQ(assigner->sizes, std::vector<idx_t>{nb});
    assign_lists(
        model,
        *index->quantizer,
        index->build_params.spill,
        nb,
        xb.data(),
        want.data());
    EXPECT_EQ(got, want);
    index->add(100, xb.data());
    const idx_t ids[2] = {3, 7};
    index->update_vectors(2, ids, xb.data() + 200 * kDim);
    EXPECT_EQ(assigner->sizes.back(), 2);
    faiss_gmm::test::expect_records_consistent(*index);
    index->set_assigner(nullptr);
    EXPECT_EQ(index->get_assigner(), nullptr);
}

TEST_F(AddAssigner, PqCodesOfEveryCopyAreTheSame) {
    std::unique_ptr<faiss::Index> made(
        faiss_gmm::index_factory(kDim, "IVF24_GMM_m3_tau0.01,PQ4x4"));
    auto* trained = dynamic_cast<IndexIVFGMM*>(made.get());
    ASSERT_NE(trained, nullptr);
    trained->build_params.gmm.niter = 3;
    trained->build_params.gmm.kmeans_niter = 3;
    trained->train(nb, xb.data());
    std::unique_ptr<faiss::Index> copy(faiss_gmm::clone_index(trained));
    auto* index = dynamic_cast<IndexIVFGMM*>(copy.get());
    ASSERT_NE(index, nullptr);
    trained->add(nb, xb.data());
    index->set_assigner(std::make_shared<RecordingAssigner>(1234, true));
    index->add(nb, xb.data());
    EXPECT_GT(index->replication_factor(), 1.0);
    expect_same_lists(*trained, *index);
}

TEST_F(AddAssigner, AFailingAssignerLeavesTheEarlierBatches) {
    for (bool overlap : {false, true}) {
        SCOPED_TRACE(overlap ? "overlapped" : "in turn");
        auto index = make_index(rule(SpillRule::Posterior));
        auto assigner = std::make_shared<RecordingAssigner>(1000, overlap);
        assigner->throw_on_call = 2;
        index->set_assigner(assigner);
        EXPECT_THROW(index->add(nb, xb.data()), faiss::FaissException);
        // batches 0 and 1 are stored, batch 2 never was
        EXPECT_EQ(index->ntotal, 2000);
        EXPECT_NO_THROW(index->check_lists_in_sync("test"));
        faiss_gmm::test::expect_records_consistent(*index);
        // the index goes on working
        assigner->throw_on_call = -1;
        index->add(nb - 2000, xb.data() + 2000 * kDim);
        EXPECT_EQ(index->ntotal, nb);
        auto reference = make_index(rule(SpillRule::Posterior));
        reference->add(nb, xb.data());
        expect_same_lists(*reference, *index);
    }
}

/// An assigner whose batch size is out of range.
struct ZeroBatchAssigner : RecordingAssigner {
    ZeroBatchAssigner() : RecordingAssigner(0, false) {}
};

TEST_F(AddAssigner, ABadBatchSizeIsRefusedByName) {
    auto index = make_index(rule(SpillRule::Posterior));
    index->set_assigner(std::make_shared<ZeroBatchAssigner>());
    try {
        index->add(10, xb.data());
        FAIL() << "no exception";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("batch_size 0"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(index->ntotal, 0);
}

TEST(SyntheticGenerator, RowsAreMakeSyntheticsInAnyBatches) {
    datasets::SyntheticParameters p;
    p.n_base = 3000;
    p.n_query = 50;
    p.n_train = 70;
    p.d = 12;
    p.n_clusters = 20;
    p.low_rank = 3;
    p.groundtruth_k = 1;
    const datasets::Dataset ds = datasets::make_synthetic(p);
    const datasets::SyntheticGenerator gen(p);
    EXPECT_EQ(gen.d(), p.d);
    using Part = datasets::SyntheticGenerator::Part;
    std::vector<float> rows(size_t(p.n_base) * p.d);
    // batches of uneven sizes, drawn out of order
    const int64_t cuts[] = {0, 1, 999, 1000, 2500, 3000};
    for (int c = 4; c >= 0; c--) {
        gen.draw(
            Part::Base,
            cuts[c],
            cuts[c + 1] - cuts[c],
            rows.data() + cuts[c] * p.d);
    }
    EXPECT_EQ(rows, ds.base.data);
    std::vector<float> query(size_t(p.n_query) * p.d);
    gen.draw(Part::Query, 0, p.n_query, query.data());
    EXPECT_EQ(query, ds.query.data);
    std::vector<float> train(size_t(p.n_train) * p.d);
    gen.draw(Part::Train, 0, p.n_train, train.data());
    EXPECT_EQ(train, ds.train.data);
    EXPECT_THROW(
        gen.draw(Part::Base, -1, 1, rows.data()), faiss::FaissException);
    p.low_rank = 0;
    EXPECT_THROW(datasets::SyntheticGenerator bad(p), faiss::FaissException);
}

} // namespace
