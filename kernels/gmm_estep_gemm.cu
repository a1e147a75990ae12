// Kernels of the GEMM-based E-step (see gmm_estep_gemm.h). The two products
// are cuBLAS GEMMs issued by the host; these kernels are the element-wise
// and per-row / per-component work around them, all memory-bound:
// * prepare: one warp per point row (coalesced reads of x, writes of X');
// * log-norm: one warp per row of raw (float4 loads over the components),
//   online log-sum-exp in registers, warp merge by shuffles;
// * probabilities: CTA = 64 components x a slab of rows, threads along the
//   components (coalesced row segments), per-component sums in registers
//   over the slab, one double atomic per component and CTA;
// * add-statistics: element-wise fp32 -> double accumulation.

#include <kernels/gmm_estep_gemm.h>

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace faiss_gmm {
namespace kernels {

namespace {

/// Threads of the prepare and log-norm CTAs (one warp per row).
constexpr int kRowThreads = 32 * kEStepGemmNormRows;
/// Components per CTA of the probabilities kernel (one per thread column).
constexpr int kProbComponents = 64;
/// Row phases of the probabilities CTA (threads = components x phases).
constexpr int kProbPhases = 4;
/// Rows per CTA of the probabilities kernel (its slab).
constexpr int kProbRows = 256;
/// Threads of the fixed-order partial sum (one CTA).
/// Threads of the add-statistics CTAs.
constexpr int kAddThreads = 256;
/// Largest grid of the grid-stride kernels.
constexpr int64_t kMaxBlocks = 8192;

static_assert(kEStepComponentTile % kProbComponents == 0, "k_pad tiles");
static_assert(kProbRows % kProbPhases == 0, "whole row phases");

__device__ __forceinline__ float fast_exp2(float v) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}

__device__ __forceinline__ void store_element(float* p, float v) {
    *p = v;
}

__device__ __forceinline__ void store_element(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
}

/// Logit in log2 units from raw = x'.mu'-part (gmm_estep.h); dist receives
/// the clamped squared distance (spherical only), as the fused kernels do.
template <bool DIAG>
__device__ __forceinline__ float logit2(
    float raw,
    float constant,
    float scale,
    float norm,
    float point_norm,
    float& dist) {
    if constexpr (DIAG) {
        dist = 0;
        return constant + raw;
    } else {
        dist = fmaxf(point_norm + norm - 2.0f * raw, 0.0f);
        return constant - scale * dist;
    }
}

/// Adds v to a running (max m, sum s) of exp2 terms.
__device__ __forceinline__ void lse_add(float& m, float& s, float v) {
    if (v > m) {
        s = s * fast_exp2(m - v) + 1.0f;
        m = v;
    } else if (v > -INFINITY) {
        s += fast_exp2(v - m);
    }
}

__device__ __forceinline__ void
lse_merge(float& m, float& s, float m2, float s2) {
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) {
        return;
    }
    s = s * fast_exp2(m - mn) + s2 * fast_exp2(m2 - mn);
    m = mn;
}

/**
 * Step 1. Reads rows x d points (fp32) and the centre; writes X' rows of
 * depth (T = bf16 or float: [x' | x'^2], zero padding) and |x'|^2. One warp
 * per row so that both the reads and the writes are coalesced.
 */
template <typename T, bool DIAG>
__global__ void __launch_bounds__(kRowThreads) gemm_prepare_kernel(
    int64_t rows,
    int d,
    int d_pad,
    int depth,
    const float* __restrict__ x,
    const float* __restrict__ center,
    T* __restrict__ out,
    float* __restrict__ norms) {
    const int lane = threadIdx.x & 31;
    const int64_t warps_total = int64_t(gridDim.x) * (blockDim.x >> 5);
    for (int64_t row =
             int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
         row < rows;
         row += warps_total) {
        const float* xr = x + row * d;
        T* o = out + row * depth;
        float norm = 0;
        for (int c = lane; c < d_pad; c += 32) {
            const float v = c < d ? __ldg(xr + c) - __ldg(center + c) : 0.0f;
            norm += v * v;
            store_element(o + c, v);
            if constexpr (DIAG) {
                store_element(o + d_pad + c, v * v);
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            norm += __shfl_xor_sync(0xffffffffu, norm, off);
        }
        if (lane == 0) {
            norms[row] = norm;
        }
    }
}

/**
 * Step 3a. Reads raw (one warp per row, float4 over the components), the
 * per-component terms and |x'|^2. Writes log2 Z of its rows and the CTA's
 * sum of ln Z to partials[blockIdx.x] (rows in warp order: deterministic).
 */
template <bool DIAG>
__global__ void __launch_bounds__(kRowThreads) gemm_log_norm_kernel(
    int64_t rows,
    int k_pad,
    const float* __restrict__ raw,
    const float* __restrict__ row_const,
    const float* __restrict__ row_scale,
    const float* __restrict__ row_norm,
    const float* __restrict__ norms,
    float* __restrict__ log2_z,
    double* __restrict__ partials) {
    __shared__ double ll_warp[kEStepGemmNormRows];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int64_t row = int64_t(blockIdx.x) * kEStepGemmNormRows + warp;
    double ll = 0;
    if (row < rows) {
        const float* r = raw + row * k_pad;
        const float pn = __ldg(norms + row);
        float m = -INFINITY, s = 0;
        for (int k = 4 * lane; k < k_pad; k += 128) {
            const float4 v = __ldg(reinterpret_cast<const float4*>(r + k));
            const float4 c =
                __ldg(reinterpret_cast<const float4*>(row_const + k));
            float4 sc = make_float4(0, 0, 0, 0), nm = sc;
            if constexpr (!DIAG) {
                sc = __ldg(reinterpret_cast<const float4*>(row_scale + k));
                nm = __ldg(reinterpret_cast<const float4*>(row_norm + k));
            }
            float dist;
            lse_add(m, s, logit2<DIAG>(v.x, c.x, sc.x, nm.x, pn, dist));
            lse_add(m, s, logit2<DIAG>(v.y, c.y, sc.y, nm.y, pn, dist));
            lse_add(m, s, logit2<DIAG>(v.z, c.z, sc.z, nm.z, pn, dist));
            lse_add(m, s, logit2<DIAG>(v.w, c.w, sc.w, nm.w, pn, dist));
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, off);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, off);
            lse_merge(m, s, m2, s2);
        }
        const float lz = m + log2f(s);
        if (lane == 0) {
            log2_z[row] = lz;
        }
        ll = double(lz) * 0.69314718055994530942;
    }
    if (lane == 0) {
        ll_warp[warp] = ll;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        for (int w = 0; w < kEStepGemmNormRows; w++) {
            total += ll_warp[w];
        }
        partials[blockIdx.x] = total;
    }
}

/**
 * Step 3b. CTA = 64 components x a slab of kProbRows rows (block index =
 * component tile + tiles * slab). Reads raw, log2 Z and |x'|^2 of the
 * slab; writes P = exp2(l - log2 Z) (T = bf16 or float; probs may alias
 * raw: each thread reads its element before writing it) and adds N_k and
 * (spherical) sum p * clamped distance over the slab with one double atomic
 * per component. Threads run along the components, so every warp reads 32
 * consecutive floats of a row.
 */
template <typename T, bool DIAG>
__global__ void __launch_bounds__(kProbComponents* kProbPhases)
    gemm_probabilities_kernel(
        int64_t rows,
        int k_pad,
        const float* raw,
        const float* __restrict__ row_const,
        const float* __restrict__ row_scale,
        const float* __restrict__ row_norm,
        const float* __restrict__ norms,
        const float* __restrict__ log2_z,
        T* probs,
        double* __restrict__ count,
        double* __restrict__ dist_sum) {
    __shared__ float red[2][kProbPhases][kProbComponents];
    const int64_t tiles = k_pad / kProbComponents;
    const int64_t tile = int64_t(blockIdx.x) % tiles;
    const int64_t slab = int64_t(blockIdx.x) / tiles;
    const int k = int(tile) * kProbComponents + int(threadIdx.x);
    const float constant = __ldg(row_const + k);
    const float scale = DIAG ? 0.0f : __ldg(row_scale + k);
    const float norm = DIAG ? 0.0f : __ldg(row_norm + k);
    const int64_t end = std::min<int64_t>(rows, (slab + 1) * kProbRows);
    float csum = 0, dsum = 0;
#pragma unroll 4
    for (int64_t i = slab * kProbRows + threadIdx.y; i < end;
         i += kProbPhases) {
        const int64_t at = i * k_pad + k;
        float dist;
        const float l = logit2<DIAG>(
            raw[at], constant, scale, norm, __ldg(norms + i), dist);
        const float p = fast_exp2(l - __ldg(log2_z + i));
        store_element(probs + at, p);
        csum += p;
        if constexpr (!DIAG) {
            dsum += p * dist;
        }
    }
    red[0][threadIdx.y][threadIdx.x] = csum;
    red[1][threadIdx.y][threadIdx.x] = dsum;
    __syncthreads();
    if (threadIdx.y == 0) {
        for (int ph = 1; ph < kProbPhases; ph++) {
            csum += red[0][ph][threadIdx.x];
            dsum += red[1][ph][threadIdx.x];
        }
        atomicAdd(count + k, double(csum));
        if constexpr (!DIAG) {
            atomicAdd(dist_sum + k, double(dsum));
        }
    }
}

/**
 * Step 5. Reads S (k_pad x depth fp32); adds its first d columns to sum1
 * and, diagonal, columns [d_pad, d_pad + d) to sum2 (rows of cols doubles).
 * Element-wise: the statistics of one chunk, in stream order after the
 * previous chunk's, so no atomics.
 */
template <bool DIAG>
__global__ void __launch_bounds__(kAddThreads) gemm_add_statistics_kernel(
    int k,
    int d,
    int d_pad,
    int depth,
    int cols,
    const float* __restrict__ stats,
    double* __restrict__ sum1,
    double* __restrict__ sum2) {
    const int64_t total = int64_t(k) * d;
    for (int64_t e = int64_t(blockIdx.x) * kAddThreads + threadIdx.x; e < total;
         e += int64_t(gridDim.x) * kAddThreads) {
        const int64_t j = e / d;
        const int l = int(e - j * d);
        const float* s = stats + j * depth;
        sum1[j * cols + l] += double(s[l]);
        if constexpr (DIAG) {
            sum2[j * cols + l] += double(s[d_pad + l]);
        }
    }
}

cudaError_t check_gemm_model(const EStepModel& m) {
    if (m.d < 1 || m.d > 4096 || m.k < 1 || m.k > (1 << 24) ||
        m.k_pad != estep_padded_components(m.k) ||
        m.depth != estep_depth(m.d, m.diagonal) || !m.component_matrix ||
        !m.center || !m.row_const ||
        (!m.diagonal && (!m.row_scale || !m.row_norm))) {
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

int grid_for(int64_t items, int per_block) {
    return int(std::max<int64_t>(
        1, std::min<int64_t>((items + per_block - 1) / per_block, kMaxBlocks)));
}

} // namespace

int estep_gemm_element_bytes(EStepMath math) {
    return math == EStepMath::BF16 ? 2 : 4;
}

bool estep_gemm_separate_probabilities(EStepMath math) {
    return math == EStepMath::BF16;
}

int64_t estep_gemm_partials(int64_t rows) {
    return (rows + kEStepGemmNormRows - 1) / kEStepGemmNormRows;
}

int64_t estep_gemm_row_bytes(const EStepModel& m) {
    const int64_t e = estep_gemm_element_bytes(m.math);
    const int64_t probs =
        estep_gemm_separate_probabilities(m.math) ? int64_t(m.k_pad) * e : 0;
    // X', |x'|^2, raw, P, log2 Z, and a partial per kEStepGemmNormRows rows
    // (rounded up to a byte per row).
    return int64_t(m.depth) * e + 4 + int64_t(m.k_pad) * 4 + probs + 4 + 1;
}

cudaError_t gmm_estep_gemm_prepare(
    const EStepModel& m,
    int64_t rows,
    const float* x,
    void* points,
    float* norms,
    cudaStream_t stream) {
    cudaError_t err = check_gemm_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (rows < 0 || (rows > 0 && (!x || !points || !norms))) {
        return cudaErrorInvalidValue;
    }
    if (rows == 0) {
        return cudaSuccess;
    }
    const int d_pad = estep_depth(m.d, false);
    const int blocks = grid_for(rows, kEStepGemmNormRows);
    if (m.math == EStepMath::BF16) {
        auto* out = static_cast<__nv_bfloat16*>(points);
        if (m.diagonal) {
            gemm_prepare_kernel<__nv_bfloat16, true>
                <<<blocks, kRowThreads, 0, stream>>>(
                    rows, m.d, d_pad, m.depth, x, m.center, out, norms);
        } else {
            gemm_prepare_kernel<__nv_bfloat16, false>
                <<<blocks, kRowThreads, 0, stream>>>(
                    rows, m.d, d_pad, m.depth, x, m.center, out, norms);
        }
    } else {
        auto* out = static_cast<float*>(points);
        if (m.diagonal) {
            gemm_prepare_kernel<float, true>
                <<<blocks, kRowThreads, 0, stream>>>(
                    rows, m.d, d_pad, m.depth, x, m.center, out, norms);
        } else {
            gemm_prepare_kernel<float, false>
                <<<blocks, kRowThreads, 0, stream>>>(
                    rows, m.d, d_pad, m.depth, x, m.center, out, norms);
        }
    }
    return cudaGetLastError();
}

cudaError_t gmm_estep_gemm_log_norm(
    const EStepModel& m,
    int64_t rows,
    const float* raw,
    const float* norms,
    float* log2_z,
    double* partials,
    double* log_likelihood,
    cudaStream_t stream) {
    cudaError_t err = check_gemm_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    const int64_t blocks = estep_gemm_partials(rows);
    if (rows < 0 || blocks > 0x7fffffff ||
        (rows > 0 &&
         (!raw || !norms || !log2_z || !partials || !log_likelihood))) {
        return cudaErrorInvalidValue;
    }
    if (rows == 0) {
        return cudaSuccess;
    }
    auto* kernel =
        m.diagonal ? gemm_log_norm_kernel<true> : gemm_log_norm_kernel<false>;
    kernel<<<unsigned(blocks), kRowThreads, 0, stream>>>(
        rows,
        m.k_pad,
        raw,
        m.row_const,
        m.row_scale,
        m.row_norm,
        norms,
        log2_z,
        partials);
    err = cudaGetLastError();
    if (err != cudaSuccess) {
        return err;
    }
    return gmm_estep_sum_partials(blocks, partials, log_likelihood, stream);
}

namespace {

/// One launch of gemm_probabilities_kernel<T, DIAG> (arguments checked by
/// the caller).
template <typename T, bool DIAG>
void launch_probabilities(
    int64_t blocks,
    dim3 block,
    cudaStream_t stream,
    int64_t rows,
    const EStepModel& m,
    const float* raw,
    const float* norms,
    const float* log2_z,
    T* probs,
    const EStepAccumulators& acc) {
    gemm_probabilities_kernel<T, DIAG><<<unsigned(blocks), block, 0, stream>>>(
        rows,
        m.k_pad,
        raw,
        m.row_const,
        m.row_scale,
        m.row_norm,
        norms,
        log2_z,
        probs,
        acc.count,
        acc.sum2);
}

} // namespace

cudaError_t gmm_estep_gemm_probabilities(
    const EStepModel& m,
    int64_t rows,
    const float* raw,
    const float* norms,
    const float* log2_z,
    void* probs,
    const EStepAccumulators& acc,
    cudaStream_t stream) {
    cudaError_t err = check_gemm_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    const int64_t tiles = m.k_pad / kProbComponents;
    const int64_t blocks = tiles * ((rows + kProbRows - 1) / kProbRows);
    if (rows < 0 || blocks > 0x7fffffff ||
        (rows > 0 && (!raw || !norms || !log2_z || !probs || !acc.count ||
                      (!m.diagonal && !acc.sum2)))) {
        return cudaErrorInvalidValue;
    }
    if (rows == 0) {
        return cudaSuccess;
    }
    const dim3 block(kProbComponents, kProbPhases);
    if (m.math == EStepMath::BF16) {
        auto* p = static_cast<__nv_bfloat16*>(probs);
        if (m.diagonal) {
            launch_probabilities<__nv_bfloat16, true>(
                blocks, block, stream, rows, m, raw, norms, log2_z, p, acc);
        } else {
            launch_probabilities<__nv_bfloat16, false>(
                blocks, block, stream, rows, m, raw, norms, log2_z, p, acc);
        }
    } else {
        auto* p = static_cast<float*>(probs);
        if (m.diagonal) {
            launch_probabilities<float, true>(
                blocks, block, stream, rows, m, raw, norms, log2_z, p, acc);
        } else {
            launch_probabilities<float, false>(
                blocks, block, stream, rows, m, raw, norms, log2_z, p, acc);
        }
    }
    return cudaGetLastError();
}

cudaError_t gmm_estep_gemm_add_statistics(
    const EStepModel& m,
    const float* stats,
    const EStepAccumulators& acc,
    cudaStream_t stream) {
    cudaError_t err = check_gemm_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (!stats || !acc.sum1 || (m.diagonal && !acc.sum2)) {
        return cudaErrorInvalidValue;
    }
    const int d_pad = estep_depth(m.d, false);
    const int cols = estep_output_columns(m.d);
    const int blocks = grid_for(int64_t(m.k) * m.d, kAddThreads);
    if (m.diagonal) {
        gemm_add_statistics_kernel<true><<<blocks, kAddThreads, 0, stream>>>(
            m.k, m.d, d_pad, m.depth, cols, stats, acc.sum1, acc.sum2);
    } else {
        gemm_add_statistics_kernel<false><<<blocks, kAddThreads, 0, stream>>>(
            m.k, m.d, d_pad, m.depth, cols, stats, acc.sum1, acc.sum2);
    }
    return cudaGetLastError();
}

} // namespace kernels
} // namespace faiss_gmm
