/**
 * gpu::GpuListAssigner, the GPU assignment of the CPU index's add(): the
 * lists it gives equal the CPU rule's (assign_lists) up to floating-point
 * ties, for every rule the kernel serves, spherical and diagonal models,
 * batches cut into several pipelined chunks; rules it cannot serve fall
 * back to the CPU; a changed model is uploaded again; an index built with
 * it holds the same lists. Skipped without a usable CUDA device (the config
 * checks run everywhere).
 *
 * Ties: the kernel's fp32 direct differences and the CPU's BLAS expansion
 * may order two components differently when their scores agree to ~1e-6
 * relative, and a posterior that sits on tau may fall either side. The
 * tests allow one differing vector in a thousand, and require the primary
 * lists of a differing vector to be at near-equal distance.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/gpu/GpuListAssigner.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "test_utils.h"

using namespace faiss_gmm;

namespace {

constexpr int kDim = 24;
constexpr int kNlist = 40;
constexpr int kN = 10007; // not a multiple of the chunk or batch sizes

GaussianMixture trained_model(const std::vector<float>& x, CovarianceType c) {
    GmmParameters params;
    params.covariance = c;
    params.niter = 6;
    params.kmeans_niter = 5;
    GaussianMixture model(kDim, kNlist, c);
    model.train(idx_t(x.size() / kDim), x.data(), params);
    return model;
}

double l2(const float* a, const float* b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) {
        const double t = double(a[j]) - b[j];
        s += t * t;
    }
    return s;
}

/// GPU and CPU lists of x agree but for at most n / 1000 vectors, whose
/// primaries (when they differ) are near-ties by L2 or by posterior.
void expect_lists_agree(
    const GaussianMixture& gmm,
    int m,
    const std::vector<float>& x,
    const std::vector<idx_t>& gpu,
    const std::vector<idx_t>& cpu) {
    const size_t n = x.size() / kDim;
    ASSERT_EQ(gpu.size(), n * m);
    ASSERT_EQ(cpu.size(), n * m);
    size_t differing = 0;
    for (size_t i = 0; i < n; i++) {
        bool same = true;
        for (int a = 0; a < m; a++) {
            same = same && gpu[i * m + a] == cpu[i * m + a];
        }
        if (same) {
            continue;
        }
        differing++;
        const idx_t pg = gpu[i * m], pc = cpu[i * m];
        ASSERT_GE(pg, 0) << "vector " << i;
        ASSERT_LT(pg, kNlist) << "vector " << i;
        if (pg != pc) {
            const float* xi = x.data() + i * kDim;
            const double dg = l2(xi, gmm.means.data() + pg * kDim, kDim);
            const double dc = l2(xi, gmm.means.data() + pc * kDim, kDim);
            std::vector<float> lj(kNlist);
            gmm.log_joint(1, xi, lj.data());
            const bool l2_tie = std::abs(dg - dc) <= 1e-4 * std::max(dg, dc);
            const bool post_tie =
                std::abs(lj[pg] - lj[pc]) <= 1e-4 * std::abs(lj[pc]) + 1e-4;
            EXPECT_TRUE(l2_tie || post_tie)
                << "vector " << i << ": primary " << pg << " (GPU) vs " << pc
                << " (CPU), L2 " << dg << " vs " << dc;
        }
    }
    EXPECT_LE(differing, std::max<size_t>(1, n / 1000));
}

struct GpuAdd : ::testing::Test {
    std::vector<float> x = faiss_gmm::test::overlapping_blobs(kN, kDim, 60, 11);

    void SetUp() override {
        FAISS_GMM_SKIP_WITHOUT_GPU();
    }

    static gpu::GpuListAssignerConfig small_pieces() {
        gpu::GpuListAssignerConfig config;
        config.batch_size = 4000; // three batches, the last one short
        config.chunk_rows = 1500; // three chunks per batch: both buffers
        return config;
    }
};

std::vector<SpillParameters> kernel_rules() {
    std::vector<SpillParameters> rules;
    SpillParameters p;
    p.rule = SpillRule::Posterior;
    p.max_assign = 3;
    p.tau = 0.02f;
    rules.push_back(p); // primary = nearest mean
    p.primary_is_nearest_mean = false;
    rules.push_back(p); // primary = argmax posterior
    p.temperature = 1;
    p.max_assign = 16; // the kernel's widest
    rules.push_back(p);
    SpillParameters none;
    none.rule = SpillRule::None;
    none.max_assign = 1;
    rules.push_back(none);
    none.primary_is_nearest_mean = false;
    rules.push_back(none);
    SpillParameters closure;
    closure.rule = SpillRule::Closure;
    closure.max_assign = 4;
    closure.closure_ratio = 1.2f;
    rules.push_back(closure);
    return rules;
}

TEST_F(GpuAdd, ListsEqualTheCpuRuleUpToTies) {
    for (CovarianceType c :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        SCOPED_TRACE(covariance_type_name(c));
        const GaussianMixture gmm = trained_model(x, c);
        IndexIVFGMM index(kDim, kNlist);
        index.set_gmm(gmm);
        gpu::GpuListAssigner assigner(small_pieces());
        for (const SpillParameters& spill : kernel_rules()) {
            SCOPED_TRACE(
                std::string(spill_rule_name(spill.rule)) + " m " +
                std::to_string(spill.max_assign) +
                (spill.primary_is_nearest_mean ? " nearest" : " argmax"));
            const int m = spill.max_assign;
            std::vector<idx_t> gpu_lists(size_t(kN) * m, -7);
            std::vector<idx_t> cpu_lists(size_t(kN) * m);
            // one call over several chunks, as add_with_ids makes
            assigner.assign(
                gmm, *index.quantizer, spill, kN, x.data(), gpu_lists.data());
            assign_lists(
                gmm, *index.quantizer, spill, kN, x.data(), cpu_lists.data());
            expect_lists_agree(gmm, m, x, gpu_lists, cpu_lists);
        }
        const gpu::GpuListAssignerStats s = assigner.stats();
        EXPECT_EQ(s.gpu_vectors, int64_t(kN) * int64_t(kernel_rules().size()));
        EXPECT_EQ(s.cpu_vectors, 0);
        EXPECT_GT(s.device_bytes, 0u);
        EXPECT_GT(s.pinned_bytes, 0u);
    }
}

TEST_F(GpuAdd, RulesTheKernelCannotServeRunOnTheCpu) {
    const GaussianMixture gmm = trained_model(x, CovarianceType::Spherical);
    IndexIVFGMM index(kDim, kNlist);
    index.set_gmm(gmm);
    gpu::GpuListAssigner assigner(small_pieces());
    for (SpillRule r : {SpillRule::Soar, SpillRule::Rair}) {
        SpillParameters spill;
        spill.rule = r;
        spill.max_assign = 2;
        std::vector<idx_t> got(size_t(kN) * 2), want(size_t(kN) * 2);
        assigner.assign(gmm, *index.quantizer, spill, kN, x.data(), got.data());
        assign_lists(gmm, *index.quantizer, spill, kN, x.data(), want.data());
        EXPECT_EQ(got, want) << spill_rule_name(r);
    }
    EXPECT_EQ(assigner.stats().cpu_vectors, 2 * kN);
    EXPECT_EQ(assigner.stats().gpu_vectors, 0);
}

TEST_F(GpuAdd, AChangedModelIsUploadedAgain) {
    const GaussianMixture a = trained_model(x, CovarianceType::Spherical);
    GaussianMixture b = a;
    // b: the means of a in reverse order (a different model, same shape)
    for (int k = 0; k < kNlist; k++) {
        for (int j = 0; j < kDim; j++) {
            b.means[k * kDim + j] = a.means[(kNlist - 1 - k) * kDim + j];
        }
    }
    IndexIVFGMM ia(kDim, kNlist), ib(kDim, kNlist);
    ia.set_gmm(a);
    ib.set_gmm(b);
    SpillParameters spill;
    spill.rule = SpillRule::None;
    spill.max_assign = 1;
    gpu::GpuListAssigner assigner(small_pieces());
    for (const IndexIVFGMM* index : {&ia, &ib, &ia}) {
        std::vector<idx_t> got(kN), want(kN);
        assigner.assign(
            index->gmm, *index->quantizer, spill, kN, x.data(), got.data());
        assign_lists(
            index->gmm, *index->quantizer, spill, kN, x.data(), want.data());
        expect_lists_agree(index->gmm, 1, x, got, want);
    }
}

TEST_F(GpuAdd, AnIndexAddedOnTheGpuHoldsTheSameLists) {
    for (const char* code : {"Flat", "PQ6"}) {
        SCOPED_TRACE(code);
        const std::string key =
            std::string("IVF40_GMM_m3_tau0.02,") + code; // kNlist lists
        std::unique_ptr<faiss::Index> made(
            faiss_gmm::index_factory(kDim, key.c_str()));
        auto* cpu = dynamic_cast<IndexIVFGMM*>(made.get());
        ASSERT_NE(cpu, nullptr);
        cpu->build_params.gmm.niter = 4;
        cpu->build_params.gmm.kmeans_niter = 4;
        cpu->train(kN, x.data());
        std::unique_ptr<faiss::Index> copy(faiss_gmm::clone_index(cpu));
        auto* on_gpu = dynamic_cast<IndexIVFGMM*>(copy.get());
        ASSERT_NE(on_gpu, nullptr);
        cpu->add(kN, x.data());
        std::vector<idx_t> ids(kN);
        for (int i = 0; i < kN; i++) {
            ids[i] = 1000 + 3 * i;
        }
        on_gpu->verbose = true; // the progress and summary lines
        gpu::add_with_gpu_assignment(
            *on_gpu, kN, x.data(), ids.data(), small_pieces());
        on_gpu->verbose = false;
        EXPECT_EQ(on_gpu->get_assigner(), nullptr); // restored
        EXPECT_EQ(on_gpu->ntotal, cpu->ntotal);
        faiss_gmm::test::expect_records_consistent(*on_gpu);
        // the same lists per vector but for ties
        const auto where_cpu = faiss_gmm::test::lists_of_ids(*cpu);
        const auto where_gpu = faiss_gmm::test::lists_of_ids(*on_gpu);
        size_t differing = 0;
        for (int i = 0; i < kN; i++) {
            std::vector<idx_t> a = where_cpu.at(i), b = where_gpu.at(ids[i]);
            std::sort(a.begin(), a.end());
            std::sort(b.begin(), b.end());
            differing += a != b;
        }
        EXPECT_LE(differing, size_t(kN / 1000));
        // and the same search results (codes of each copy against its list)
        std::vector<float> dc(10 * 50), dg(10 * 50);
        std::vector<idx_t> lc(10 * 50), lg(10 * 50);
        cpu->nprobe = 8;
        on_gpu->nprobe = 8;
        cpu->search(50, x.data(), 10, dc.data(), lc.data());
        on_gpu->search(50, x.data(), 10, dg.data(), lg.data());
        size_t same = 0;
        for (size_t j = 0; j < lc.size(); j++) {
            same += lg[j] == (lc[j] < 0 ? -1 : 1000 + 3 * lc[j]);
        }
        EXPECT_GE(same, lc.size() * 99 / 100);
    }
}

TEST(GpuListAssignerConfig, OutOfRangeFieldsAreNamed) {
    gpu::GpuListAssignerConfig config;
    EXPECT_NO_THROW(config.check());
    config.batch_size = 0;
    EXPECT_THROW(config.check(), faiss::FaissException);
    config.batch_size = 1;
    config.chunk_rows = 0;
    try {
        config.check();
        FAIL() << "no exception";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("chunk_rows=0"), std::string::npos)
            << e.what();
    }
    config.chunk_rows = 1;
    config.device = -1;
    EXPECT_THROW(config.check(), faiss::FaissException);
}

} // namespace
