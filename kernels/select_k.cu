// k smallest keys per segment (see select_k.h). Design:
//
// * One CTA per segment. Keys are mapped to order-preserving uint32 codes
//   (NaN and +inf to kUnselectable, which is never taken); a candidate is
//   the 64-bit composite (code << 32) | position, so sorting composites
//   sorts by key and breaks ties by position.
// * Segments of at most kSortCapacity keys are loaded into shared memory and
//   bitonic-sorted whole.
// * Longer segments: radix select on the code, 11 + 11 + 10 bits, with a
//   shared-memory histogram per pass over the keys whose higher bits match
//   the prefix found so far. It stops early when the bin holding the k-th
//   key is taken whole. The collection pass then takes every code below the
//   k-th and, when only some codes equal to it fit, the first of them in
//   position order (warp ballots and per-warp counts, tile by tile). The
//   <= k survivors are bitonic-sorted in shared memory.
// * No workspace: every pass re-reads the segment (4 reads of the keys at
//   most), so a very long segment alone on the device is read by one SM.

#include <kernels/select_k.h>

#include <cub/block/block_scan.cuh>

#include <cstdint>

namespace faiss_gmm {
namespace kernels {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
/// Segments this long or shorter are sorted whole in shared memory.
constexpr int kSortCapacity = kSelectMaxK;
/// Radix digits, most significant first: 11 + 11 + 10 = 32 bits.
constexpr int kRadixBins = 2048;
constexpr int kPasses = 3;
constexpr int kBinsPerThread = kRadixBins / kThreads;
/// Code of NaN and +inf: sorts last and is never selected.
constexpr uint32_t kUnselectable = 0xffffffffu;
constexpr uint64_t kEmptySlot = ~uint64_t(0);

static_assert(kSortCapacity >= kSelectMaxK, "survivors must fit the sort");
static_assert(kRadixBins % kThreads == 0, "whole bins per thread");

__device__ __forceinline__ uint32_t order_code(float key) {
    if (isnan(key) || key == INFINITY) {
        return kUnselectable;
    }
    // -0 and +0 are one key (the CPU heaps compare them equal)
    const uint32_t bits = __float_as_uint(key == 0.0f ? 0.0f : key);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/// Lowest bit of the digit of radix pass `pass`.
__device__ __forceinline__ int digit_shift(int pass) {
    return pass == 0 ? 21 : (pass == 1 ? 10 : 0);
}

/// Bits of the digit of radix pass `pass`.
__device__ __forceinline__ int digit_bits(int pass) {
    return pass == 2 ? 10 : 11;
}

__device__ __forceinline__ uint64_t composite(uint32_t code, uint32_t pos) {
    return (uint64_t(code) << 32) | pos;
}

/// Ascending bitonic sort of buf[0 .. size), size a power of two.
__device__ void bitonic_sort(uint64_t* buf, int size) {
    for (int block = 2; block <= size; block <<= 1) {
        for (int stride = block >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < size / 2; i += kThreads) {
                const int lo = 2 * i - (i & (stride - 1));
                const int hi = lo + stride;
                const bool ascending = (lo & block) == 0;
                const uint64_t a = buf[lo];
                const uint64_t b = buf[hi];
                if ((a > b) == ascending) {
                    buf[lo] = b;
                    buf[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

__device__ __forceinline__ int next_pow2(int v) {
    int p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

struct SelectShared {
    uint64_t candidates[kSortCapacity];
    int histogram[kRadixBins];
    typename cub::BlockScan<int, kThreads>::TempStorage scan;
    int warp_equal[kWarps];
    int count;       ///< candidates collected
    int bin;         ///< bin holding the k-th code in this pass
    int bin_before;  ///< codes in lower bins (matching the prefix)
    int bin_count;   ///< codes in that bin
    int total;       ///< selectable codes (first pass)
    int equal_taken; ///< codes equal to the k-th taken so far
};

/// Collects every code <= take_all_up_to from positions [from, n).
__device__ void collect_up_to(
    const float* seg_keys,
    int64_t from,
    int64_t n,
    uint32_t take_all_up_to,
    SelectShared& sh) {
    for (int64_t i = from + threadIdx.x; i < n; i += kThreads) {
        const uint32_t code = order_code(seg_keys[i]);
        if (code <= take_all_up_to && code != kUnselectable) {
            const int slot = atomicAdd(&sh.count, 1);
            sh.candidates[slot] = composite(code, uint32_t(i));
        }
    }
}

// One CTA per segment: reads the segment's keys (and values at the selected
// positions), writes k (key, value) pairs of the segment in ascending order.
__global__ void __launch_bounds__(kThreads) select_k_kernel(
    Segments segments,
    const float* __restrict__ keys,
    const int64_t* __restrict__ values,
    int k,
    float* __restrict__ out_keys,
    int64_t* __restrict__ out_values) {
    __shared__ SelectShared sh;
    const int64_t s = blockIdx.x;
    int64_t begin, n;
    if (segments.offsets) {
        begin = segments.offsets[s];
        n = segments.lengths ? segments.lengths[s]
                             : segments.offsets[s + 1] - begin;
    } else {
        begin = s * segments.length;
        n = segments.length;
    }
    const float* seg_keys = keys + begin;
    if (threadIdx.x == 0) {
        sh.count = 0;
        sh.equal_taken = 0;
    }
    int sorted_size;
    if (n <= kSortCapacity) {
        const int m = int(n);
        sorted_size = next_pow2(m);
        for (int i = threadIdx.x; i < sorted_size; i += kThreads) {
            sh.candidates[i] =
                i < m ? composite(order_code(seg_keys[i]), i) : kEmptySlot;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            sh.count = m;
        }
    } else {
        using BlockScan = cub::BlockScan<int, kThreads>;
        uint32_t prefix = 0;
        uint32_t prefix_mask = 0;
        int k_left = k;
        bool done = false;
        for (int pass = 0; pass < kPasses && !done; pass++) {
            const int shift = digit_shift(pass);
            const uint32_t digit_mask = (1u << digit_bits(pass)) - 1;
            for (int b = threadIdx.x; b < kRadixBins; b += kThreads) {
                sh.histogram[b] = 0;
            }
            __syncthreads();
            for (int64_t i = threadIdx.x; i < n; i += kThreads) {
                const uint32_t code = order_code(seg_keys[i]);
                if (code != kUnselectable && (code & prefix_mask) == prefix) {
                    atomicAdd(&sh.histogram[(code >> shift) & digit_mask], 1);
                }
            }
            __syncthreads();
            int local[kBinsPerThread];
            int local_sum = 0;
            for (int t = 0; t < kBinsPerThread; t++) {
                local[t] = sh.histogram[threadIdx.x * kBinsPerThread + t];
                local_sum += local[t];
            }
            int before, total;
            BlockScan(sh.scan).ExclusiveSum(local_sum, before, total);
            for (int t = 0; t < kBinsPerThread; t++) {
                if (before < k_left && before + local[t] >= k_left) {
                    sh.bin = threadIdx.x * kBinsPerThread + t;
                    sh.bin_before = before;
                    sh.bin_count = local[t];
                }
                before += local[t];
            }
            if (threadIdx.x == 0) {
                sh.total = total;
            }
            __syncthreads();
            if (pass == 0 && sh.total <= k) {
                // every selectable key is taken
                collect_up_to(seg_keys, 0, n, kUnselectable - 1, sh);
                done = true;
                break;
            }
            k_left -= sh.bin_before;
            prefix |= uint32_t(sh.bin) << shift;
            prefix_mask |= digit_mask << shift;
            if (sh.bin_count == k_left) {
                // the bin holding the k-th code is taken whole
                const uint32_t low_bits = (1u << shift) - 1;
                collect_up_to(seg_keys, 0, n, prefix | low_bits, sh);
                done = true;
            }
            __syncthreads(); // histogram and bin reused by the next pass
        }
        if (!done) {
            // prefix is the k-th code; take k_left of the codes equal to it,
            // in position order, and every smaller code.
            const uint32_t kth = prefix;
            const int warp = threadIdx.x / 32;
            const int lane = threadIdx.x % 32;
            int64_t tile = 0;
            for (; tile < n; tile += kThreads) {
                const int64_t i = tile + threadIdx.x;
                const uint32_t code =
                    i < n ? order_code(seg_keys[i]) : kUnselectable;
                if (code < kth) {
                    const int slot = atomicAdd(&sh.count, 1);
                    sh.candidates[slot] = composite(code, uint32_t(i));
                }
                const bool equal = code == kth;
                const unsigned ballot = __ballot_sync(0xffffffffu, equal);
                if (lane == 0) {
                    sh.warp_equal[warp] = __popc(ballot);
                }
                __syncthreads();
                int rank = sh.equal_taken + __popc(ballot & ((1u << lane) - 1));
                int tile_equal = 0;
                for (int w = 0; w < kWarps; w++) {
                    rank += w < warp ? sh.warp_equal[w] : 0;
                    tile_equal += sh.warp_equal[w];
                }
                if (equal && rank < k_left) {
                    const int slot = atomicAdd(&sh.count, 1);
                    sh.candidates[slot] = composite(code, uint32_t(i));
                }
                __syncthreads(); // everyone read warp_equal / equal_taken
                if (threadIdx.x == 0) {
                    sh.equal_taken += tile_equal;
                }
                __syncthreads();
                if (sh.equal_taken >= k_left) {
                    tile += kThreads;
                    break;
                }
            }
            collect_up_to(seg_keys, tile, n, kth - 1, sh);
        }
        __syncthreads();
        const int collected = sh.count;
        sorted_size = next_pow2(collected);
        for (int i = collected + threadIdx.x; i < sorted_size; i += kThreads) {
            sh.candidates[i] = kEmptySlot;
        }
    }
    __syncthreads();
    bitonic_sort(sh.candidates, sorted_size);
    const int collected = sh.count;
    for (int j = threadIdx.x; j < k; j += kThreads) {
        float key = INFINITY;
        int64_t value = -1;
        if (j < collected) {
            const uint64_t c = sh.candidates[j];
            if (uint32_t(c >> 32) != kUnselectable) {
                const int64_t pos = int64_t(uint32_t(c));
                key = seg_keys[pos];
                value = values ? values[begin + pos] : pos;
            }
        }
        out_keys[s * k + j] = key;
        out_values[s * k + j] = value;
    }
}

} // namespace

size_t select_k_workspace_bytes(const Segments& segments, int k) {
    (void)segments;
    (void)k;
    return 0; // every pass re-reads the segment's keys
}

cudaError_t select_k_segments(
    const Segments& segments,
    const float* keys,
    const int64_t* values,
    int k,
    float* out_keys,
    int64_t* out_values,
    void* workspace,
    size_t workspace_bytes,
    cudaStream_t stream) {
    (void)workspace;
    (void)workspace_bytes;
    if (k < 1 || k > kSelectMaxK || segments.count < 0 ||
        segments.count > int64_t(0x7fffffff) ||
        (!segments.offsets && segments.length < 0) ||
        (segments.lengths && !segments.offsets)) {
        return cudaErrorInvalidValue;
    }
    if (segments.count == 0) {
        return cudaSuccess;
    }
    if (!out_keys || !out_values ||
        (!keys && (segments.offsets || segments.length > 0))) {
        return cudaErrorInvalidValue;
    }
    select_k_kernel<<<unsigned(segments.count), kThreads, 0, stream>>>(
        segments, keys, values, k, out_keys, out_values);
    return cudaGetLastError();
}

} // namespace kernels
} // namespace faiss_gmm
