/**
 * Inputs a user gets wrong, and the failures of the machine around the
 * index: each gives a correct result or an exception that names the bad
 * value, never a crash, a silently wrong index or a file that looks fine and
 * is not. (Found by trying ~150 bad inputs as a user would.)
 */

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <sys/wait.h>

#include <thread>
#include <vector>

#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/impl/BlasCore.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "test_scratch.h"
#include "test_utils.h"

using faiss_gmm::idx_t;
using faiss_gmm::IndexIVFGMM;

namespace {

constexpr int kDim = 8;

using faiss_gmm::test::scratch_file;

/// The message of the FaissException f throws (fails the test when none).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    ADD_FAILURE() << "no exception";
    return "";
}

std::unique_ptr<IndexIVFGMM> trained_index(int nlist, int n) {
    const std::vector<float> x =
        faiss_gmm::test::overlapping_blobs(n, kDim, nlist, 11);
    auto index = std::make_unique<IndexIVFGMM>(kDim, nlist);
    index->build_params.gmm.niter = 3;
    index->build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    index->train(n, x.data());
    index->add(n, x.data());
    return index;
}

bool same_bytes(const std::string& a, const std::string& b) {
    std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(fa), {}) ==
           std::string(std::istreambuf_iterator<char>(fb), {});
}

TEST(Robustness, FailedWritesThrowAndKeepTheOldFile) {
    auto index = trained_index(8, 500);
    // a full device: the error surfaces at flush and must not be dropped
    if (std::ifstream("/dev/full").good()) {
        const std::string msg =
            error_of([&] { faiss_gmm::write_index(index.get(), "/dev/full"); });
        EXPECT_NE(msg.find("/dev/full"), std::string::npos) << msg;
    }
    // no such directory
    const std::string missing = scratch_file("no/such/dir/index.bin");
    EXPECT_NE(
        error_of([&] {
            faiss_gmm::write_index(index.get(), missing.c_str());
        }).find("cannot open"),
        std::string::npos);
    // a write that fails half way leaves the previous file as it was
    const std::string path = scratch_file("kept.bin");
    const std::string copy = scratch_file("kept_copy.bin");
    faiss_gmm::write_index(index.get(), path.c_str());
    faiss_gmm::write_index(index.get(), copy.c_str());
    IndexIVFGMM empty(kDim, 8);
    empty.set_gmm(index->gmm);
    faiss::IndexIDMap wrapper(&empty); // refused by write_index
    EXPECT_THROW(
        faiss_gmm::write_index(&wrapper, path.c_str()), faiss::FaissException);
    EXPECT_TRUE(same_bytes(path, copy));
    std::unique_ptr<faiss::Index> back(faiss_gmm::read_index(path.c_str()));
    EXPECT_EQ(back->ntotal, index->ntotal);
    std::remove(path.c_str());
    std::remove(copy.c_str());
}

TEST(Robustness, WritingRefusesWhatReadingRefuses) {
    struct Case {
        const char* named;
        void (*spoil)(IndexIVFGMM&);
    };
    const Case cases[] = {
        {"nprobe", [](IndexIVFGMM& i) { i.nprobe = size_t(1) << 41; }},
        {"prune_margin",
         [](IndexIVFGMM& i) {
             i.search_options.prune_margin =
                 std::numeric_limits<float>::infinity();
         }},
        {"min_expected_hits",
         [](IndexIVFGMM& i) { i.search_options.min_expected_hits = -1; }},
        {"distance_ratio",
         [](IndexIVFGMM& i) {
             i.search_options.distance_ratio =
                 std::numeric_limits<float>::infinity();
         }},
        {"niter", [](IndexIVFGMM& i) { i.build_params.gmm.niter = -1; }},
        {"block_size",
         [](IndexIVFGMM& i) { i.build_params.gmm.block_size = 0; }},
        {"reg_covar",
         [](IndexIVFGMM& i) {
             i.build_params.gmm.reg_covar =
                 std::numeric_limits<float>::infinity();
         }},
        {"max_assign",
         [](IndexIVFGMM& i) { i.build_params.spill.max_assign = 0; }},
    };
    for (const Case& c : cases) {
        auto index = trained_index(4, 100);
        c.spoil(*index);
        faiss::VectorIOWriter writer;
        const std::string msg =
            error_of([&] { faiss_gmm::write_index(index.get(), &writer); });
        EXPECT_NE(msg.find(c.named), std::string::npos)
            << c.named << ": " << msg;
    }
}

TEST(Robustness, IdenticalTrainingRowsStillFindThemselves) {
    // every training row the same point: the components collapse, yet a
    // search with nprobe = 1 must find the stored vectors
    std::vector<float> x(200 * kDim, 0.25f);
    for (const char* code : {"IVF4_GMM,Flat", "IVF4_GMM_nospill,Flat"}) {
        SCOPED_TRACE(code);
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::index_factory(kDim, code));
        auto* ivf = faiss_gmm::try_extract_index_ivfgmm(index.get());
        ivf->build_params.train_device = faiss_gmm::TrainDevice::Cpu;
        index->train(200, x.data());
        index->add(200, x.data());
        EXPECT_EQ(index->ntotal, 200);
        faiss_gmm::set_index_parameters(index.get(), "nprobe=1");
        std::vector<float> dis(5);
        std::vector<idx_t> labels(5);
        index->search(1, x.data(), 5, dis.data(), labels.data());
        for (int r = 0; r < 5; r++) {
            EXPECT_GE(labels[r], 0) << "rank " << r;
            EXPECT_EQ(dis[r], 0.0f);
        }
    }
}

TEST(Robustness, HugeValuesAreRefusedNamingThem) {
    std::vector<float> x = faiss_gmm::test::overlapping_blobs(200, kDim, 4, 3);
    x[37 * kDim + 5] = 1e18f;
    IndexIVFGMM index(kDim, 4);
    index.build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    const std::string msg = error_of([&] { index.train(200, x.data()); });
    EXPECT_NE(msg.find("vector 37 component 5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
}

TEST(Robustness, ParsingIsStrict) {
    for (const char* bad :
         {"IVF64_GMM_m 2,Flat", "IVF64_GMM_m2 ,Flat", "IVF64_GMM_m2.5,Flat"}) {
        EXPECT_THROW(
            delete faiss_gmm::index_factory(kDim, bad), faiss::FaissException)
            << bad;
    }
    IndexIVFGMM index(kDim, 16);
    const std::string msg = error_of(
        [&] { index.set_search_parameters("nprobe=99999999999999999999"); });
    EXPECT_NE(msg.find("nprobe=99999999999999999999"), std::string::npos)
        << msg;
    EXPECT_EQ(index.nprobe, 1u) << "not clamped";
    EXPECT_THROW(
        index.set_build_parameters("niter=4294967297"), faiss::FaissException);
    EXPECT_THROW(
        index.set_search_parameters("prune_margin=1e39"),
        faiss::FaissException);
}

TEST(Robustness, TrainToolFailsOnBadOptionsAndFullDisk) {
    const std::string data = scratch_file("tool.fvecs");
    {
        const std::vector<float> x =
            faiss_gmm::test::overlapping_blobs(300, kDim, 4, 9);
        std::ofstream f(data, std::ios::binary);
        for (int i = 0; i < 300; i++) {
            const int32_t d = kDim;
            f.write(reinterpret_cast<const char*>(&d), 4);
            f.write(reinterpret_cast<const char*>(&x[i * kDim]), kDim * 4);
        }
    }
    const std::string tool = FAISS_GMM_TRAIN_TOOL;
    if (tool.empty()) {
        GTEST_SKIP() << "built without the eval tools";
    }
    const std::string quiet = " > /dev/null 2>&1";
    auto run = [&](const std::string& args) {
        const int status = std::system((tool + " " + args + quiet).c_str());
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    };
    EXPECT_EQ(run("--data " + data + " --k 4 --niter 2"), 0);
    EXPECT_NE(run("--data " + data + " --k 4 --niter 4294967297"), 0);
    if (std::ifstream("/dev/full").good()) {
        EXPECT_NE(
            run("--data " + data + " --k 4 --niter 2 --out /dev/full"), 0);
    }
    std::remove(data.c_str());
}

TEST(Robustness, ConcurrentSearchesCountExactly) {
    auto index = trained_index(8, 600);
    index->nprobe = 8;
    const std::vector<float> q =
        faiss_gmm::test::overlapping_blobs(20, kDim, 8, 12);
    // one search alone: the counts every concurrent search adds
    faiss_gmm::indexIVFGMM_stats.reset();
    {
        std::vector<float> dis(20 * 5);
        std::vector<idx_t> labels(20 * 5);
        index->search(20, q.data(), 5, dis.data(), labels.data());
    }
    const faiss_gmm::IndexIVFGMMStats one = faiss_gmm::indexIVFGMM_stats;
    EXPECT_EQ(one.ncoarse_distances, 20u * 8 + one.nbound_distances);
    faiss_gmm::indexIVFGMM_stats.reset();
    const int threads = 4, rounds = 25;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
        pool.emplace_back([&] {
            std::vector<float> dis(20 * 5);
            std::vector<idx_t> labels(20 * 5);
            for (int r = 0; r < rounds; r++) {
                index->search(20, q.data(), 5, dis.data(), labels.data());
            }
        });
    }
    for (std::thread& t : pool) {
        t.join();
    }
    const size_t calls = size_t(threads) * rounds;
    const faiss_gmm::IndexIVFGMMStats& all = faiss_gmm::indexIVFGMM_stats;
    EXPECT_EQ(all.nq, calls * 20);
    EXPECT_EQ(all.nfine_distances, calls * one.nfine_distances);
    EXPECT_EQ(all.nentries_scanned, calls * one.nentries_scanned);
    EXPECT_EQ(all.ncoarse_distances, calls * one.ncoarse_distances);
    EXPECT_EQ(all.nlists_pruned, calls * one.nlists_pruned);
}

} // namespace

TEST(Robustness, SlowBlasKernelsAreNamedWithTheFix) {
    using faiss_gmm::impl::slow_blas_advice;
    // OpenBLAS's SSE3 fallback on a CPU with AVX-512 / AVX2: the variable
    // to set, naming the kernels.
    const std::string avx512 = slow_blas_advice("Prescott", true, true, false);
    EXPECT_NE(avx512.find("Prescott"), std::string::npos) << avx512;
    EXPECT_NE(avx512.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos)
        << avx512;
    const std::string avx2 = slow_blas_advice("Nehalem", true, false, false);
    EXPECT_NE(avx2.find("OPENBLAS_CORETYPE=Haswell"), std::string::npos)
        << avx2;
    // Nothing to say: the user chose, the kernels fit, the CPU is old, or
    // the BLAS is not OpenBLAS.
    EXPECT_EQ(slow_blas_advice("Prescott", true, true, true), "");
    EXPECT_EQ(slow_blas_advice("SkylakeX", true, true, false), "");
    EXPECT_EQ(slow_blas_advice("Haswell", true, false, false), "");
    EXPECT_EQ(slow_blas_advice("Prescott", false, false, false), "");
    EXPECT_EQ(slow_blas_advice("", true, true, false), "");
    // This process's BLAS is described either way.
    EXPECT_FALSE(faiss_gmm::impl::blas_description().empty());
}
