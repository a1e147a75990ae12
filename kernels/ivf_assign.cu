/**
 * Fused top-m list assignment (see ivf_assign.h): a tiled SIMT kernel in
 * fp32 with direct differences.
 *
 * A CTA owns a tile of kPointsPerTile points and loops over tiles of
 * kComponentsPerTile components. For each component tile the points and
 * means (and diagonal inverse variances) are staged in shared memory in
 * chunks of kDimsPerChunk dimensions; each thread accumulates a 4 x 4
 * register micro-tile of (point, component) sums from float4 reads. The
 * tile's sums then go through shared memory to an epilogue in which
 * kLanesPerPoint threads per point each keep a sorted top list over every
 * kLanesPerPoint-th component, an online log-sum-exp and the nearest mean.
 * The lanes' partial results are merged once, after the last component tile.
 */

#include <kernels/ivf_assign.h>

#include <algorithm>
#include <climits>
#include <cmath>

namespace faiss_gmm {
namespace kernels {

namespace {

constexpr int kPointsPerTile = 64;
constexpr int kComponentsPerTile = 64;
constexpr int kDimsPerChunk = 32;
constexpr int kThreads = 256;
/// A thread's register micro-tile is kMicro points x kMicro components;
/// its points are ty + kThreadGrid * i, its components tx + kThreadGrid * j
/// (strided, so that the float4 reads of one warp hit distinct banks).
constexpr int kMicro = 4;
constexpr int kThreadGrid = kPointsPerTile / kMicro; // 16 x 16 threads
/// Staged row stride in floats: an odd number of float4 (9), so that the 8
/// rows one quarter-warp reads by float4 fall in distinct banks.
constexpr int kStageStride = kDimsPerChunk + 4;
/// Score row stride: 4 mod 32, so that the epilogue's reads (8 points x 4
/// lanes per warp, lane q reads column q + 4t) are conflict-free.
constexpr int kScoreStride = kComponentsPerTile + 4;
constexpr int kLanesPerPoint = kThreads / kPointsPerTile;
constexpr int kComponentsPerLane = kComponentsPerTile / kLanesPerPoint;

static_assert(kThreadGrid * kThreadGrid == kThreads, "thread grid");
static_assert(kPointsPerTile == kComponentsPerTile, "square CTA tile");
static_assert(kDimsPerChunk % 4 == 0, "float4 chunks");
static_assert(kLanesPerPoint == 4, "shuffle reductions assume 4 lanes");

enum class Mode { L2, Spherical, Diagonal };

/// Shared memory: the three phases of a CTA never overlap in time (a
/// barrier separates them), so they share one buffer.
union SharedPhases {
    struct Staging {
        float x[kPointsPerTile * kStageStride];
        float means[kComponentsPerTile * kStageStride];
        float inv_var[kComponentsPerTile * kStageStride];
    } stage;
    struct Scores {
        /// L2 distance (L2, spherical) or weighted distance (diagonal)
        float sum[kPointsPerTile * kScoreStride];
        /// diagonal with nearest: the plain L2 distance
        float l2[kPointsPerTile * kScoreStride];
    } scores;
    struct Merge {
        float key[kPointsPerTile * kLanesPerPoint * kAssignMaxTop];
        int32_t id[kPointsPerTile * kLanesPerPoint * kAssignMaxTop];
    } merge;
};

struct SharedStorage {
    SharedPhases phase;
    float log_const[kComponentsPerTile];
    float inv_var[kComponentsPerTile]; // spherical
};

struct Params {
    int d;
    int k;
    int64_t n;
    int m;
    float inv_temperature;
    bool vec4; // d % 4 == 0 and every staged array 16-byte aligned
    bool want_nearest;
    const float* __restrict__ x;
    const float* __restrict__ means;
    const float* __restrict__ log_const;
    const float* __restrict__ inv_var;
    AssignOutput out;
};

/// (key, id) ordering: smaller key first, equal keys by smaller id.
__device__ __forceinline__ bool precedes(float ka, int ia, float kb, int ib) {
    return ka < kb || (ka == kb && ia < ib);
}

/// Online log-sum-exp (running max, sum of exp(v - max)) merge.
__device__ __forceinline__ void
lse_merge(float& max_a, float& sum_a, float max_b, float sum_b) {
    const float mx = fmaxf(max_a, max_b);
    if (mx == -INFINITY) {
        return; // both empty
    }
    sum_a = sum_a * __expf(max_a - mx) + sum_b * __expf(max_b - mx);
    max_a = mx;
}

/// Stage rows [row0, row0 + nrows) x dims [l0, l0 + dims) of a row-major
/// array with d columns into dst (kStageStride floats per row); rows and
/// dims beyond the valid range are zero (they add 0 to every sum).
__device__ __forceinline__ void stage_rows(
    float* dst,
    const float* __restrict__ src,
    int64_t row0,
    int nrows,
    int l0,
    int dims,
    int d,
    bool vec4) {
    constexpr int kRows = kPointsPerTile;
    if (vec4) {
        constexpr int kVecs = kDimsPerChunk / 4;
        for (int e = threadIdx.x; e < kRows * kVecs; e += kThreads) {
            const int r = e / kVecs, c = (e % kVecs) * 4;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r < nrows && c < dims) {
                v = __ldg(reinterpret_cast<const float4*>(
                    src + (row0 + r) * d + l0 + c));
            }
            *reinterpret_cast<float4*>(dst + r * kStageStride + c) = v;
        }
    } else {
        for (int e = threadIdx.x; e < kRows * kDimsPerChunk; e += kThreads) {
            const int r = e / kDimsPerChunk, c = e % kDimsPerChunk;
            float v = 0.f;
            if (r < nrows && c < dims) {
                v = __ldg(src + (row0 + r) * d + l0 + c);
            }
            dst[r * kStageStride + c] = v;
        }
    }
}

/*
 * One CTA per tile of kPointsPerTile points (grid-stride over tiles).
 * Reads the points, the means and (LogJoint) log_const / inv_var; writes per
 * point the kTop-list's first m entries (top_index, top_score), log_norm,
 * nearest and nearest_distance where requested. No N x K buffer: the scores
 * of one 64 x 64 tile live in shared memory between the product and the
 * epilogue. kTop >= m is the list length each epilogue lane keeps
 * (1, 4 or 16); kL2Sums adds the plain L2 sums to the diagonal product
 * (for the nearest mean).
 */
template <Mode kMode, int kTop, bool kL2Sums>
__global__ void __launch_bounds__(kThreads, 2)
    assign_top_kernel(const Params p) {
    __shared__ __align__(16) SharedStorage sh;
    constexpr bool kLogJoint = kMode != Mode::L2;
    const int tid = threadIdx.x;
    const int tx = tid % kThreadGrid, ty = tid / kThreadGrid;
    const int ep = tid / kLanesPerPoint, eq = tid % kLanesPerPoint;
    const int64_t num_tiles = (p.n + kPointsPerTile - 1) / kPointsPerTile;

    for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
        const int64_t p0 = tile * kPointsPerTile;
        const int rows = int(min(int64_t(kPointsPerTile), p.n - p0));

        float top_key[kTop];
        int top_id[kTop];
#pragma unroll
        for (int s = 0; s < kTop; s++) {
            top_key[s] = INFINITY;
            top_id[s] = INT_MAX;
        }
        float lse_max = -INFINITY, lse_sum = 0.f;
        float near_dist = INFINITY;
        int near_id = INT_MAX;

        for (int c0 = 0; c0 < p.k; c0 += kComponentsPerTile) {
            const int cols = min(kComponentsPerTile, p.k - c0);
            float acc[kMicro][kMicro];
            float acc_l2[kMicro][kMicro]; // used only with kL2Sums
#pragma unroll
            for (int i = 0; i < kMicro; i++) {
#pragma unroll
                for (int j = 0; j < kMicro; j++) {
                    acc[i][j] = 0.f;
                    if (kL2Sums) {
                        acc_l2[i][j] = 0.f;
                    }
                }
            }
            for (int l0 = 0; l0 < p.d; l0 += kDimsPerChunk) {
                const int dims = min(kDimsPerChunk, p.d - l0);
                // The previous chunk's products / tile's epilogue / tile's
                // merge are done with the shared buffer.
                __syncthreads();
                stage_rows(
                    sh.phase.stage.x, p.x, p0, rows, l0, dims, p.d, p.vec4);
                stage_rows(
                    sh.phase.stage.means,
                    p.means,
                    c0,
                    cols,
                    l0,
                    dims,
                    p.d,
                    p.vec4);
                if (kMode == Mode::Diagonal) {
                    stage_rows(
                        sh.phase.stage.inv_var,
                        p.inv_var,
                        c0,
                        cols,
                        l0,
                        dims,
                        p.d,
                        p.vec4);
                }
                __syncthreads();
                const int dims4 = (dims + 3) & ~3;
#pragma unroll 4
                for (int l = 0; l < dims4; l += 4) {
                    float4 xv[kMicro];
#pragma unroll
                    for (int i = 0; i < kMicro; i++) {
                        xv[i] = *reinterpret_cast<const float4*>(
                            sh.phase.stage.x +
                            (ty + kThreadGrid * i) * kStageStride + l);
                    }
#pragma unroll
                    for (int j = 0; j < kMicro; j++) {
                        const int row = (tx + kThreadGrid * j) * kStageStride;
                        const float4 mv = *reinterpret_cast<const float4*>(
                            sh.phase.stage.means + row + l);
                        float4 vv = make_float4(1.f, 1.f, 1.f, 1.f);
                        if (kMode == Mode::Diagonal) {
                            vv = *reinterpret_cast<const float4*>(
                                sh.phase.stage.inv_var + row + l);
                        }
#pragma unroll
                        for (int i = 0; i < kMicro; i++) {
                            const float dx = xv[i].x - mv.x;
                            const float dy = xv[i].y - mv.y;
                            const float dz = xv[i].z - mv.z;
                            const float dw = xv[i].w - mv.w;
                            if (kMode == Mode::Diagonal) {
                                float a = acc[i][j];
                                a = fmaf(dx * vv.x, dx, a);
                                a = fmaf(dy * vv.y, dy, a);
                                a = fmaf(dz * vv.z, dz, a);
                                a = fmaf(dw * vv.w, dw, a);
                                acc[i][j] = a;
                                if (kL2Sums) {
                                    float b = acc_l2[i][j];
                                    b = fmaf(dx, dx, b);
                                    b = fmaf(dy, dy, b);
                                    b = fmaf(dz, dz, b);
                                    b = fmaf(dw, dw, b);
                                    acc_l2[i][j] = b;
                                }
                            } else {
                                float a = acc[i][j];
                                a = fmaf(dx, dx, a);
                                a = fmaf(dy, dy, a);
                                a = fmaf(dz, dz, a);
                                a = fmaf(dw, dw, a);
                                acc[i][j] = a;
                            }
                        }
                    }
                }
            }
            __syncthreads(); // staging reads done: the scores overwrite it
#pragma unroll
            for (int i = 0; i < kMicro; i++) {
#pragma unroll
                for (int j = 0; j < kMicro; j++) {
                    const int at = (ty + kThreadGrid * i) * kScoreStride + tx +
                                   kThreadGrid * j;
                    sh.phase.scores.sum[at] = acc[i][j];
                    if (kL2Sums) {
                        sh.phase.scores.l2[at] = acc_l2[i][j];
                    }
                }
            }
            if (kLogJoint && tid < kComponentsPerTile) {
                const bool valid = tid < cols;
                sh.log_const[tid] = valid ? p.log_const[c0 + tid] : 0.f;
                if (kMode == Mode::Spherical) {
                    sh.inv_var[tid] = valid ? p.inv_var[c0 + tid] : 0.f;
                }
            }
            __syncthreads();
            if (ep < rows) {
                const float* row_sum = sh.phase.scores.sum + ep * kScoreStride;
                const float* row_l2 = sh.phase.scores.l2 + ep * kScoreStride;
#pragma unroll 4
                for (int t = 0; t < kComponentsPerLane; t++) {
                    const int c = eq + kLanesPerPoint * t;
                    if (c >= cols) {
                        break;
                    }
                    const int id = c0 + c;
                    const float sum = row_sum[c];
                    float key = sum;
                    if (kLogJoint) {
                        float s, l2;
                        if (kMode == Mode::Spherical) {
                            l2 = sum;
                            s = sh.log_const[c] - 0.5f * sh.inv_var[c] * sum;
                        } else {
                            l2 = kL2Sums ? row_l2[c] : 0.f;
                            s = sh.log_const[c] - 0.5f * sum;
                        }
                        key = -s;
                        const float v = s * p.inv_temperature;
                        if (v > lse_max) {
                            lse_sum = lse_sum * __expf(lse_max - v) + 1.f;
                            lse_max = v;
                        } else if (v > -INFINITY) {
                            lse_sum += __expf(v - lse_max);
                        }
                        if (p.want_nearest &&
                            precedes(l2, id, near_dist, near_id)) {
                            near_dist = l2;
                            near_id = id;
                        }
                    }
                    if (precedes(
                            key, id, top_key[kTop - 1], top_id[kTop - 1])) {
                        // Insertion: carry the candidate down the sorted
                        // list (registers only, no dynamic indexing).
                        float ck = key;
                        int ci = id;
#pragma unroll
                        for (int s = 0; s < kTop; s++) {
                            if (precedes(ck, ci, top_key[s], top_id[s])) {
                                const float tk = top_key[s];
                                const int ti = top_id[s];
                                top_key[s] = ck;
                                top_id[s] = ci;
                                ck = tk;
                                ci = ti;
                            }
                        }
                    }
                }
            }
        }

        // Merge the kLanesPerPoint lanes of each point (adjacent lanes).
#pragma unroll
        for (int delta = 1; delta < kLanesPerPoint; delta *= 2) {
            const float om = __shfl_xor_sync(0xffffffffu, lse_max, delta);
            const float os = __shfl_xor_sync(0xffffffffu, lse_sum, delta);
            lse_merge(lse_max, lse_sum, om, os);
            const float od = __shfl_xor_sync(0xffffffffu, near_dist, delta);
            const int oi = __shfl_xor_sync(0xffffffffu, near_id, delta);
            if (precedes(od, oi, near_dist, near_id)) {
                near_dist = od;
                near_id = oi;
            }
        }
        __syncthreads(); // epilogue reads done: the lists overwrite scores
        {
            const int base = (ep * kLanesPerPoint + eq) * kTop;
#pragma unroll
            for (int s = 0; s < kTop; s++) {
                sh.phase.merge.key[base + s] = top_key[s];
                sh.phase.merge.id[base + s] = top_id[s];
            }
        }
        __syncthreads();
        if (eq == 0 && ep < rows) {
            const int64_t row = p0 + ep;
            const float* keys = sh.phase.merge.key + ep * kLanesPerPoint * kTop;
            const int* ids = sh.phase.merge.id + ep * kLanesPerPoint * kTop;
            // Every list is sorted; m <= kTop draws never exhaust a list.
            int head0 = 0, head1 = kTop, head2 = 2 * kTop, head3 = 3 * kTop;
            for (int r = 0; r < p.m; r++) {
                int best = head0;
                if (precedes(keys[head1], ids[head1], keys[best], ids[best])) {
                    best = head1;
                }
                if (precedes(keys[head2], ids[head2], keys[best], ids[best])) {
                    best = head2;
                }
                if (precedes(keys[head3], ids[head3], keys[best], ids[best])) {
                    best = head3;
                }
                const float key = keys[best];
                const int id = ids[best];
                head0 += best == head0;
                head1 += best == head1;
                head2 += best == head2;
                head3 += best == head3;
                p.out.top_index[row * p.m + r] = id;
                if (p.out.top_score) {
                    p.out.top_score[row * p.m + r] = kLogJoint ? -key : key;
                }
                if (!kLogJoint && r == 0) {
                    // L2: the nearest mean is the first entry.
                    near_dist = key;
                    near_id = id;
                }
            }
            if (kLogJoint && p.out.log_norm) {
                p.out.log_norm[row] = lse_max + logf(lse_sum);
            }
            if (p.out.nearest) {
                p.out.nearest[row] = near_id;
            }
            if (p.out.nearest_distance) {
                p.out.nearest_distance[row] = near_dist;
            }
        }
    }
}

template <Mode kMode, bool kL2Sums>
void launch_mode(int m, int grid, const Params& p, cudaStream_t stream) {
    if (m == 1) {
        assign_top_kernel<kMode, 1, kL2Sums><<<grid, kThreads, 0, stream>>>(p);
    } else if (m <= 4) {
        assign_top_kernel<kMode, 4, kL2Sums><<<grid, kThreads, 0, stream>>>(p);
    } else {
        assign_top_kernel<kMode, kAssignMaxTop, kL2Sums>
            <<<grid, kThreads, 0, stream>>>(p);
    }
}

bool aligned16(const void* ptr) {
    return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

} // namespace

cudaError_t ivf_assign_top(
    const AssignModel& model,
    AssignScore score,
    int64_t n,
    const float* x,
    int m,
    float temperature,
    const AssignOutput& out,
    cudaStream_t stream) {
    const bool log_joint = score == AssignScore::LogJoint;
    if (score != AssignScore::L2 && !log_joint) {
        return cudaErrorInvalidValue;
    }
    if (n < 0 || model.d < 1 || model.k < 1 || m < 1 ||
        m > std::min(model.k, kAssignMaxTop)) {
        return cudaErrorInvalidValue;
    }
    if (log_joint && !(temperature > 0 && std::isfinite(temperature))) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    if (!x || !model.means || !out.top_index) {
        return cudaErrorInvalidValue;
    }
    if (log_joint && (!model.log_const || !model.inv_var)) {
        return cudaErrorInvalidValue;
    }
    Params p;
    p.d = model.d;
    p.k = model.k;
    p.n = n;
    p.m = m;
    p.inv_temperature = log_joint ? 1.0f / temperature : 1.0f;
    const bool diagonal = log_joint && model.diagonal;
    p.vec4 = model.d % 4 == 0 && aligned16(x) && aligned16(model.means) &&
             (!diagonal || aligned16(model.inv_var));
    p.want_nearest = out.nearest || out.nearest_distance;
    p.x = x;
    p.means = model.means;
    p.log_const = model.log_const;
    p.inv_var = model.inv_var;
    p.out = out;
    const int64_t tiles = (n + kPointsPerTile - 1) / kPointsPerTile;
    const int grid = int(std::min<int64_t>(tiles, INT_MAX));
    if (!log_joint) {
        launch_mode<Mode::L2, false>(m, grid, p, stream);
    } else if (!diagonal) {
        launch_mode<Mode::Spherical, false>(m, grid, p, stream);
    } else if (p.want_nearest) {
        launch_mode<Mode::Diagonal, true>(m, grid, p, stream);
    } else {
        launch_mode<Mode::Diagonal, false>(m, grid, p, stream);
    }
    return cudaGetLastError();
}

} // namespace kernels
} // namespace faiss_gmm
