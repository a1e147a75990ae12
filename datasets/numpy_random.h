/**
 * numpy.random.default_rng(seed).permutation(n), bit for bit, in C++.
 *
 * The data set recipes (datasets/sift_debian_recipe.tsv) describe their
 * seeded split in numpy's words; this reproduces it so that the files made
 * here equal those made by the recipe's Python: numpy's SeedSequence
 * (entropy = seed, pool of 4 words) seeds a PCG64 generator (128-bit LCG,
 * XSL-RR output), and Generator.shuffle runs Fisher-Yates from the last
 * element down, drawing each index by masked rejection sampling
 * (random_interval: 32-bit draws, two per 64-bit output, while the bound
 * fits in 32 bits). Checked against numpy 1.24 (tests/test_sift_dataset.cpp).
 */

#pragma once

#include <cstdint>
#include <vector>

namespace faiss_gmm {
namespace datasets {

/// numpy's PCG64 bit generator as seeded by numpy.random.default_rng(seed).
class NumpyPcg64 {
   public:
    /// Seeds like numpy.random.default_rng(seed) (seed >= 0).
    explicit NumpyPcg64(uint64_t seed);

    /// Next 64-bit output (numpy's next_uint64).
    uint64_t next_uint64();

    /// Next 32-bit output (numpy's next_uint32: the low half of a 64-bit
    /// output, then its high half on the following call).
    uint32_t next_uint32();

    /// A uniform integer in [0, max] by masked rejection sampling (numpy's
    /// random_interval).
    uint64_t random_interval(uint64_t max);

   private:
    unsigned __int128 state_ = 0;
    unsigned __int128 increment_ = 0;
    bool has_uint32_ = false;
    uint32_t uinteger_ = 0;
};

/// numpy.random.default_rng(seed).permutation(n): a permutation of 0..n-1.
std::vector<int64_t> numpy_permutation(uint64_t seed, int64_t n);

} // namespace datasets
} // namespace faiss_gmm
