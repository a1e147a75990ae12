// Kernels of the full-covariance E-step (see gmm_estep_full.h). The two
// products are cuBLAS GEMMs issued by the host; these kernels are the
// per-component model preparation and the per-row work around them, all
// memory-bound:
// * prepare-model: one CTA per component (d x d values of U_j);
// * features: grid-stride over the chunk's [x' | 1] rows;
// * responsibilities: one CTA per point row, its warps over the components,
//   each component's d_pad whitened floats read by a group of lanes with
//   float4 loads, reduced by shuffles; online log-sum-exp in registers;
// * weighted residuals: grid-stride float4 over Z, in place;
// * add-statistics: element-wise fp32 -> double accumulation.

#include <kernels/gmm_estep_full.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace faiss_gmm {
namespace kernels {

namespace {

/// Threads of the prepare-model CTAs (one CTA per component).
constexpr int kModelThreads = 128;
/// Threads of the feature CTAs (grid-stride over the feature values).
constexpr int kFeatureThreads = 256;
/// Threads of the weighted-residual CTAs (grid-stride over float4 of Z).
constexpr int kResidualThreads = 256;
/// Threads of the responsibilities CTAs (one CTA per point row).
constexpr int kRowThreads = 32 * kEStepFullRowWarps;
/// Threads of the add-statistics CTAs.
constexpr int kAddThreads = 256;
/// Largest grid of the grid-stride kernels.
constexpr int64_t kMaxBlocks = 8192;

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.69314718055994530942;
constexpr double kLog2Pi = 1.8378770664093454836; // ln(2 pi)

/// Nearest tf32 value, ties away from zero (cvt.rna, as gmm_mstep.cu rounds
/// the other E-steps' component matrices); non-finite values unchanged.
__device__ __forceinline__ float round_to_tf32(float v) {
    if (!isfinite(v)) {
        return v;
    }
    return __uint_as_float((__float_as_uint(v) + 0x1000u) & 0xffffe000u);
}

__device__ __forceinline__ float store_value(float v, bool tf32) {
    return tf32 ? round_to_tf32(v) : v;
}

/// Adds v to a running (max m, sum s) of exp2 terms.
__device__ __forceinline__ void lse_add(float& m, float& s, float v) {
    if (v > m) {
        s = s * exp2f(m - v) + 1.0f;
        m = v;
    } else if (v > -INFINITY) {
        s += exp2f(v - m);
    }
}

/// Merges the running (m2, s2) into (m, s).
__device__ __forceinline__ void
lse_merge(float& m, float& s, float m2, float s2) {
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) {
        return;
    }
    s = s * exp2f(m - mn) + s2 * exp2f(m2 - mn);
    m = mn;
}

/**
 * Step 0. CTA j (one per component): reads mu_j, w_j, U_j (row-major upper
 * triangular) and c; writes column block j of W (products[l][j d_pad + c] =
 * U_j[l][c] for l <= c < d, zero elsewhere, tf32-rounded for TF32), o_j[c]
 * = sum_{l <= c} (mu_jl - c_l) U_j[l][c] (double sums of the same rounded
 * factor, zero for c >= d) and the constant
 * log2(e) (log w_j + sum_l log U_j[l][l] - d/2 log 2 pi) (-inf for w_j <= 0).
 * Threads run along the columns c of U_j: its rows are read coalesced.
 */
__global__ void __launch_bounds__(kModelThreads) full_prepare_model_kernel(
    int d,
    int k,
    int d_pad,
    bool tf32,
    const float* __restrict__ means,
    const float* __restrict__ weights,
    const float* __restrict__ chol,
    const float* __restrict__ center,
    float* __restrict__ products,
    float* __restrict__ offsets,
    float* __restrict__ log2_const) {
    extern __shared__ double mu_c[]; // d values: mu_j - c, exact in double
    __shared__ double logdet_part[kModelThreads];
    const int j = blockIdx.x;
    const float* u = chol + int64_t(j) * d * d;
    double logdet = 0;
    for (int l = threadIdx.x; l < d; l += kModelThreads) {
        mu_c[l] = double(means[int64_t(j) * d + l]) - double(center[l]);
        logdet += log(double(u[int64_t(l) * d + l]));
    }
    logdet_part[threadIdx.x] = logdet;
    __syncthreads();
    const int64_t ld = int64_t(k) * d_pad;
    for (int c = threadIdx.x; c < d_pad; c += kModelThreads) {
        double o = 0;
        if (c < d) {
            // the factor as the whitening GEMM sees it (tf32-rounded for
            // TF32), so that U's rounding cancels in z - o = (x' - m') U
            for (int l = 0; l <= c; l++) {
                o += mu_c[l] * double(store_value(u[int64_t(l) * d + c], tf32));
            }
        }
        offsets[int64_t(j) * d_pad + c] = float(o);
    }
    for (int l = 0; l < d; l++) {
        for (int c = threadIdx.x; c < d_pad; c += kModelThreads) {
            // upper triangle only: the offsets sum l <= c, so a stray
            // lower-triangle value must not reach the product either
            const float v = c < d && c >= l ? u[int64_t(l) * d + c] : 0.0f;
            products[int64_t(l) * ld + int64_t(j) * d_pad + c] =
                store_value(v, tf32);
        }
    }
    if (threadIdx.x == 0) {
        double total = 0;
        for (int t = 0; t < kModelThreads; t++) {
            total += logdet_part[t];
        }
        const float w = weights[j];
        log2_const[j] =
            w > 0 ? float(kLog2e * (log(double(w)) + total - 0.5 * d * kLog2Pi))
                  : -INFINITY;
    }
}

/**
 * Step 1. Grid-stride over the rows x cols feature values: column l < d is
 * x'_il = x_il - c_l, column d is 1, the padding columns 0 (tf32-rounded
 * for TF32). Consecutive threads write consecutive columns.
 */
__global__ void __launch_bounds__(kFeatureThreads) full_features_kernel(
    int64_t rows,
    int d,
    int cols,
    bool tf32,
    const float* __restrict__ x,
    const float* __restrict__ center,
    float* __restrict__ features) {
    const int64_t total = rows * cols;
    for (int64_t e = int64_t(blockIdx.x) * kFeatureThreads + threadIdx.x;
         e < total;
         e += int64_t(gridDim.x) * kFeatureThreads) {
        const int64_t i = e / cols;
        const int col = int(e - i * cols);
        float v = 0;
        if (col < d) {
            v = x[i * d + col] - center[col];
        } else if (col == d) {
            v = 1;
        }
        features[e] = store_value(v, tf32);
    }
}

/**
 * Step 3. CTA i (one per point row) reads row i of Z (k components of d_pad
 * floats), the offsets and the constants. Lanes form groups of `group`
 * lanes (a power of two, at most 32, about one float4 per lane and
 * component); a warp step takes 32 / group components, one per group, and
 * a group sums ||z_ij - o_j||^2 over its float4 slots, then reduces by
 * xor-shuffles inside the group. Warps interleave their steps over the
 * components. The group's first lane forms the logit (log2 units), stores
 * it in resp and adds it to its running log-sum-exp; lanes, then warps
 * (shared memory, fixed order) merge them into log2 Z. After a barrier
 * (which also orders the logits written to global memory) every thread
 * turns logits of the row into r = exp2(l - log2 Z) in place. log_z[i] =
 * ln Z_i (double) for the deterministic log-likelihood sum.
 */
__global__ void __launch_bounds__(kRowThreads) full_responsibilities_kernel(
    int k,
    int d_pad,
    int group,
    bool tf32,
    const float* __restrict__ z,
    const float* __restrict__ offsets,
    const float* __restrict__ log2_const,
    float* resp,
    double* __restrict__ log_z) {
    __shared__ float warp_m[kEStepFullRowWarps];
    __shared__ float warp_s[kEStepFullRowWarps];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int64_t i = blockIdx.x;
    const int slots = d_pad / 4;
    const int per_step = 32 / group;
    const int sub = lane / group;   // component of this lane in a step
    const int slot0 = lane % group; // first float4 slot of this lane
    const float4* zrow =
        reinterpret_cast<const float4*>(z + i * int64_t(k) * d_pad);
    const float4* off = reinterpret_cast<const float4*>(offsets);
    float* rrow = resp + i * int64_t(k);
    const float half_log2e = float(0.5 * kLog2e);
    float m = -INFINITY, s = 0;
    // j0 depends on the warp only: every lane of a warp runs every step
    // (full-mask shuffles), lanes past k add zeros.
    for (int j0 = warp * per_step; j0 < k;
         j0 += kEStepFullRowWarps * per_step) {
        const int j = j0 + sub;
        float acc = 0;
        if (j < k) {
            const float4* zc = zrow + int64_t(j) * slots;
            const float4* oc = off + int64_t(j) * slots;
            for (int sl = slot0; sl < slots; sl += group) {
                const float4 a = __ldcs(zc + sl);
                const float4 o = __ldg(oc + sl);
                const float dx = a.x - o.x, dy = a.y - o.y;
                const float dz = a.z - o.z, dw = a.w - o.w;
                acc = fmaf(dx, dx, acc);
                acc = fmaf(dy, dy, acc);
                acc = fmaf(dz, dz, acc);
                acc = fmaf(dw, dw, acc);
            }
        }
        for (int o = group >> 1; o > 0; o >>= 1) {
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        }
        if (j < k && slot0 == 0) {
            const float l = __ldg(log2_const + j) - half_log2e * acc;
            rrow[j] = l;
            lse_add(m, s, l);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    if (lane == 0) {
        warp_m[warp] = m;
        warp_s[warp] = s;
    }
    __syncthreads();
    m = warp_m[0];
    s = warp_s[0];
    for (int w = 1; w < kEStepFullRowWarps; w++) {
        lse_merge(m, s, warp_m[w], warp_s[w]);
    }
    const float log2z = m + log2f(s);
    if (threadIdx.x == 0) {
        log_z[i] = double(log2z) * kLn2;
    }
    // a row no component can explain (every logit -inf) gets no
    // responsibility instead of NaNs; its log-likelihood -inf reaches the
    // host, which refuses it
    const bool explained = log2z > -INFINITY;
    for (int j = threadIdx.x; j < k; j += kRowThreads) {
        rrow[j] = explained ? store_value(exp2f(rrow[j] - log2z), tf32) : 0.0f;
    }
}

/**
 * Step 5. Grid-stride over the float4 slots of Z (rows x k x d_pad / 4):
 * slot (i, j, q) becomes sqrt(r_ij) (z_ij - o_j) on those 4 coordinates,
 * tf32-rounded for TF32. Padding coordinates stay 0 (z and o are 0 there).
 */
__global__ void __launch_bounds__(kResidualThreads)
    full_weighted_residuals_kernel(
        int64_t rows,
        int k,
        int slots,
        bool tf32,
        const float* __restrict__ resp,
        const float4* __restrict__ offsets,
        float4* __restrict__ z) {
    const int64_t per_row = int64_t(k) * slots;
    const int64_t total = rows * per_row;
    for (int64_t e = int64_t(blockIdx.x) * kResidualThreads + threadIdx.x;
         e < total;
         e += int64_t(gridDim.x) * kResidualThreads) {
        const int64_t i = e / per_row;
        const int64_t jq = e - i * per_row; // j * slots + q
        const int j = int(jq / slots);
        const float w = sqrtf(__ldg(resp + i * k + j));
        const float4 o = __ldg(offsets + jq);
        float4 v = z[e];
        v.x = store_value(w * (v.x - o.x), tf32);
        v.y = store_value(w * (v.y - o.y), tf32);
        v.z = store_value(w * (v.z - o.z), tf32);
        v.w = store_value(w * (v.w - o.w), tf32);
        z[e] = v;
    }
}

/// Step 7. acc[e] += stats[e], grid-stride.
__global__ void __launch_bounds__(kAddThreads) full_add_statistics_kernel(
    int64_t count, const float* __restrict__ stats, double* __restrict__ acc) {
    for (int64_t e = int64_t(blockIdx.x) * kAddThreads + threadIdx.x; e < count;
         e += int64_t(gridDim.x) * kAddThreads) {
        acc[e] += double(stats[e]);
    }
}

bool valid_math(EStepMath math) {
    return math == EStepMath::FP32 || math == EStepMath::TF32;
}

cudaError_t check_model(const FullEStepModel& m) {
    if (m.d < 1 || m.d > kEStepFullMaxDim || m.k < 1 ||
        int64_t(m.k) * estep_full_padded_dim(m.d) > 0x7fffffff ||
        !valid_math(m.math) || !m.products || !m.offsets || !m.log2_const ||
        !m.center) {
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

/**
 * The per-chunk launchers' common checks: a valid model, 0 <= rows <=
 * INT_MAX, when rows > 0 every buffer non-null, and float4_z (when given,
 * a Z buffer read as float4) and the offsets 16-byte aligned (cudaMalloc'd
 * buffers are; row strides are multiples of 4 floats).
 */
cudaError_t check_chunk(
    const FullEStepModel& m,
    int64_t rows,
    std::initializer_list<const void*> buffers,
    const float* float4_z = nullptr) {
    cudaError_t err = check_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (rows < 0 || rows > 0x7fffffff) {
        return cudaErrorInvalidValue;
    }
    for (const void* b : buffers) {
        if (rows > 0 && !b) {
            return cudaErrorInvalidValue;
        }
    }
    if (float4_z && ((reinterpret_cast<uintptr_t>(float4_z) & 15) != 0 ||
                     (reinterpret_cast<uintptr_t>(m.offsets) & 15) != 0)) {
        return cudaErrorMisalignedAddress;
    }
    return cudaSuccess;
}

/// Lanes per component in step 3: the smallest power of two >= the float4
/// slots of a component, at most 32.
int lanes_per_component(int d_pad) {
    const int slots = d_pad / 4;
    int g = 1;
    while (g < slots && g < 32) {
        g *= 2;
    }
    return g;
}

/// Blocks of a grid-stride kernel over `count` items: enough for one item
/// per thread, at most kMaxBlocks, at least 1.
unsigned grid_stride_blocks(int64_t count, int threads) {
    return unsigned(std::max<int64_t>(
        1, std::min<int64_t>((count + threads - 1) / threads, kMaxBlocks)));
}

} // namespace

int estep_full_padded_dim(int d) {
    return (d + kEStepFullDimAlign - 1) / kEStepFullDimAlign *
           kEStepFullDimAlign;
}

FullFeatureLayout estep_full_feature_layout(int d) {
    FullFeatureLayout lay;
    lay.one = d;
    lay.cols = (d + 1 + 3) / 4 * 4;
    return lay;
}

int64_t estep_full_statistics_values(int d, int k) {
    return int64_t(k) * estep_full_feature_layout(d).cols + int64_t(k) * d * d;
}

int64_t estep_full_row_bytes(int d, int k) {
    const int64_t z = int64_t(k) * estep_full_padded_dim(d) * 4;
    const int64_t r = int64_t(k) * 4;
    const int64_t f = int64_t(estep_full_feature_layout(d).cols) * 4;
    return z + r + f + 8;
}

cudaError_t gmm_estep_full_prepare_model(
    int d,
    int k,
    EStepMath math,
    const float* means,
    const float* weights,
    const float* precision_cholesky,
    const float* center,
    float* products,
    float* offsets,
    float* log2_const,
    cudaStream_t stream) {
    if (d < 1 || d > kEStepFullMaxDim || k < 1 ||
        int64_t(k) * estep_full_padded_dim(d) > 0x7fffffff ||
        !valid_math(math) || !means || !weights || !precision_cholesky ||
        !center || !products || !offsets || !log2_const) {
        return cudaErrorInvalidValue;
    }
    full_prepare_model_kernel<<<k, kModelThreads, size_t(d) * 8, stream>>>(
        d,
        k,
        estep_full_padded_dim(d),
        math == EStepMath::TF32,
        means,
        weights,
        precision_cholesky,
        center,
        products,
        offsets,
        log2_const);
    return cudaGetLastError();
}

cudaError_t gmm_estep_full_features(
    const FullEStepModel& m,
    int64_t rows,
    const float* x,
    float* features,
    cudaStream_t stream) {
    const cudaError_t err = check_chunk(m, rows, {x, features});
    if (err != cudaSuccess || rows == 0) {
        return err;
    }
    const int cols = estep_full_feature_layout(m.d).cols;
    full_features_kernel<<<
        grid_stride_blocks(rows * cols, kFeatureThreads),
        kFeatureThreads,
        0,
        stream>>>(
        rows, m.d, cols, m.math == EStepMath::TF32, x, m.center, features);
    return cudaGetLastError();
}

cudaError_t gmm_estep_full_responsibilities(
    const FullEStepModel& m,
    int64_t rows,
    const float* z,
    float* resp,
    double* log_z,
    double* log_likelihood,
    cudaStream_t stream) {
    cudaError_t err = check_chunk(m, rows, {z, resp, log_z, log_likelihood}, z);
    if (err != cudaSuccess || rows == 0) {
        return err;
    }
    const int d_pad = estep_full_padded_dim(m.d);
    full_responsibilities_kernel<<<unsigned(rows), kRowThreads, 0, stream>>>(
        m.k,
        d_pad,
        lanes_per_component(d_pad),
        m.math == EStepMath::TF32,
        z,
        m.offsets,
        m.log2_const,
        resp,
        log_z);
    err = cudaGetLastError();
    if (err != cudaSuccess) {
        return err;
    }
    return gmm_estep_sum_partials(rows, log_z, log_likelihood, stream);
}

cudaError_t gmm_estep_full_weighted_residuals(
    const FullEStepModel& m,
    int64_t rows,
    const float* resp,
    float* z,
    cudaStream_t stream) {
    const cudaError_t err = check_chunk(m, rows, {resp, z}, z);
    if (err != cudaSuccess || rows == 0) {
        return err;
    }
    const int slots = estep_full_padded_dim(m.d) / 4;
    full_weighted_residuals_kernel<<<
        grid_stride_blocks(rows * m.k * slots, kResidualThreads),
        kResidualThreads,
        0,
        stream>>>(
        rows,
        m.k,
        slots,
        m.math == EStepMath::TF32,
        resp,
        reinterpret_cast<const float4*>(m.offsets),
        reinterpret_cast<float4*>(z));
    return cudaGetLastError();
}

cudaError_t gmm_estep_full_add_statistics(
    int64_t count, const float* stats, double* acc, cudaStream_t stream) {
    if (count < 0 || (count > 0 && (!stats || !acc))) {
        return cudaErrorInvalidValue;
    }
    if (count == 0) {
        return cudaSuccess;
    }
    full_add_statistics_kernel<<<
        grid_stride_blocks(count, kAddThreads),
        kAddThreads,
        0,
        stream>>>(count, stats, acc);
    return cudaGetLastError();
}

} // namespace kernels
} // namespace faiss_gmm
