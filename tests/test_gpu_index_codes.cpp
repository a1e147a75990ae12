/**
 * GpuIndexIVFGMM over FAISS's scalar-quantizer codes (SQ8 and SQfp16,
 * residuals to each list's mean) against the CPU IndexIVFGMM over
 * IndexIVFScalarQuantizer on the same model and data: the code trained
 * alike, the lists byte for byte (the GPU encodes as FAISS does), search
 * results and counters (but for near-ties), copies both ways,
 * reconstruction, removal, training on the GPU, and the codes that stay on
 * the CPU. Every test skips without a usable CUDA device.
 */

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/IDSelector.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

#include "gpu_index_oracles.h"
#include "test_utils.h"

using namespace faiss_gmm;
using namespace faiss_gmm::test;

namespace {

/// FAISS's IVF index of the named SQ code (as "IVF<n>,<name>" builds it).
faiss::IndexIVF* sq_codes(const std::string& name, int d, size_t nlist) {
    const auto qtype = name == "SQ8" ? faiss::ScalarQuantizer::QT_8bit
                                     : faiss::ScalarQuantizer::QT_fp16;
    auto* ivf = new faiss::IndexIVFScalarQuantizer(
        new faiss::IndexFlatL2(d), size_t(d), nlist, qtype);
    ivf->own_fields = true;
    return ivf;
}

/// A model, n base vectors and nq queries drawn from it.
struct CodeData {
    GaussianMixture model;
    std::vector<float> x, q;
    CodeData(
        int d, int nlist, CovarianceType cov, uint64_t seed, idx_t n, idx_t nq)
        : model(make_model(d, nlist, cov, seed)),
          x(sample(model, n, seed + 1)),
          q(sample(model, nq, seed + 2)) {}
};

/// A CPU / GPU pair over the named code on one model, the code trained on
/// x by each side, searching unpruned by default.
Pair make_code_pair(
    const GaussianMixture& model,
    const std::string& codes,
    const SpillParameters& spill,
    idx_t n,
    const float* x) {
    GmmParameters gp;
    gp.covariance = model.covariance;
    Pair p;
    p.cpu.reset(new IndexIVFGMM(
        sq_codes(codes, model.d, size_t(model.k)), build_params(gp, spill)));
    p.cpu->set_gmm(model);
    p.cpu->train_codes(n, x);
    GpuIndexIVFGMMConfig config;
    config.codes = codes;
    p.gpu.reset(new GpuIndexIVFGMM(
        model.d, size_t(model.k), build_params(gp, spill), config));
    p.gpu->set_gmm(model);
    EXPECT_EQ(p.gpu->is_trained, codes != "SQ8");
    p.gpu->train_codes(n, x);
    EXPECT_TRUE(p.gpu->is_trained);
    EXPECT_EQ(std::string(p.gpu->codes_name()), codes);
    p.cpu->search_options = p.gpu->search_options = unpruned_options();
    return p;
}

/// make_code_pair, then x added to both sides: the GPU encodes each copy
/// against its own list's mean as FAISS does, so the lists hold the same
/// bytes.
Pair filled_code_pair(
    const GaussianMixture& model,
    const std::string& codes,
    int max_assign,
    idx_t n,
    const float* x) {
    SpillParameters spill;
    spill.max_assign = max_assign;
    Pair p = make_code_pair(model, codes, spill, n, x);
    p.cpu->add(n, x);
    p.gpu->add(n, x);
    expect_same_lists(*p.cpu, *p.gpu, x, n);
    return p;
}

const char* const kCodes[] = {"SQ8", "SQfp16"};

/// |found top-k & true top-k| / k, averaged over the nq queries.
double recall_at_k(idx_t nq, idx_t k, const idx_t* truth, const idx_t* found) {
    size_t hits = 0;
    for (idx_t i = 0; i < nq; i++) {
        const std::set<idx_t> t(truth + i * k, truth + (i + 1) * k);
        for (idx_t j = 0; j < k; j++) {
            hits += t.count(found[i * k + j]);
        }
    }
    return double(hits) / double(nq * k);
}

} // namespace

TEST(GpuIndexIVFGMMCodes, ListsSearchAndCopiesAgreeWithCpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 32, nlist = 40;
    const idx_t n = 6000, nq = 60;
    const CodeData data(d, nlist, CovarianceType::Spherical, 201, n, nq);
    const std::vector<float>& x = data.x;
    const std::vector<float>& q = data.q;
    for (const char* codes : kCodes) {
        SCOPED_TRACE(codes);
        Pair p = filled_code_pair(data.model, codes, 2, n, x.data());
        for (size_t nprobe : {size_t(1), size_t(5), size_t(nlist)}) {
            expect_same_search(
                *p.cpu,
                *p.gpu,
                nq,
                q.data(),
                20,
                search_params(nprobe),
                std::string(codes) + " nprobe=" + std::to_string(nprobe));
        }
        // reconstruction decodes the same code the same way
        std::vector<float> rc(d), rg(d);
        for (idx_t id : {idx_t(0), idx_t(123), n - 1}) {
            p.cpu->reconstruct(id, rc.data());
            p.gpu->reconstruct(id, rg.data());
            EXPECT_EQ(rc, rg) << "id " << id;
        }
        // GPU -> CPU -> GPU keeps code, lists and results
        IndexIVFGMM back;
        p.gpu->copyTo(&back);
        EXPECT_TRUE(back.is_trained);
        EXPECT_EQ(back.code_size, p.cpu->code_size);
        expect_same_lists(back, *p.gpu, x.data(), n);
        GpuIndexIVFGMM again(&back);
        EXPECT_EQ(std::string(again.codes_name()), codes);
        again.search_options = unpruned_options();
        expect_same_lists(*p.cpu, again, x.data(), n);
        expect_same_search(
            *p.cpu, again, nq, q.data(), 20, search_params(5), "copied back");
        // removal drops every copy on both sides alike
        faiss::IDSelectorRange range(1000, 2500);
        EXPECT_EQ(p.gpu->remove_ids(range), p.cpu->remove_ids(range));
        expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
        expect_same_search(
            *p.cpu, *p.gpu, nq, q.data(), 20, search_params(5), "removed");
    }
}

TEST(GpuIndexIVFGMMCodes, DiagonalModelAndOddDimension) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // d = 37: codes that do not fill 16-byte units (the component path)
    const CodeData data(37, 24, CovarianceType::Diagonal, 211, 4000, 40);
    for (const char* codes : kCodes) {
        SCOPED_TRACE(codes);
        Pair p = filled_code_pair(data.model, codes, 3, 4000, data.x.data());
        expect_same_search(
            *p.cpu, *p.gpu, 40, data.q.data(), 10, search_params(4), codes);
    }
}

TEST(GpuIndexIVFGMMCodes, TrainOnGpuThenSearch) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 20;
    const idx_t n = 8000, nq = 100;
    const CodeData data(d, nlist, CovarianceType::Spherical, 221, n, nq);
    const std::vector<float>& x = data.x;
    const std::vector<float>& q = data.q;
    // exact neighbours
    faiss::IndexFlatL2 flat(d);
    flat.add(n, x.data());
    const idx_t k = 10;
    std::vector<float> dt(nq * k);
    std::vector<idx_t> it(nq * k);
    flat.search(nq, q.data(), k, dt.data(), it.data());
    GmmParameters gp;
    gp.niter = 5;
    for (const char* codes : kCodes) {
        SCOPED_TRACE(codes);
        GpuIndexIVFGMMConfig config;
        config.codes = codes;
        GpuIndexIVFGMM gpu(d, nlist, build_params(gp), config);
        gpu.train(n, x.data());
        EXPECT_TRUE(gpu.is_trained);
        gpu.add(n, x.data());
        gpu.nprobe = nlist;
        std::vector<float> dg(nq * k);
        std::vector<idx_t> ig(nq * k);
        gpu.search(nq, q.data(), k, dg.data(), ig.data());
        // every list probed: recall is the code's own (SQ8 and fp16 keep
        // nearly every neighbour of these well separated points)
        EXPECT_GE(recall_at_k(nq, k, it.data(), ig.data()), 0.95);
        // the CPU copy trains nothing more and answers alike
        IndexIVFGMM cpu;
        gpu.copyTo(&cpu);
        cpu.nprobe = nlist;
        cpu.search_options = gpu.search_options = unpruned_options();
        expect_same_search(
            cpu, gpu, nq, q.data(), k, search_params(nlist), "trained on GPU");
    }
}

TEST(GpuIndexIVFGMMCodes, OtherCodesStayOnTheCpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 8;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 231);
    auto* sq4 = new faiss::IndexIVFScalarQuantizer(
        new faiss::IndexFlatL2(d),
        size_t(d),
        size_t(nlist),
        faiss::ScalarQuantizer::QT_4bit);
    sq4->own_fields = true;
    IndexIVFGMM cpu_sq4(sq4);
    cpu_sq4.set_gmm(model);
    expect_throw_naming(
        [&]() { GpuIndexIVFGMM g(&cpu_sq4); }, "another quantizer type");
    auto* pq = new faiss::IndexIVFPQ(
        new faiss::IndexFlatL2(d), size_t(d), size_t(nlist), 4, 8);
    pq->own_fields = true;
    IndexIVFGMM cpu_pq(pq);
    cpu_pq.set_gmm(model);
    expect_throw_naming([&]() { GpuIndexIVFGMM g(&cpu_pq); }, "IndexIVFPQ");
    GpuIndexIVFGMMConfig config;
    config.codes = "PQ8";
    expect_throw_naming(
        [&]() { GpuIndexIVFGMM g(d, nlist, IVFGMMBuildParameters(), config); },
        "PQ8");
}
