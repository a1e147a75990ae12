#include <datasets/numpy_random.h>

#include <utility>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace datasets {

namespace {

using u128 = unsigned __int128;

/// PCG64's LCG multiplier 0x2360ed051fc65da44385df649fccf645.
const u128 kMultiplier =
    (u128(0x2360ed051fc65da4ULL) << 64) | u128(0x4385df649fccf645ULL);

// numpy's SeedSequence hashing constants (numpy/random/bit_generator.pyx).
constexpr uint32_t kInitA = 0x43b0d7e5;
constexpr uint32_t kMultA = 0x931e8875;
constexpr uint32_t kInitB = 0x8b51f9dd;
constexpr uint32_t kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd;
constexpr uint32_t kMixMultR = 0x4973f715;
constexpr int kXShift = 16;
constexpr int kPoolSize = 4;

/// SeedSequence(seed).generate_state(4, uint64), i.e. 8 32-bit words
/// paired little-endian.
void seed_sequence_state(uint64_t seed, uint64_t out[4]) {
    // The entropy as 32-bit words, least significant first ([0] for 0).
    std::vector<uint32_t> entropy;
    for (uint64_t s = seed; s != 0; s >>= 32) {
        entropy.push_back(uint32_t(s));
    }
    if (entropy.empty()) {
        entropy.push_back(0);
    }
    uint32_t hash_const = kInitA;
    auto hashmix = [&](uint32_t value) {
        value ^= hash_const;
        hash_const *= kMultA;
        value *= hash_const;
        value ^= value >> kXShift;
        return value;
    };
    auto mix = [](uint32_t x, uint32_t y) {
        uint32_t result = kMixMultL * x - kMixMultR * y;
        result ^= result >> kXShift;
        return result;
    };
    uint32_t pool[kPoolSize];
    for (int i = 0; i < kPoolSize; i++) {
        pool[i] = hashmix(i < int(entropy.size()) ? entropy[i] : 0);
    }
    for (int src = 0; src < kPoolSize; src++) {
        for (int dst = 0; dst < kPoolSize; dst++) {
            if (src != dst) {
                pool[dst] = mix(pool[dst], hashmix(pool[src]));
            }
        }
    }
    for (size_t src = kPoolSize; src < entropy.size(); src++) {
        for (int dst = 0; dst < kPoolSize; dst++) {
            pool[dst] = mix(pool[dst], hashmix(entropy[src]));
        }
    }
    uint32_t words[8];
    uint32_t hash_b = kInitB;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % kPoolSize];
        v ^= hash_b;
        hash_b *= kMultB;
        v *= hash_b;
        v ^= v >> kXShift;
        words[i] = v;
    }
    for (int i = 0; i < 4; i++) {
        out[i] = uint64_t(words[2 * i]) | uint64_t(words[2 * i + 1]) << 32;
    }
}

} // namespace

NumpyPcg64::NumpyPcg64(uint64_t seed) {
    uint64_t s[4];
    seed_sequence_state(seed, s);
    // pcg64_set_seed: state from words 0 (high) and 1 (low), the stream
    // from words 2 (high) and 3 (low); pcg_setseq_128_srandom_r.
    const u128 initstate = (u128(s[0]) << 64) | s[1];
    const u128 initseq = (u128(s[2]) << 64) | s[3];
    state_ = 0;
    increment_ = (initseq << 1) | 1;
    state_ = state_ * kMultiplier + increment_;
    state_ += initstate;
    state_ = state_ * kMultiplier + increment_;
}

uint64_t NumpyPcg64::next_uint64() {
    state_ = state_ * kMultiplier + increment_;
    // XSL-RR: xor of the halves, rotated right by the top 6 bits.
    const uint64_t x = uint64_t(state_ >> 64) ^ uint64_t(state_);
    const unsigned rot = unsigned(state_ >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t NumpyPcg64::next_uint32() {
    if (has_uint32_) {
        has_uint32_ = false;
        return uinteger_;
    }
    const uint64_t next = next_uint64();
    has_uint32_ = true;
    uinteger_ = uint32_t(next >> 32);
    return uint32_t(next);
}

uint64_t NumpyPcg64::random_interval(uint64_t max) {
    if (max == 0) {
        return 0;
    }
    uint64_t mask = max;
    for (int shift = 1; shift <= 32; shift *= 2) {
        mask |= mask >> shift;
    }
    uint64_t value;
    if (max <= 0xffffffffULL) {
        while ((value = (next_uint32() & mask)) > max) {
        }
    } else {
        while ((value = (next_uint64() & mask)) > max) {
        }
    }
    return value;
}

std::vector<int64_t> numpy_permutation(uint64_t seed, int64_t n) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "numpy_permutation: n=%lld must be >= 0", (long long)n);
    std::vector<int64_t> perm(n);
    for (int64_t i = 0; i < n; i++) {
        perm[i] = i;
    }
    NumpyPcg64 rng(seed);
    for (int64_t i = n - 1; i >= 1; i--) {
        const int64_t j = int64_t(rng.random_interval(uint64_t(i)));
        std::swap(perm[i], perm[j]);
    }
    return perm;
}

} // namespace datasets
} // namespace faiss_gmm
