/**
 * What several test files share: skipping GPU tests without a device, data
 * generators, parameter shorthands and the invariant checks of spilled
 * indexes.
 */

#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include <faiss_gmm/IndexIVFGMM.h>

#ifdef FAISS_GMM_WITH_GPU
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#endif

namespace faiss_gmm {
namespace test {

/// Whether device 0 can run the GPU code (false in CPU-only builds).
inline bool gpu_usable() {
#ifdef FAISS_GMM_WITH_GPU
    return gpu::gpu_is_available(0);
#else
    return false;
#endif
}

/// Skips the current test, saying why, when no CUDA device is usable.
#define FAISS_GMM_SKIP_WITHOUT_GPU()                                           \
    do {                                                                       \
        if (!faiss_gmm::test::gpu_usable()) {                                  \
            GTEST_SKIP() << "no usable CUDA device: GPU test skipped";         \
        }                                                                      \
    } while (0)

/**
 * n points around nblobs Gaussian centres (centres N(0, 9 I), per-blob
 * spreads 0.5 .. 1.1), overlapping so that many points sit between blobs.
 */
inline std::vector<float>
overlapping_blobs(int n, int d, int nblobs, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> centers(size_t(nblobs) * d);
    for (float& c : centers) {
        c = 3.0f * normal(rng);
    }
    std::uniform_int_distribution<int> pick(0, nblobs - 1);
    std::vector<float> x(size_t(n) * d);
    for (int i = 0; i < n; i++) {
        const int b = pick(rng);
        const float scale = 0.5f + 0.1f * (b % 7);
        for (int j = 0; j < d; j++) {
            x[size_t(i) * d + j] =
                centers[size_t(b) * d + j] + scale * normal(rng);
        }
    }
    return x;
}

/// Build parameters from their two parts.
inline IVFGMMBuildParameters build_params(
    const GmmParameters& gmm,
    const SpillParameters& spill = SpillParameters()) {
    IVFGMMBuildParameters p;
    p.gmm = gmm;
    p.spill = spill;
    return p;
}

/// Build parameters with the given spill rule and default training.
inline IVFGMMBuildParameters build_params(const SpillParameters& spill) {
    return build_params(GmmParameters(), spill);
}

/// id -> lists holding it, read from the inverted lists.
inline std::map<idx_t, std::vector<idx_t>>
lists_of_ids(const IndexIVFGMM& index) {
    std::map<idx_t, std::vector<idx_t>> where;
    for (size_t l = 0; l < index.nlist; l++) {
        const size_t size = index.invlists->list_size(l);
        const idx_t* ids = index.invlists->get_ids(l);
        for (size_t j = 0; j < size; j++) {
            where[ids[j]].push_back(idx_t(l));
        }
    }
    return where;
}

/// Every entry's spill record lists exactly the other lists of its
/// vector; nentries and ntotal match the lists.
inline void expect_records_consistent(const IndexIVFGMM& index) {
    const auto where = lists_of_ids(index);
    const int w = index.spill_records.width;
    size_t entries = 0;
    for (size_t l = 0; l < index.nlist; l++) {
        const size_t size = index.invlists->list_size(l);
        ASSERT_EQ(index.spill_records.records[l].size(), size * w);
        const idx_t* ids = index.invlists->get_ids(l);
        for (size_t j = 0; j < size; j++) {
            std::set<idx_t> expected(
                where.at(ids[j]).begin(), where.at(ids[j]).end());
            expected.erase(idx_t(l));
            std::set<idx_t> recorded;
            bool padding = false;
            for (int t = 0; t < w; t++) {
                const int32_t o = index.spill_records.records[l][j * w + t];
                if (o < 0) {
                    padding = true;
                } else {
                    ASSERT_FALSE(padding) << "-1 padding must come last";
                    recorded.insert(o);
                }
            }
            EXPECT_EQ(recorded, expected) << "list " << l << " entry " << j;
        }
        entries += size;
    }
    EXPECT_EQ(entries, index.nentries());
    EXPECT_EQ(where.size(), size_t(index.ntotal));
}

} // namespace test
} // namespace faiss_gmm
