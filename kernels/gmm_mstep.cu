/**
 * Device M-step and E-step model preparation (kernels/gmm_mstep.h).
 *
 * Every double operation that the host's formulas contain is written with an
 * explicitly rounded intrinsic (__dadd_rn, __dmul_rn, ...): nvcc would
 * otherwise fuse multiply-adds, which the host code (x86-64 without FMA)
 * does not, and the per-element results would differ in the last bits.
 */

#include <kernels/gmm_mstep.h>

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace faiss_gmm {
namespace kernels {

namespace {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Pi = 1.8378770664093454836; // ln(2 pi)

constexpr int kWarpSize = 32;

/// Block-wide reduction of v by op (identity: the neutral value), result
/// broadcast to every thread. Every thread of the block must call it;
/// blockDim.x is a multiple of 32 (at most 1024). smem: 32 values.
template <class T, class Op>
__device__ T block_reduce(T v, T identity, Op op, T* smem) {
    for (int o = kWarpSize / 2; o > 0; o >>= 1) {
        v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    }
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int warps = blockDim.x / kWarpSize;
    __syncthreads(); // smem may still be read by a previous reduction
    if (lane == 0) {
        smem[warp] = v;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? smem[lane] : identity;
        for (int o = kWarpSize / 2; o > 0; o >>= 1) {
            v = op(v, __shfl_down_sync(0xffffffffu, v, o));
        }
        if (lane == 0) {
            smem[0] = v;
        }
    }
    __syncthreads();
    return smem[0];
}

struct SumOp {
    template <class T>
    __device__ T operator()(T a, T b) const {
        return a + b;
    }
};

struct MinOp {
    __device__ float operator()(float a, float b) const {
        return fminf(a, b);
    }
};

/// gmm_m_step's test for a component it keeps (false for NaN counts).
__device__ __forceinline__ bool is_alive(double nk, double min_count) {
    return nk >= min_count && nk > 0;
}

/**
 * One CTA per component j < k: the new mean, the new variance(s) about it
 * (floored) and scratch[j]: the component's smallest new variance, or (tied)
 * its pooled-variance term sum r |x - mu_new|^2 = S2 - N |shift|^2 (the
 * variance is written by mstep_reduce_kernel). A dead component writes
 * nothing. Statistics are converted from the centre to the old mean as
 * GpuEStep::download does.
 */
template <bool DIAG>
__global__ void __launch_bounds__(kMStepComponentThreads)
    mstep_component_kernel(
        int d,
        int cols,
        const double* __restrict__ count,
        const double* __restrict__ sum1,
        const double* __restrict__ sum2,
        const float* __restrict__ old_means,
        const float* __restrict__ center,
        double floor,
        double min_count,
        float* __restrict__ new_means,
        bool tied,
        float* __restrict__ new_variances,
        double* __restrict__ scratch) {
    __shared__ double sum_smem[kWarpSize];
    __shared__ float min_smem[kWarpSize];
    const int j = blockIdx.x;
    const double nk = count[j];
    if (!is_alive(nk, min_count)) { // uniform over the block
        return;
    }
    const double* s1 = sum1 + size_t(j) * cols;
    const float* mu = old_means + size_t(j) * d;
    float* mu_out = new_means + size_t(j) * d;
    double shift_sq = 0;
    float var_min = INFINITY;
    for (int l = threadIdx.x; l < d; l += blockDim.x) {
        const double c = center[l];
        const double mu_old = mu[l];
        // sum_x = S1 + N c; mu_new = sum_x / N
        const double mu_new = __ddiv_rn(__dadd_rn(s1[l], __dmul_rn(nk, c)), nk);
        const double shift = __dsub_rn(mu_new, mu_old);
        if (DIAG) {
            // About the old mean: S2 - 2 m' S1 + N m'^2, m' = mu_old - c,
            // clamped at 0, then about the new one: - N shift^2, over N.
            const double mc = __dsub_rn(mu_old, c);
            const double s2 = sum2[size_t(j) * cols + l];
            double sq = __dadd_rn(
                __dsub_rn(s2, __dmul_rn(__dmul_rn(2.0, mc), s1[l])),
                __dmul_rn(__dmul_rn(nk, mc), mc));
            sq = sq < 0.0 ? 0.0 : sq;
            const double v = __ddiv_rn(
                __dsub_rn(sq, __dmul_rn(__dmul_rn(nk, shift), shift)), nk);
            const float var = __double2float_rn(v >= floor ? v : floor);
            new_variances[size_t(j) * d + l] = var;
            var_min = fminf(var_min, var);
        } else {
            shift_sq = __dadd_rn(shift_sq, __dmul_rn(shift, shift));
        }
        mu_out[l] = __double2float_rn(mu_new);
    }
    if (DIAG) {
        var_min = block_reduce(var_min, float(INFINITY), MinOp(), min_smem);
        if (threadIdx.x == 0) {
            scratch[j] = var_min;
        }
    } else {
        shift_sq = block_reduce(shift_sq, 0.0, SumOp(), sum_smem);
        if (threadIdx.x == 0) {
            // sum r |x - mu_old|^2 - N |shift|^2 (over N d, or pooled)
            const double sq = __dsub_rn(sum2[j], __dmul_rn(nk, shift_sq));
            if (tied) {
                scratch[j] = sq;
            } else {
                const double v = __ddiv_rn(sq, __dmul_rn(nk, double(d)));
                const float var = __double2float_rn(v >= floor ? v : floor);
                new_variances[j] = var;
                scratch[j] = var;
            }
        }
    }
}

/**
 * One CTA over all components: total responsibility, weights
 * (N_k / total, normalised by their sum as gmm_m_step does), the tied
 * variance (pooled over the live components, written to every component),
 * dead count, minimum weight and variance, and the summary. Runs after
 * mstep_component_kernel (reads its scratch).
 */
__global__ void __launch_bounds__(kMStepReduceThreads) mstep_reduce_kernel(
    int k,
    int d,
    bool tied,
    const double* __restrict__ count,
    const double* __restrict__ log_likelihood,
    double floor,
    double min_count,
    const double* __restrict__ scratch,
    float* __restrict__ weights,
    float* __restrict__ variances,
    MStepSummary* __restrict__ summary) {
    __shared__ double sum_smem[kWarpSize];
    __shared__ float min_smem[kWarpSize];
    __shared__ int count_smem[kWarpSize];
    double total = 0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        total = __dadd_rn(total, count[j]);
    }
    total = block_reduce(total, 0.0, SumOp(), sum_smem);
    double weight_sum = 0, pooled_sq = 0, pooled_count = 0;
    int dead = 0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const double nk = count[j];
        if (is_alive(nk, min_count)) {
            weight_sum = __dadd_rn(weight_sum, __ddiv_rn(nk, total));
            pooled_sq = __dadd_rn(pooled_sq, tied ? scratch[j] : 0.0);
            pooled_count = __dadd_rn(pooled_count, nk);
        } else {
            dead++;
        }
    }
    weight_sum = block_reduce(weight_sum, 0.0, SumOp(), sum_smem);
    dead = block_reduce(dead, 0, SumOp(), count_smem);
    float tied_var = 0.0f;
    if (tied) {
        pooled_sq = block_reduce(pooled_sq, 0.0, SumOp(), sum_smem);
        pooled_count = block_reduce(pooled_count, 0.0, SumOp(), sum_smem);
        const double v =
            __ddiv_rn(pooled_sq, __dmul_rn(pooled_count, double(d)));
        tied_var = __double2float_rn(v >= floor ? v : floor);
    }
    float weight_min = INFINITY, var_min = INFINITY;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const double nk = count[j];
        const bool alive = is_alive(nk, min_count);
        const float w =
            alive
                ? __double2float_rn(__ddiv_rn(__ddiv_rn(nk, total), weight_sum))
                : 0.0f;
        weights[j] = w;
        weight_min = fminf(weight_min, w);
        if (tied) {
            variances[j] = tied_var;
            var_min = tied_var;
        } else if (alive) {
            var_min = fminf(var_min, float(scratch[j]));
        }
    }
    weight_min = block_reduce(weight_min, float(INFINITY), MinOp(), min_smem);
    var_min = block_reduce(var_min, float(INFINITY), MinOp(), min_smem);
    if (threadIdx.x == 0) {
        MStepSummary s;
        s.total_count = total;
        s.log_likelihood = *log_likelihood;
        s.min_weight = weight_min;
        s.min_variance = var_min;
        s.dead_components = dead;
        *summary = s;
    }
}

/// Nearest tf32 value, ties away from zero (as the host's round_to_tf32
/// did and the E-step's cvt.rna does); non-finite values unchanged.
__device__ __forceinline__ float round_to_tf32(float v) {
    if (!isfinite(v)) {
        return v;
    }
    const uint32_t bits = (__float_as_uint(v) + 0x1000u) & 0xffffe000u;
    return __uint_as_float(bits);
}

template <int MATH>
struct MatrixElement {
    using T = float;
};
template <>
struct MatrixElement<int(EStepMath::BF16)> {
    using T = __nv_bfloat16;
};

template <int MATH>
__device__ __forceinline__ void
store_element(typename MatrixElement<MATH>::T* dst, float v) {
    if constexpr (MATH == int(EStepMath::BF16)) {
        *dst = __float2bfloat16_rn(v);
    } else if constexpr (MATH == int(EStepMath::TF32)) {
        *dst = round_to_tf32(v);
    } else {
        *dst = v;
    }
}

/**
 * One CTA per padded component row j < k_pad: the row of the component
 * matrix (every column written, padding zeros) and the row's constant,
 * scale and norm (padding rows: zeros, constant -inf, so that they never
 * take responsibility).
 */
template <int MATH, bool DIAG>
__global__ void __launch_bounds__(kMStepComponentThreads) prepare_model_kernel(
    int d,
    int k,
    int depth,
    int d_pad,
    const float* __restrict__ means,
    const float* __restrict__ variances,
    const float* __restrict__ weights,
    const float* __restrict__ center,
    typename MatrixElement<MATH>::T* __restrict__ matrix,
    float* __restrict__ row_const,
    float* __restrict__ row_scale,
    float* __restrict__ row_norm) {
    __shared__ double sum_smem[kWarpSize];
    const int j = blockIdx.x;
    typename MatrixElement<MATH>::T* row = matrix + size_t(j) * depth;
    if (j >= k) { // uniform over the block
        for (int l = threadIdx.x; l < depth; l += blockDim.x) {
            store_element<MATH>(row + l, 0.0f);
        }
        if (threadIdx.x == 0) {
            row_const[j] = -INFINITY;
            if (!DIAG) {
                row_scale[j] = 0.0f;
                row_norm[j] = 0.0f;
            }
        }
        return;
    }
    const float* mu = means + size_t(j) * d;
    const double log_w = log(double(weights[j]));
    if (!DIAG) {
        double norm = 0;
        for (int l = threadIdx.x; l < depth; l += blockDim.x) {
            const float m = l < d ? __fsub_rn(mu[l], center[l]) : 0.0f;
            store_element<MATH>(row + l, m);
            norm = __dadd_rn(norm, __dmul_rn(double(m), double(m)));
        }
        norm = block_reduce(norm, 0.0, SumOp(), sum_smem);
        if (threadIdx.x == 0) {
            const double v = variances[j];
            row_norm[j] = __double2float_rn(norm);
            row_const[j] = __double2float_rn(__dmul_rn(
                kLog2e,
                __dsub_rn(
                    log_w,
                    __dmul_rn(
                        __dmul_rn(0.5, double(d)),
                        __dadd_rn(kLn2Pi, log(v))))));
            row_scale[j] = __double2float_rn(__ddiv_rn(kLog2e * 0.5, v));
        }
    } else {
        const float* var = variances + size_t(j) * d;
        double terms = 0; // sum_l (ln(2 pi v) + m^2 / v) / 2
        for (int l = threadIdx.x; l < d_pad; l += blockDim.x) {
            float a = 0.0f, b = 0.0f;
            if (l < d) {
                const double v = var[l];
                const double m = __dsub_rn(double(mu[l]), double(center[l]));
                a = __double2float_rn(__ddiv_rn(__dmul_rn(kLog2e, m), v));
                b = __double2float_rn(__ddiv_rn(-kLog2e * 0.5, v));
                terms = __dadd_rn(
                    terms,
                    __dadd_rn(
                        __dmul_rn(0.5, __dadd_rn(kLn2Pi, log(v))),
                        __ddiv_rn(__dmul_rn(__dmul_rn(0.5, m), m), v)));
            }
            store_element<MATH>(row + l, a);
            store_element<MATH>(row + d_pad + l, b);
        }
        terms = block_reduce(terms, 0.0, SumOp(), sum_smem);
        if (threadIdx.x == 0) {
            row_const[j] =
                __double2float_rn(__dmul_rn(kLog2e, __dsub_rn(log_w, terms)));
        }
    }
}

bool valid_model(const DeviceGmm& m) {
    return m.d >= 1 && m.d <= 4096 && m.k >= 1 && m.means && m.variances &&
           m.weights;
}

template <int MATH>
cudaError_t launch_prepare(
    const DeviceGmm& m,
    const float* center,
    void* matrix,
    float* row_const,
    float* row_scale,
    float* row_norm,
    cudaStream_t stream) {
    const int kp = estep_padded_components(m.k);
    const int depth = estep_depth(m.d, m.diagonal);
    const int d_pad = estep_depth(m.d, false);
    auto* out = static_cast<typename MatrixElement<MATH>::T*>(matrix);
    auto* kernel = m.diagonal ? prepare_model_kernel<MATH, true>
                              : prepare_model_kernel<MATH, false>;
    kernel<<<unsigned(kp), kMStepComponentThreads, 0, stream>>>(
        m.d,
        m.k,
        depth,
        d_pad,
        m.means,
        m.variances,
        m.weights,
        center,
        out,
        row_const,
        row_scale,
        row_norm);
    return cudaGetLastError();
}

} // namespace

int64_t mstep_scratch_doubles(int k) {
    return k < 1 ? 0 : int64_t(k);
}

cudaError_t gmm_mstep(
    const EStepAccumulators& acc,
    const DeviceGmm& old,
    const float* center,
    double variance_floor,
    double min_component_count,
    const DeviceGmm& out,
    double* scratch,
    MStepSummary* summary,
    cudaStream_t stream) {
    if (!valid_model(old) || !valid_model(out) || out.d != old.d ||
        out.k != old.k || out.diagonal != old.diagonal ||
        out.tied != old.tied || (old.tied && old.diagonal) || !center ||
        !scratch || !summary || !acc.count || !acc.sum1 || !acc.sum2 ||
        !acc.log_likelihood) {
        return cudaErrorInvalidValue;
    }
    const int cols = estep_output_columns(old.d);
    auto* component_kernel = old.diagonal ? mstep_component_kernel<true>
                                          : mstep_component_kernel<false>;
    component_kernel<<<unsigned(old.k), kMStepComponentThreads, 0, stream>>>(
        old.d,
        cols,
        acc.count,
        acc.sum1,
        acc.sum2,
        old.means,
        center,
        variance_floor,
        min_component_count,
        out.means,
        old.tied,
        out.variances,
        scratch);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        return err;
    }
    mstep_reduce_kernel<<<1, kMStepReduceThreads, 0, stream>>>(
        old.k,
        old.d,
        old.tied,
        acc.count,
        acc.log_likelihood,
        variance_floor,
        min_component_count,
        scratch,
        out.weights,
        out.variances,
        summary);
    return cudaGetLastError();
}

cudaError_t gmm_prepare_estep_model(
    const DeviceGmm& model,
    const float* center,
    EStepMath math,
    void* component_matrix,
    float* row_const,
    float* row_scale,
    float* row_norm,
    cudaStream_t stream) {
    if (!valid_model(model) || !center || !component_matrix || !row_const ||
        (!model.diagonal && (!row_scale || !row_norm))) {
        return cudaErrorInvalidValue;
    }
    switch (math) {
    case EStepMath::FP32:
        return launch_prepare<int(EStepMath::FP32)>(
            model,
            center,
            component_matrix,
            row_const,
            row_scale,
            row_norm,
            stream);
    case EStepMath::TF32:
        return launch_prepare<int(EStepMath::TF32)>(
            model,
            center,
            component_matrix,
            row_const,
            row_scale,
            row_norm,
            stream);
    case EStepMath::BF16:
        return launch_prepare<int(EStepMath::BF16)>(
            model,
            center,
            component_matrix,
            row_const,
            row_scale,
            row_norm,
            stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace kernels
} // namespace faiss_gmm
