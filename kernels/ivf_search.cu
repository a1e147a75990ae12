// Kernels of the GPU IVF search with spill (see ivf_search.h for the
// contract and IndexIVFGMM.cpp scan_probed_lists for the CPU semantics they
// reproduce). ~1000 lines: the five stages of one search (coarse scores,
// probe cuts, probe preparation, pruning, the scan over every code kind)
// share the probe-rank table, the segment layout and their launch checks.

#include <kernels/ivf_search.h>
#include <kernels/list_pruning.h>
#include <kernels/select_k.h>

#include <cub/block/block_reduce.cuh>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace faiss_gmm {
namespace kernels {

namespace {

constexpr int kElementwiseThreads = 256;
/// Row blocks of the coarse score grid (rows beyond are grid-strided).
constexpr int kMaxGridRows = 65535;
constexpr int kNormThreads = 256;
constexpr int kNormBlocksMax = 65535 * 4;
constexpr int kCutThreads = 256;
/// One warp per query in ivf_prepare_probes.
constexpr int kPrepareWarps = 4;
/// One warp per (query, probe) in ivf_prune_probes.
constexpr int kPruneWarps = 8;
constexpr int kScanThreads = 128;
/// Vector loads a scan lane issues before using them.
constexpr int kScanLoads = 4;
/// A list is scanned by at most this many CTAs per (query, probe) ...
constexpr int kScanMaxChunks = 64;
/// ... each reading at least this many entries.
constexpr int kScanMinChunk = 2048;
constexpr int kMaxDim = 4096;
constexpr int64_t kMaxGridX = 0x7fffffff;

// Reads products and the per-component constants, writes the "smaller is
// better" coarse score in place: one thread per (query, component).
__global__ void __launch_bounds__(kElementwiseThreads) coarse_scores_kernel(
    CoarseModel model,
    int64_t nq,
    const float* __restrict__ query_norms,
    float* __restrict__ products) {
    const int j = blockIdx.x * kElementwiseThreads + threadIdx.x;
    if (j >= model.nlist) {
        return;
    }
    for (int64_t i = blockIdx.y; i < nq; i += gridDim.y) {
        float* p = products + i * model.nlist + j;
        if (model.log_joint && model.diagonal) {
            *p = -(
                model.log_const[j] + *p - 0.5f * model.mean_norms_weighted[j]);
            continue;
        }
        const float dis =
            fmaxf(0.0f, query_norms[i] - 2.0f * *p + model.mean_norms[j]);
        *p = model.log_joint
                 ? -(model.log_const[j] - 0.5f * model.inv_var[j] * dis)
                 : dis;
    }
}

// Reads n rows of d floats, writes their squared norms: one warp per row.
__global__ void __launch_bounds__(kNormThreads) row_squared_norms_kernel(
    int64_t n, int d, const float* __restrict__ x, float* __restrict__ out) {
    const int lane = threadIdx.x % 32;
    const int64_t warps = int64_t(gridDim.x) * (kNormThreads / 32);
    for (int64_t i = (int64_t(blockIdx.x) * kNormThreads + threadIdx.x) / 32;
         i < n;
         i += warps) {
        const float* row = x + i * d;
        float sum = 0;
        for (int t = lane; t < d; t += 32) {
            sum += row[t] * row[t];
        }
        for (int o = 16; o > 0; o >>= 1) {
            sum += __shfl_xor_sync(0xffffffffu, sum, o);
        }
        if (lane == 0) {
            out[i] = sum;
        }
    }
}

struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const {
        return fmaxf(a, b);
    }
};

// One CTA per query: reads its sorted probes and scores (and its log-joint
// row for the mass rule), writes the dropped probes as (-1, +inf). The mass
// rule walks the probes in order on one thread, as the CPU does, after the
// posteriors are computed in parallel.
__global__ void __launch_bounds__(kCutThreads) cut_probes_kernel(
    int nprobe,
    int32_t* __restrict__ probes,
    float* __restrict__ probe_scores,
    float distance_ratio,
    const float* __restrict__ log_joint_scores,
    int nlist,
    float posterior_mass,
    double inv_temperature) {
    using ReduceF = cub::BlockReduce<float, kCutThreads>;
    using ReduceD = cub::BlockReduce<double, kCutThreads>;
    __shared__ union {
        typename ReduceF::TempStorage f;
        typename ReduceD::TempStorage d;
    } reduce;
    __shared__ double posterior[kSelectMaxK];
    __shared__ float row_max;
    __shared__ double row_sum;
    const int64_t q = blockIdx.x;
    int32_t* qp = probes + q * nprobe;
    float* qs = probe_scores + q * nprobe;
    if (distance_ratio > 0) {
        const float limit = distance_ratio * qs[0];
        for (int r = 1 + threadIdx.x; r < nprobe; r += kCutThreads) {
            if (qp[r] >= 0 && qs[r] > limit) {
                qp[r] = -1;
                qs[r] = INFINITY;
            }
        }
        __syncthreads();
    }
    if (!(posterior_mass > 0)) {
        return;
    }
    const float* row = log_joint_scores + q * nlist; // negated log-joints
    float local_max = -INFINITY;
    for (int j = threadIdx.x; j < nlist; j += kCutThreads) {
        local_max = fmaxf(local_max, -row[j]);
    }
    const float max_lj = ReduceF(reduce.f).Reduce(local_max, MaxOp());
    if (threadIdx.x == 0) {
        row_max = max_lj;
    }
    __syncthreads();
    double local_sum = 0;
    for (int j = threadIdx.x; j < nlist; j += kCutThreads) {
        local_sum += exp((double(-row[j]) - double(row_max)) * inv_temperature);
    }
    const double sum = ReduceD(reduce.d).Sum(local_sum);
    if (threadIdx.x == 0) {
        row_sum = sum;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < nprobe; r += kCutThreads) {
        const int32_t l = qp[r];
        posterior[r] =
            l >= 0
                ? exp((double(-row[l]) - double(row_max)) * inv_temperature) /
                      row_sum
                : 0.0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double cumulated = 0;
        for (int r = 0; r < nprobe; r++) {
            if (cumulated >= double(posterior_mass)) {
                qp[r] = -1;
                qs[r] = INFINITY;
            } else if (qp[r] >= 0) {
                cumulated += posterior[r];
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ T warp_exclusive_sum(T v, T* total) {
    const int lane = threadIdx.x % 32;
    T inclusive = v;
    for (int o = 1; o < 32; o <<= 1) {
        const T up = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) {
            inclusive += up;
        }
    }
    *total = __shfl_sync(0xffffffffu, inclusive, 31);
    return inclusive - v;
}

// One warp per query: marks the first rank of every probed list in
// probe_rank (atomicMin, then read back to find repeats), then walks the
// probes 32 at a time with warp prefix sums of the list lengths to apply
// max_codes and place each kept list in the query's segment. Writes probes
// (dropped -> -1), probe_rank (kept lists only), probe_offsets,
// segment_lengths and lists_visited.
__global__ void __launch_bounds__(kPrepareWarps * 32) prepare_probes_kernel(
    const int32_t* __restrict__ lengths,
    int nlist,
    int64_t nq,
    int nprobe,
    int64_t max_codes,
    int32_t* __restrict__ probes,
    int32_t* __restrict__ probe_rank,
    int64_t* __restrict__ probe_offsets,
    int64_t* __restrict__ segment_lengths,
    int32_t* __restrict__ lists_visited) {
    const int64_t q = int64_t(blockIdx.x) * kPrepareWarps + threadIdx.x / 32;
    if (q >= nq) {
        return;
    }
    const int lane = threadIdx.x % 32;
    int32_t* qp = probes + q * nprobe;
    int32_t* rank_row = probe_rank + q * nlist;
    for (int r = lane; r < nprobe; r += 32) {
        const int32_t l = qp[r];
        if (l >= 0 && l < nlist) {
            atomicMin(rank_row + l, r);
        }
    }
    __syncwarp();
    int64_t carry_valid = 0; // lengths of first occurrences so far
    int64_t carry_kept = 0;  // lengths of kept lists so far
    int visited = 0;
    for (int base = 0; base < nprobe; base += 32) {
        const int r = base + lane;
        const bool in = r < nprobe;
        const int32_t l = in ? qp[r] : -1;
        const bool valid = l >= 0 && l < nlist && __ldcg(rank_row + l) == r;
        const int64_t len = valid ? int64_t(lengths[l]) : 0;
        int64_t chunk_valid, chunk_kept;
        const int64_t before_valid =
            carry_valid + warp_exclusive_sum(len, &chunk_valid);
        const bool kept = valid && (max_codes == 0 || before_valid < max_codes);
        const int64_t kept_len = kept ? len : 0;
        const int64_t before_kept =
            carry_kept + warp_exclusive_sum(kept_len, &chunk_kept);
        if (in) {
            probe_offsets[q * nprobe + r] = before_kept;
            if (!kept) {
                qp[r] = -1;
            }
        }
        if (valid && !kept) {
            rank_row[l] = kListNotProbed; // cut by max_codes
        }
        visited += kept && len > 0;
        carry_valid += chunk_valid;
        carry_kept += chunk_kept;
    }
    for (int o = 16; o > 0; o >>= 1) {
        visited += __shfl_xor_sync(0xffffffffu, visited, o);
    }
    if (lane == 0) {
        segment_lengths[q] = carry_kept;
        lists_visited[q] = visited;
    }
}

// Reads the kept probes, writes kListNotProbed back into probe_rank.
__global__ void __launch_bounds__(kElementwiseThreads) clear_probe_ranks_kernel(
    int64_t nq,
    int nprobe,
    int nlist,
    const int32_t* __restrict__ probes,
    int32_t* __restrict__ probe_rank) {
    const int64_t total = nq * nprobe;
    for (int64_t i = int64_t(blockIdx.x) * kElementwiseThreads + threadIdx.x;
         i < total;
         i += int64_t(gridDim.x) * kElementwiseThreads) {
        const int32_t l = probes[i];
        if (l >= 0 && l < nlist) {
            probe_rank[(i / nprobe) * nlist + l] = kListNotProbed;
        }
    }
}

// One warp per (query q, probe r >= first_probe): the tests of
// list_pruning.h against kth_keys[q * kth_stride], the hit model first,
// then the bisector's free bound, then its exact form, whose mean-to-mean
// distance ||mu_l - mu_1||^2 the warp computes (lanes over dimensions,
// shuffle reduction). The order and the counters are the CPU scan's
// (DedupScan::is_pruned). A pruned probe becomes -1 and its list's rank
// goes back to kListNotProbed.
__global__ void __launch_bounds__(kPruneWarps * 32) prune_probes_kernel(
    IvfListsView lists,
    ProbePruning rules,
    int64_t nq,
    int nprobe,
    int first_probe,
    const float* __restrict__ probe_scores,
    const float* __restrict__ kth_keys,
    int kth_stride,
    int32_t* __restrict__ probes,
    int32_t* __restrict__ probe_rank,
    int32_t* __restrict__ pruned,
    int32_t* __restrict__ bound_evaluations) {
    const int span = nprobe - first_probe;
    const int64_t w = int64_t(blockIdx.x) * kPruneWarps + threadIdx.x / 32;
    if (w >= nq * span) {
        return;
    }
    const int lane = threadIdx.x % 32;
    const int64_t q = w / span;
    const int r = first_probe + int(w % span);
    int32_t* qp = probes + q * nprobe;
    const int32_t l = qp[r];
    const int32_t l1 = qp[0];
    const float kth = kth_keys[q * kth_stride];
    if (l < 0 || l1 < 0 || !(kth < INFINITY)) {
        return; // dropped probe, or fewer than k results so far
    }
    const float d1 = probe_scores[q * nprobe];
    const float dl = probe_scores[q * nprobe + r];
    bool prune = rules.min_hits > 0 && hit_model_prunes(
                                           dl,
                                           double(rules.mean_variances[l]),
                                           (long long)lists.lengths[l],
                                           lists.d,
                                           kth,
                                           rules.min_hits);
    if (!prune && rules.margin > 0) {
        prune = bisector_prunes_free(d1, dl, kth, rules.margin);
        if (!prune) {
            const float* a = rules.means + int64_t(l) * lists.d;
            const float* b = rules.means + int64_t(l1) * lists.d;
            float sum = 0;
            for (int t = lane; t < lists.d; t += 32) {
                const float e = a[t] - b[t];
                sum += e * e;
            }
            for (int o = 16; o > 0; o >>= 1) {
                sum += __shfl_xor_sync(0xffffffffu, sum, o);
            }
            prune = bisector_prunes_exact(d1, dl, sum, kth, rules.margin);
            if (lane == 0) {
                atomicAdd(bound_evaluations + q, 1);
            }
        }
    }
    if (prune && lane == 0) {
        qp[r] = -1;
        probe_rank[q * lists.nlist + l] = kListNotProbed;
        atomicAdd(pruned + q, 1);
    }
}

/// Lanes of this thread's group of G lanes within its warp.
template <int G>
__device__ __forceinline__ unsigned group_lane_mask() {
    if constexpr (G == 32) {
        return 0xffffffffu;
    } else {
        const int first = (threadIdx.x % 32) / G * G;
        return ((1u << G) - 1) << first;
    }
}

/// True when one of the entry's other lists (record, -1 padded, read up to
/// its first -1 as the CPU does) was probed before rank r. No break in the
/// loop: the rank lookups of one entry do not wait for each other.
__device__ __forceinline__ bool probed_earlier(
    const int32_t* __restrict__ record,
    int width,
    const int32_t* __restrict__ rank_row,
    int32_t r) {
    bool stopped = false;
    bool earlier = false;
    for (int t = 0; t < width; t++) {
        const int32_t other = record[t];
        stopped = stopped || other < 0;
        if (!stopped && rank_row[other] < r) {
            earlier = true;
        }
    }
    return earlier;
}

/// Squared differences of a lane's elements lane_g, lane_g + G, ... of
/// x and q (n elements of float or float4): kScanLoads loads are issued
/// before any is used, so each lane keeps several in flight.
__device__ __forceinline__ float squared_diff(float x, float q) {
    const float e = x - q;
    return e * e;
}
__device__ __forceinline__ float squared_diff(float4 x, float4 q) {
    const float e0 = x.x - q.x;
    const float e1 = x.y - q.y;
    const float e2 = x.z - q.z;
    const float e3 = x.w - q.w;
    return e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3;
}

template <int G, typename T>
__device__ __forceinline__ float
partial_distance(const T* __restrict__ x, const T* __restrict__ q, int n) {
    const int lane_g = threadIdx.x % G;
    float sum = 0;
    for (int t0 = lane_g; t0 < n; t0 += G * kScanLoads) {
        T loaded[kScanLoads];
#pragma unroll
        for (int u = 0; u < kScanLoads; u++) {
            const int t = t0 + u * G;
            if (t < n) {
                loaded[u] = x[t];
            }
        }
#pragma unroll
        for (int u = 0; u < kScanLoads; u++) {
            const int t = t0 + u * G;
            if (t < n) {
                sum += squared_diff(loaded[u], q[t]);
            }
        }
    }
    return sum;
}

/**
 * The query as the scan of one list reads it (shared memory): Float32:
 * the query; Float16: its residual to the list mean (or the query); SQ8:
 * target_i = r_i - bias_i then scale_i (2 d floats), so that a component
 * costs one multiply-add: r_i - decoded_i = target_i - c_i scale_i.
 */
template <IvfCodeKind K>
__device__ __forceinline__ void
stage_query(const IvfCodec& codec, int d, int l, const float* q, float* out) {
    const float* mean = K != IvfCodeKind::Float32 && codec.residual_means
                            ? codec.residual_means + int64_t(l) * d
                            : nullptr;
    for (int t = threadIdx.x; t < d; t += kScanThreads) {
        const float r = mean ? q[t] - mean[t] : q[t];
        if constexpr (K == IvfCodeKind::SQ8) {
            out[t] = r - codec.bias[t];
            out[d + t] = codec.scale[t];
        } else {
            out[t] = r;
        }
    }
}

/// Squared L2 distance of the staged query to the 8 (Float16) or 16 (SQ8)
/// components of one 16-byte unit u of a code.
template <IvfCodeKind K>
__device__ __forceinline__ float
unit_distance(uint4 unit, int u, const float* __restrict__ staged, int d) {
    const uint32_t words[4] = {unit.x, unit.y, unit.z, unit.w};
    float sum = 0;
    if constexpr (K == IvfCodeKind::Float16) {
        const float4* q = reinterpret_cast<const float4*>(staged) + 2 * u;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float4 qv = q[h];
            const float2 a = __half22float2(
                *reinterpret_cast<const __half2*>(&words[2 * h]));
            const float2 b = __half22float2(
                *reinterpret_cast<const __half2*>(&words[2 * h + 1]));
            sum += squared_diff(make_float4(a.x, a.y, b.x, b.y), qv);
        }
    } else {
        const float4* target = reinterpret_cast<const float4*>(staged) + 4 * u;
        const float4* scale =
            reinterpret_cast<const float4*>(staged + d) + 4 * u;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const float4 t = target[w];
            const float4 s = scale[w];
            const uint32_t v = words[w];
            const float e0 = fmaf(-float(v & 0xff), s.x, t.x);
            const float e1 = fmaf(-float((v >> 8) & 0xff), s.y, t.y);
            const float e2 = fmaf(-float((v >> 16) & 0xff), s.z, t.z);
            const float e3 = fmaf(-float(v >> 24), s.w, t.w);
            sum += e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3;
        }
    }
    return sum;
}

/// One component of a Float16 / SQ8 code against the staged query.
template <IvfCodeKind K>
__device__ __forceinline__ float component_distance(
    const uint8_t* __restrict__ code,
    int i,
    const float* __restrict__ staged,
    int d) {
    float e;
    if constexpr (K == IvfCodeKind::Float16) {
        e = staged[i] - __half2float(reinterpret_cast<const __half*>(code)[i]);
    } else {
        e = fmaf(-float(code[i]), staged[d + i], staged[i]);
    }
    return e * e;
}

/// A lane's share of the distance of the staged query to one Float16 /
/// SQ8 code: 16-byte units lane_g, lane_g + G, ... (kScanLoads in flight)
/// when whole units line up, else components one by one.
template <int G, IvfCodeKind K>
__device__ __forceinline__ float coded_partial_distance(
    const uint8_t* __restrict__ code,
    const float* __restrict__ staged,
    int d,
    bool vectorized) {
    const int lane_g = threadIdx.x % G;
    float sum = 0;
    if (!vectorized) {
        for (int i = lane_g; i < d; i += G) {
            sum += component_distance<K>(code, i, staged, d);
        }
        return sum;
    }
    const int units = ivf_code_size(K, d) / 16;
    const uint4* x = reinterpret_cast<const uint4*>(code);
    for (int u0 = lane_g; u0 < units; u0 += G * kScanLoads) {
        uint4 loaded[kScanLoads];
#pragma unroll
        for (int v = 0; v < kScanLoads; v++) {
            const int u = u0 + v * G;
            if (u < units) {
                loaded[v] = x[u];
            }
        }
#pragma unroll
        for (int v = 0; v < kScanLoads; v++) {
            const int u = u0 + v * G;
            if (u < units) {
                sum += unit_distance<K>(loaded[v], u, staged, d);
            }
        }
    }
    return sum;
}

// One CTA per (query, probe in [probe_begin, probe_end), chunk of the
// list): the query (as stage_query prepares it for the list's codes) in
// shared memory; the CTA's chunk of the list (chunk_length entries,
// blockIdx.y-th) is read in batches of kScanThreads entries. Chunks keep one
// long list from holding a whole query tile back behind a single CTA. With
// spill records, each thread first decides whether one entry of the batch
// is a duplicate (its vector sits in a list probed earlier: one record row
// and a few probe_rank lookups, all independent across threads); then
// groups of G lanes stream the batch's other codes (16-byte loads when the
// code size is a multiple of 16 and the list is 16-byte aligned, else
// component by component), one code per group at a time, decode them in
// registers and reduce the squared differences with shuffles inside the
// group. Duplicates are written as (+inf, -1) without reading their code.
// Writes keys / ids of the list's slice of the query's segment and adds the
// CTA's duplicates to duplicates[q] once per warp.
template <int G, IvfCodeKind K>
__global__ void __launch_bounds__(kScanThreads) scan_lists_kernel(
    IvfListsView lists,
    int nprobe,
    int probe_begin,
    int probe_end,
    const float* __restrict__ queries,
    const int32_t* __restrict__ probes,
    const int32_t* __restrict__ probe_rank,
    const int64_t* __restrict__ probe_offsets,
    const int64_t* __restrict__ segment_offsets,
    float* __restrict__ keys,
    int64_t* __restrict__ ids,
    int64_t* __restrict__ duplicates,
    int chunk_length) {
    extern __shared__ float4 query_smem[];
    __shared__ bool is_duplicate[kScanThreads];
    const int span = probe_end - probe_begin;
    const int64_t q = int64_t(blockIdx.x) / span;
    const int32_t r = probe_begin + int32_t(int64_t(blockIdx.x) % span);
    const int64_t pair = q * nprobe + r;
    const int32_t l = probes[pair];
    if (l < 0) {
        return;
    }
    const int32_t chunk_begin = int32_t(blockIdx.y) * chunk_length;
    const int32_t n = min(lists.lengths[l], chunk_begin + chunk_length);
    if (n <= chunk_begin) {
        return;
    }
    const int d = lists.d;
    float* staged = reinterpret_cast<float*>(query_smem);
    stage_query<K>(lists.codec, d, l, queries + q * d, staged);
    __syncthreads();

    const int code_size = ivf_code_size(K, d);
    const uint8_t* __restrict__ codes = lists.codes[l];
    const int64_t* __restrict__ list_ids = lists.ids[l];
    const int width = lists.record_width;
    const int32_t* __restrict__ records =
        width > 0 ? lists.records[l] : nullptr;
    const int32_t* __restrict__ rank_row = probe_rank + q * lists.nlist;
    float* __restrict__ out_keys =
        keys + segment_offsets[q] + probe_offsets[pair];
    int64_t* __restrict__ out_ids =
        ids + segment_offsets[q] + probe_offsets[pair];
    const bool vectorized =
        code_size % 16 == 0 && (reinterpret_cast<uintptr_t>(codes) & 15) == 0;
    const int lane_g = threadIdx.x % G;
    const unsigned group_mask = group_lane_mask<G>();
    int64_t dup_count = 0;
    for (int base = chunk_begin; base < n; base += kScanThreads) {
        if (width > 0) {
            const int j = base + threadIdx.x;
            const bool dup =
                j < n && probed_earlier(
                             records + int64_t(j) * width, width, rank_row, r);
            is_duplicate[threadIdx.x] = dup;
            dup_count += dup;
            __syncthreads();
        }
        const int batch = min(kScanThreads, n - base);
        for (int e = threadIdx.x / G; e < batch; e += kScanThreads / G) {
            const int j = base + e;
            if (width > 0 && is_duplicate[e]) {
                if (lane_g == 0) {
                    out_keys[j] = INFINITY;
                    out_ids[j] = -1;
                }
                continue;
            }
            const uint8_t* code = codes + int64_t(j) * code_size;
            float sum;
            if constexpr (K == IvfCodeKind::Float32) {
                const float* x = reinterpret_cast<const float*>(code);
                sum = vectorized ? partial_distance<G>(
                                       reinterpret_cast<const float4*>(x),
                                       query_smem,
                                       d / 4)
                                 : partial_distance<G>(x, staged, d);
            } else {
                sum = coded_partial_distance<G, K>(code, staged, d, vectorized);
            }
            for (int o = G / 2; o > 0; o >>= 1) {
                sum += __shfl_xor_sync(group_mask, sum, o);
            }
            if (lane_g == 0) {
                out_keys[j] = sum;
                out_ids[j] = list_ids[j];
            }
        }
        if (width > 0) {
            __syncthreads(); // is_duplicate is rewritten by the next batch
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        dup_count += __shfl_xor_sync(0xffffffffu, dup_count, o);
    }
    if (threadIdx.x % 32 == 0 && dup_count > 0) {
        atomicAdd(
            reinterpret_cast<unsigned long long*>(duplicates + q),
            static_cast<unsigned long long>(dup_count));
    }
}

/// Lanes per code: about two 16-byte loads per lane, at most a warp.
int scan_group_size(int code_size) {
    const int units = (code_size + 15) / 16;
    int g = 1;
    while (g < 32 && 2 * g < units) {
        g <<= 1;
    }
    return g;
}

/// The arguments of ivf_scan_lists, for the launchers below.
struct ScanArgs {
    IvfListsView lists;
    int64_t pairs = 0; ///< CTAs along x: queries x probes in the range
    const float* queries = nullptr;
    int nprobe = 0, probe_begin = 0, probe_end = 0;
    const int32_t* probes = nullptr;
    const int32_t* probe_rank = nullptr;
    const int64_t* probe_offsets = nullptr;
    const int64_t* segment_offsets = nullptr;
    float* keys = nullptr;
    int64_t* ids = nullptr;
    int64_t* duplicates = nullptr;
};

template <int G, IvfCodeKind K>
cudaError_t launch_scan(const ScanArgs& a, cudaStream_t stream) {
    const int staged_floats = K == IvfCodeKind::SQ8 ? 2 * a.lists.d : a.lists.d;
    const size_t smem = size_t((staged_floats + 3) / 4) * sizeof(float4);
    // at most kScanMaxChunks CTAs per list, each at least kScanMinChunk
    // entries (a multiple of the batch)
    // (max_length 0: unknown, one CTA reads the whole list)
    const int64_t longest = a.lists.max_length;
    int64_t chunk = (longest + kScanMaxChunks - 1) / kScanMaxChunks;
    chunk = std::max<int64_t>(chunk, kScanMinChunk);
    chunk = (chunk + kScanThreads - 1) / kScanThreads * kScanThreads;
    const int64_t nchunks = longest > 0 ? (longest + chunk - 1) / chunk : 1;
    if (longest <= 0) {
        chunk = 0x7fffffff;
    }
    const dim3 grid{unsigned(a.pairs), unsigned(nchunks), 1u};
    scan_lists_kernel<G, K><<<grid, kScanThreads, smem, stream>>>(
        a.lists,
        a.nprobe,
        a.probe_begin,
        a.probe_end,
        a.queries,
        a.probes,
        a.probe_rank,
        a.probe_offsets,
        a.segment_offsets,
        a.keys,
        a.ids,
        a.duplicates,
        int(chunk));
    return cudaGetLastError();
}

template <IvfCodeKind K>
cudaError_t launch_scan_for_code(const ScanArgs& a, cudaStream_t stream) {
    switch (scan_group_size(ivf_code_size(K, a.lists.d))) {
    case 1:
        return launch_scan<1, K>(a, stream);
    case 2:
        return launch_scan<2, K>(a, stream);
    case 4:
        return launch_scan<4, K>(a, stream);
    case 8:
        return launch_scan<8, K>(a, stream);
    case 16:
        return launch_scan<16, K>(a, stream);
    case 32:
        return launch_scan<32, K>(a, stream);
    default:
        return cudaErrorInvalidValue;
    }
}

} // namespace

cudaError_t ivf_coarse_scores(
    const CoarseModel& model,
    int64_t nq,
    const float* query_norms,
    float* products,
    cudaStream_t stream) {
    if (nq < 0 || model.nlist < 1 || model.d < 1 ||
        (model.log_joint && !model.log_const)) {
        return cudaErrorInvalidValue;
    }
    const bool needs_norms = !(model.log_joint && model.diagonal);
    if ((needs_norms && !model.mean_norms) ||
        (model.log_joint && model.diagonal && !model.mean_norms_weighted) ||
        (model.log_joint && !model.diagonal && !model.inv_var) ||
        (model.diagonal && !model.log_joint)) {
        return cudaErrorInvalidValue;
    }
    if (nq == 0) {
        return cudaSuccess;
    }
    if (!products || (needs_norms && !query_norms)) {
        return cudaErrorInvalidValue;
    }
    const dim3 grid(
        unsigned((model.nlist + kElementwiseThreads - 1) / kElementwiseThreads),
        unsigned(nq < kMaxGridRows ? nq : kMaxGridRows));
    coarse_scores_kernel<<<grid, kElementwiseThreads, 0, stream>>>(
        model, nq, query_norms, products);
    return cudaGetLastError();
}

cudaError_t row_squared_norms(
    int64_t n, int d, const float* x, float* out, cudaStream_t stream) {
    if (n < 0 || d < 1) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    if (!x || !out) {
        return cudaErrorInvalidValue;
    }
    const int64_t rows_per_block = kNormThreads / 32;
    const int64_t blocks = (n + rows_per_block - 1) / rows_per_block;
    row_squared_norms_kernel<<<
        unsigned(blocks < kNormBlocksMax ? blocks : kNormBlocksMax),
        kNormThreads,
        0,
        stream>>>(n, d, x, out);
    return cudaGetLastError();
}

cudaError_t ivf_cut_probes(
    int64_t nq,
    int nprobe,
    int32_t* probes,
    float* probe_scores,
    float distance_ratio,
    const float* log_joint_scores,
    int nlist,
    float posterior_mass,
    float temperature,
    cudaStream_t stream) {
    if (nq < 0 || nq > kMaxGridX || nprobe < 1 || nprobe > kSelectMaxK ||
        !(distance_ratio >= 0) || !(posterior_mass >= 0)) {
        return cudaErrorInvalidValue;
    }
    const bool by_mass = posterior_mass > 0;
    if (by_mass && (!log_joint_scores || nlist < nprobe || !(temperature > 0) ||
                    !std::isfinite(temperature))) {
        return cudaErrorInvalidValue;
    }
    if (nq == 0 || (distance_ratio == 0 && !by_mass)) {
        return cudaSuccess;
    }
    if (!probes || !probe_scores) {
        return cudaErrorInvalidValue;
    }
    cut_probes_kernel<<<unsigned(nq), kCutThreads, 0, stream>>>(
        nprobe,
        probes,
        probe_scores,
        distance_ratio,
        log_joint_scores,
        nlist,
        posterior_mass,
        by_mass ? 1.0 / double(temperature) : 0.0);
    return cudaGetLastError();
}

cudaError_t ivf_prepare_probes(
    const IvfListsView& lists,
    int64_t nq,
    int nprobe,
    int64_t max_codes,
    int32_t* probes,
    int32_t* probe_rank,
    int64_t* probe_offsets,
    int64_t* segment_lengths,
    int32_t* lists_visited,
    cudaStream_t stream) {
    if (nq < 0 || nprobe < 1 || nprobe > kSelectMaxK || max_codes < 0 ||
        lists.nlist < 1 ||
        (nq + kPrepareWarps - 1) / kPrepareWarps > kMaxGridX) {
        return cudaErrorInvalidValue;
    }
    if (nq == 0) {
        return cudaSuccess;
    }
    if (!lists.lengths || !probes || !probe_rank || !probe_offsets ||
        !segment_lengths || !lists_visited) {
        return cudaErrorInvalidValue;
    }
    const int64_t blocks = (nq + kPrepareWarps - 1) / kPrepareWarps;
    prepare_probes_kernel<<<unsigned(blocks), kPrepareWarps * 32, 0, stream>>>(
        lists.lengths,
        lists.nlist,
        nq,
        nprobe,
        max_codes,
        probes,
        probe_rank,
        probe_offsets,
        segment_lengths,
        lists_visited);
    return cudaGetLastError();
}

cudaError_t ivf_clear_probe_ranks(
    int64_t nq,
    int nprobe,
    int nlist,
    const int32_t* probes,
    int32_t* probe_rank,
    cudaStream_t stream) {
    if (nq < 0 || nprobe < 1 || nlist < 1) {
        return cudaErrorInvalidValue;
    }
    if (nq == 0) {
        return cudaSuccess;
    }
    if (!probes || !probe_rank) {
        return cudaErrorInvalidValue;
    }
    const int64_t total = nq * nprobe;
    const int64_t blocks =
        (total + kElementwiseThreads - 1) / kElementwiseThreads;
    clear_probe_ranks_kernel<<<
        unsigned(blocks < kNormBlocksMax ? blocks : kNormBlocksMax),
        kElementwiseThreads,
        0,
        stream>>>(nq, nprobe, nlist, probes, probe_rank);
    return cudaGetLastError();
}

cudaError_t ivf_prune_probes(
    const IvfListsView& lists,
    const ProbePruning& rules,
    int64_t nq,
    int nprobe,
    int first_probe,
    const float* probe_scores,
    const float* kth_keys,
    int kth_stride,
    int32_t* probes,
    int32_t* probe_rank,
    int32_t* pruned,
    int32_t* bound_evaluations,
    cudaStream_t stream) {
    if (nq < 0 || nprobe < 1 || nprobe > kSelectMaxK || first_probe < 1 ||
        first_probe > nprobe || kth_stride < 1 || lists.nlist < 1 ||
        lists.d < 1 || !(rules.margin >= 0) || !(rules.min_hits >= 0) ||
        (rules.margin > 0 && !rules.means) ||
        (rules.min_hits > 0 && !rules.mean_variances)) {
        return cudaErrorInvalidValue;
    }
    const int64_t warps = nq * (nprobe - first_probe);
    if (warps == 0 || (rules.margin == 0 && rules.min_hits == 0)) {
        return cudaSuccess;
    }
    if (!lists.lengths || !probe_scores || !kth_keys || !probes ||
        !probe_rank || !pruned || !bound_evaluations) {
        return cudaErrorInvalidValue;
    }
    const int64_t blocks = (warps + kPruneWarps - 1) / kPruneWarps;
    if (blocks > kMaxGridX) {
        return cudaErrorInvalidValue;
    }
    prune_probes_kernel<<<unsigned(blocks), kPruneWarps * 32, 0, stream>>>(
        lists,
        rules,
        nq,
        nprobe,
        first_probe,
        probe_scores,
        kth_keys,
        kth_stride,
        probes,
        probe_rank,
        pruned,
        bound_evaluations);
    return cudaGetLastError();
}

cudaError_t ivf_scan_lists(
    const IvfListsView& lists,
    int64_t nq,
    const float* queries,
    int nprobe,
    int probe_begin,
    int probe_end,
    const int32_t* probes,
    const int32_t* probe_rank,
    const int64_t* probe_offsets,
    const int64_t* segment_offsets,
    float* keys,
    int64_t* ids,
    int64_t* duplicates,
    cudaStream_t stream) {
    if (nq < 0 || nprobe < 1 || nprobe > kSelectMaxK || lists.d < 1 ||
        lists.d > kMaxDim || lists.nlist < 1 || lists.record_width < 0 ||
        nq * nprobe > kMaxGridX || probe_begin < 0 || probe_end > nprobe ||
        probe_begin > probe_end) {
        return cudaErrorInvalidValue;
    }
    if (nq == 0 || probe_begin == probe_end) {
        return cudaSuccess;
    }
    if (!lists.codes || !lists.ids || !lists.lengths ||
        !ivf_codec_complete(lists.codec) ||
        (lists.record_width > 0 && !lists.records) || !queries || !probes ||
        !probe_rank || !probe_offsets || !segment_offsets || !keys || !ids ||
        !duplicates) {
        return cudaErrorInvalidValue;
    }
    ScanArgs a;
    a.lists = lists;
    a.pairs = nq * (probe_end - probe_begin);
    a.queries = queries;
    a.nprobe = nprobe;
    a.probe_begin = probe_begin;
    a.probe_end = probe_end;
    a.probes = probes;
    a.probe_rank = probe_rank;
    a.probe_offsets = probe_offsets;
    a.segment_offsets = segment_offsets;
    a.keys = keys;
    a.ids = ids;
    a.duplicates = duplicates;
    switch (lists.codec.kind) {
    case IvfCodeKind::Float32:
        return launch_scan_for_code<IvfCodeKind::Float32>(a, stream);
    case IvfCodeKind::Float16:
        return launch_scan_for_code<IvfCodeKind::Float16>(a, stream);
    case IvfCodeKind::SQ8:
        return launch_scan_for_code<IvfCodeKind::SQ8>(a, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace kernels
} // namespace faiss_gmm
