/**
 * GPU search sharded by vectors (faiss_gmm/gpu/GpuIndexIVFGMMShards.h):
 * one and two devices return the same neighbours, every id at most once,
 * and agree with the CPU index. Skips without a usable device; the
 * two-device test skips with fewer than two.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMMShards.h>
#include <faiss_gmm/gpu/GpuMultiEStep.h>

namespace {

using faiss_gmm::idx_t;
namespace fg = faiss_gmm::gpu;

#define REQUIRE_DEVICES(count)                                                 \
    do {                                                                       \
        if (fg::gpu_device_count() < (count)) {                                \
            GTEST_SKIP() << "needs " << (count) << " CUDA device(s), "         \
                         << fg::gpu_device_count() << " usable";               \
        }                                                                      \
    } while (0)

constexpr int kDim = 16;
constexpr size_t kLists = 32;

std::vector<float> blobs(idx_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> gauss;
    std::vector<float> c(size_t(64) * kDim);
    for (float& v : c) {
        v = 3 * gauss(rng);
    }
    std::vector<float> x(size_t(n) * kDim);
    for (idx_t i = 0; i < n; i++) {
        const int b = int(rng() % 64);
        for (int l = 0; l < kDim; l++) {
            x[size_t(i) * kDim + l] = c[size_t(b) * kDim + l] + gauss(rng);
        }
    }
    return x;
}

/// A trained and filled CPU index (n vectors, nprobe 8).
std::unique_ptr<faiss_gmm::IndexIVFGMM> cpu_index(const std::vector<float>& x) {
    std::unique_ptr<faiss_gmm::IndexIVFGMM> index(
        new faiss_gmm::IndexIVFGMM(kDim, kLists));
    index->build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    const idx_t n = idx_t(x.size() / kDim);
    index->train(n, x.data());
    index->add(n, x.data());
    index->nprobe = 8;
    // the shards' results are compared with this index's: list pruning
    // bounds differently on the GPU and on the CPU, so it is off
    index->search_options.prune_margin = 0;
    index->search_options.min_expected_hits = 0;
    return index;
}

struct Results {
    std::vector<float> distances;
    std::vector<idx_t> labels;
};

Results search(const faiss::Index& index, const std::vector<float>& q, int k) {
    const idx_t nq = idx_t(q.size() / kDim);
    Results r;
    r.distances.resize(size_t(nq) * k);
    r.labels.resize(size_t(nq) * k);
    index.search(nq, q.data(), k, r.distances.data(), r.labels.data());
    return r;
}

void expect_unique_ids(const Results& r, int k) {
    for (size_t q = 0; q * k < r.labels.size(); q++) {
        std::set<idx_t> ids;
        for (int j = 0; j < k; j++) {
            const idx_t id = r.labels[q * k + j];
            if (id >= 0) {
                EXPECT_TRUE(ids.insert(id).second)
                    << "query " << q << " returns id " << id << " twice";
            }
        }
    }
}

/// Fraction of b's ids that a also returns, over all queries.
double overlap(const Results& a, const Results& b, int k) {
    size_t hits = 0, total = 0;
    for (size_t q = 0; q * k < b.labels.size(); q++) {
        std::set<idx_t> ids(
            a.labels.begin() + q * k, a.labels.begin() + (q + 1) * k);
        for (int j = 0; j < k; j++) {
            if (b.labels[q * k + j] >= 0) {
                total++;
                hits += ids.count(b.labels[q * k + j]);
            }
        }
    }
    return total ? double(hits) / total : 1.0;
}

TEST(GpuIndexShards, OneDeviceMatchesCpuIndex) {
    REQUIRE_DEVICES(1);
    const idx_t n = 20000;
    const std::vector<float> x = blobs(n, 1);
    auto cpu = cpu_index(x);
    std::unique_ptr<faiss::IndexShards> shards(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {0}));
    EXPECT_EQ(shards->ntotal, n);
    EXPECT_TRUE(shards->is_trained);
    const std::vector<float> q = blobs(300, 2);
    const int k = 10;
    const Results on_gpu = search(*shards, q, k);
    const Results on_cpu = search(*cpu, q, k);
    expect_unique_ids(on_gpu, k);
    // The GPU add recomputes each vector's lists with the same model and
    // rule; rounding may move a rare border vector.
    EXPECT_GE(overlap(on_gpu, on_cpu, k), 0.99);
}

TEST(GpuIndexShards, TwoDevicesMatchOneDevice) {
    REQUIRE_DEVICES(2);
    const idx_t n = 20000;
    const std::vector<float> x = blobs(n, 1);
    auto cpu = cpu_index(x);
    std::unique_ptr<faiss::IndexShards> one(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {0}));
    std::unique_ptr<faiss::IndexShards> two(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {0, 1}));
    EXPECT_EQ(two->ntotal, n);
    ASSERT_EQ(two->count(), 2);
    EXPECT_EQ(two->at(0)->ntotal + two->at(1)->ntotal, n);
    const std::vector<float> q = blobs(300, 2);
    const int k = 10;
    const Results a = search(*one, q, k), b = search(*two, q, k);
    expect_unique_ids(b, k);
    // Same lists per vector, same probes per query: the same neighbours
    // (distances equal; ids equal up to ties).
    for (size_t i = 0; i < a.distances.size(); i++) {
        ASSERT_NEAR(
            b.distances[i], a.distances[i], 1e-4f * (1 + a.distances[i]))
            << "entry " << i;
    }
    EXPECT_GE(overlap(b, a, k), 0.999);

    // Later adds are split over the shards, ids continuing from ntotal.
    const std::vector<float> extra = blobs(1000, 3);
    two->add(1000, extra.data());
    EXPECT_EQ(two->ntotal, n + 1000);
    std::vector<float> dist(1);
    std::vector<idx_t> label(1);
    for (idx_t i : {idx_t(0), idx_t(999)}) {
        two->search(1, extra.data() + i * kDim, 1, dist.data(), label.data());
        EXPECT_EQ(label[0], n + i);
        EXPECT_NEAR(dist[0], 0.0f, 1e-2f);
    }
}

TEST(GpuIndexShards, BadArguments) {
    REQUIRE_DEVICES(1);
    faiss_gmm::IndexIVFGMM untrained(kDim, kLists);
    EXPECT_THROW(
        fg::index_ivfgmm_cpu_to_gpu_shards(&untrained, {0}),
        faiss::FaissException);
    const std::vector<float> x = blobs(3000, 4);
    auto cpu = cpu_index(x);
    EXPECT_THROW(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {}),
        faiss::FaissException);
    EXPECT_THROW(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {0, 0}),
        faiss::FaissException);
    EXPECT_THROW(
        fg::index_ivfgmm_cpu_to_gpu_shards(cpu.get(), {fg::gpu_device_count()}),
        faiss::FaissException);
}

} // namespace
