/**
 * The GMM M-step and the preparation of the E-step's model on the device, so
 * that a whole EM iteration runs there and the host downloads one small
 * summary per iteration. Plain pointers, sizes and streams only: no FAISS
 * headers, no host policy (faiss_gmm/gpu/GpuEmTrainer.cpp drives them).
 *
 * gmm_mstep reads the E-step accumulators (kernels/gmm_estep.h) exactly as
 * the host driver's download does (statistics about the centre c, padded
 * rows) and applies gmm_m_step's arithmetic (faiss_gmm/GmmEM.cpp) in double,
 * with explicitly rounded operations (no fused multiply-adds), so that every
 * per-element value matches the host's; only the order of the sums over
 * dimensions and components differs (tree reductions).
 *
 * gmm_prepare_estep_model writes the EStepModel arrays (component matrix,
 * per-component constants, scales, norms) from a device model and a centre.
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <kernels/gmm_estep.h>

namespace faiss_gmm {
namespace kernels {

/// Threads of the per-component CTAs (M-step and model preparation).
constexpr int kMStepComponentThreads = 128;
/// Threads of the single CTA that reduces over the components.
constexpr int kMStepReduceThreads = 1024;

/// A GMM in device memory (float32, as faiss_gmm::GaussianMixture).
struct DeviceGmm {
    int d = 0;             ///< dimension
    int k = 0;             ///< components
    bool diagonal = false; ///< diagonal (else spherical) covariance
    /// spherical with one variance shared by every component (stored k
    /// times): the M-step pools it over the components
    bool tied = false;
    float* means = nullptr;     ///< k x d
    float* variances = nullptr; ///< k (spherical) or k x d (diagonal)
    float* weights = nullptr;   ///< k
};

/**
 * What the host needs of one M-step (one small copy per iteration). Only
 * meaningful when dead_components == 0 (else the host redoes the M-step,
 * which re-seeds) and total_count > 0.
 */
struct MStepSummary {
    double total_count = 0;    ///< sum_k N_k
    double log_likelihood = 0; ///< sum_i ln Z_i of the E-step (copied)
    float min_weight = 0;      ///< smallest new weight
    float min_variance = 0;    ///< smallest new variance
    /// components with !(N_k >= min_component_count) || !(N_k > 0): the
    /// ones gmm_m_step would re-seed
    int dead_components = 0;
};

/// Doubles of scratch gmm_mstep needs for k components.
int64_t mstep_scratch_doubles(int k);

/**
 * One M-step on the device. Reads acc (filled by the E-step for old and
 * center: count[k_pad], sum1 and diagonal sum2 of
 * estep_output_columns(d) columns per component, spherical sum2 one per
 * component, the log-likelihood) and old; writes the new means, variances
 * and weights into out (separate buffers: old survives), per-component
 * partial results into scratch (mstep_scratch_doubles(k) doubles) and
 * *summary (device memory). Components that gmm_m_step would re-seed get
 * weight 0 and keep out's previous means and variances (tied: the pooled
 * variance, as gmm_m_step writes it to every component).
 *
 * @param variance_floor      every new variance is >= this
 * @param min_component_count a component with N_k below it is dead
 */
cudaError_t gmm_mstep(
    const EStepAccumulators& acc,
    const DeviceGmm& old,
    const float* center,
    double variance_floor,
    double min_component_count,
    const DeviceGmm& out,
    double* scratch,
    MStepSummary* summary,
    cudaStream_t stream);

/**
 * Writes the E-step's model arrays for model about center (d floats):
 * component_matrix (estep_padded_components(k) x estep_depth(d, diagonal),
 * float for FP32, float rounded to tf32 (nearest, ties away) for TF32,
 * __nv_bfloat16 (nearest even) for BF16): spherical rows mu - c (float
 * subtraction), diagonal rows log2(e) [ (mu - c) / v | -1 / (2 v) ] with the
 * second half at column round_up(d, 32), zeros elsewhere; row_const in log2
 * units (log w - d/2 ln(2 pi v) for spherical, log w - sum_l (ln(2 pi v_l)
 * + (mu_l - c_l)^2 / v_l) / 2 for diagonal, times log2(e)), row_scale =
 * log2(e) / (2 v) and row_norm = |mu - c|^2 (spherical only; may be null for
 * diagonal). Padding components j >= k: zero rows, row_const = -inf.
 */
cudaError_t gmm_prepare_estep_model(
    const DeviceGmm& model,
    const float* center,
    EStepMath math,
    void* component_matrix,
    float* row_const,
    float* row_scale,
    float* row_norm,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
