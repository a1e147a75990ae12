/**
 * Fused GMM E-step kernels (bf16, spherical and diagonal covariance, logits
 * depth <= 256: estep_fused_supports) and their launchers; other models run
 * on the cuBLAS-based path of gmm_estep_gemm.h with the same contract. Plain
 * pointers, sizes and streams only: no FAISS headers, no host policy
 * (allocation, chunking and error messages are the host driver's,
 * faiss_gmm/gpu/GpuEmTrainer.cpp).
 *
 * The E-step never stores the N x K responsibility matrix. It runs as two
 * passes over the points:
 *   1. gmm_estep_log_norm: per point log2 Z_i = log2 sum_k exp(l_ik), by an
 *      online log-sum-exp over tiles of components; writes N floats and adds
 *      sum_i ln Z_i (the log-likelihood) to one double, deterministically.
 *   2. gmm_estep_statistics: recomputes the logits tile by tile, forms
 *      r_ik = exp(l_ik - ln Z_i) in registers and accumulates
 *      N_k = sum_i r_ik, S1_k = sum_i r_ik x'_i and either
 *      S2_k = sum_i r_ik x'_i^2 (diagonal) or sum_i r_ik |x'_i - mu'_k|^2
 *      (spherical), with one double atomic per statistic and CTA.
 * x' = x - c is the point minus a centre c chosen by the caller (the mixture
 * mean): it shrinks the magnitudes entering the low-precision products.
 *
 * Logits, in log2 units (l2 = l * log2(e)):
 *   spherical: l2_ik = row_const_k - row_scale_k * max(0, |x'_i|^2
 *              - 2 x'_i . mu'_k + row_norm_k)
 *   diagonal:  l2_ik = row_const_k + [x'_i | x'_i^2] . component_matrix_k
 * where component_matrix_k = mu'_k (spherical) or
 * log2(e) [mu'_k / v_k | -1 / (2 v_k)] (diagonal), prepared on the device by
 * gmm_prepare_estep_model (gmm_mstep.h).
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace faiss_gmm {
namespace kernels {

/// Arithmetic of the two matrix products (accumulation is always fp32).
enum class EStepMath : int {
    FP32 = 0, ///< CUDA-core FMA (cuBLAS SGEMM), the reference
    TF32 = 1, ///< tensor cores (cuBLAS TF32 GEMM), 10-bit mantissa inputs
    BF16 = 2, ///< tensor cores (fused mma.sync / wgmma, or cuBLAS), 8-bit
};

/// Components per CTA tile (rows of the component matrix are padded to it).
constexpr int kEStepComponentTile = 64;
/// Points per CTA tile.
constexpr int kEStepPointTile = 64;
/// Depth (columns) of one staged chunk of the logits product; the logits
/// depth is padded to it: d_pad = round_up(d, 32), depth = d_pad or 2 d_pad.
constexpr int kEStepDepthChunk = 32;
/// Output dimensions per CTA of the statistics pass (statistics arrays have
/// round_up(d, kEStepOutputDims) columns).
constexpr int kEStepOutputDims = 128;

/// The model as the kernels read it (device pointers, padded sizes).
struct EStepModel {
    int d = 0;             ///< dimension of the points
    int k = 0;             ///< components
    bool diagonal = false; ///< diagonal (else spherical) covariance
    EStepMath math = EStepMath::FP32;
    /// round_up(k, kEStepComponentTile) rows of component_matrix and of the
    /// per-component arrays (padding rows: row_const = -inf, zeros)
    int k_pad = 0;
    /// columns of component_matrix: round_up(d, 32) (spherical) or twice it
    int depth = 0;
    /// k_pad x depth, row-major, float (FP32, TF32) or __nv_bfloat16 (BF16)
    const void* component_matrix = nullptr;
    const float* center = nullptr;    ///< d floats, c
    const float* row_const = nullptr; ///< k_pad floats
    const float* row_scale = nullptr; ///< k_pad floats (spherical only)
    const float* row_norm = nullptr;  ///< k_pad floats (spherical only)
};

/// Accumulators of the statistics pass (device, zeroed by the caller, summed
/// over every call).
struct EStepAccumulators {
    double* count = nullptr;          ///< k_pad
    double* sum1 = nullptr;           ///< k_pad x round_up(d, kEStepOutputDims)
    double* sum2 = nullptr;           ///< diagonal: like sum1; spherical: k_pad
    double* log_likelihood = nullptr; ///< 1 double, sum_i ln Z_i
};

/// Size of the component matrix padding: round_up(k, kEStepComponentTile).
int estep_padded_components(int k);
/// Columns of the component matrix for (d, diagonal).
int estep_depth(int d, bool diagonal);
/// Columns of sum1 (and diagonal sum2): round_up(d, kEStepOutputDims).
int estep_output_columns(int d);
/// Doubles of scratch gmm_estep_log_norm needs for n points.
int64_t estep_log_norm_scratch(int64_t n);
/**
 * *total += sum of partials[0 .. count), added in a fixed order by one CTA
 * (deterministic log-likelihood whatever the grid that wrote the partials).
 * Shared by both E-step paths.
 */
cudaError_t gmm_estep_sum_partials(
    int64_t count, const double* partials, double* total, cudaStream_t stream);
/// Rows of the log2 Z buffer and of prepared points for n points:
/// round_up(n, kEStepPointTile).
int64_t estep_padded_rows(int64_t n);
/// Whether the fused kernels take this model: bf16 math and logits depth
/// <= 256 (d <= 128 diagonal, d <= 256 spherical).
bool estep_fused_supports(const EStepModel& model);

/**
 * Converts n points once per E-step into the form both passes stage
 * directly (models that estep_fused_supports):
 * prepared = estep_padded_rows(n) x model.depth bf16 rows [x' | x'^2]
 * (x' = x - c, squares formed in fp32, zero rows beyond n) and
 * norms = |x'_i|^2 in fp32 (estep_padded_rows(n) floats, 0 beyond n).
 */
cudaError_t gmm_estep_prepare_points(
    const EStepModel& model,
    int64_t n,
    const float* x,
    void* prepared,
    float* norms,
    cudaStream_t stream);

/**
 * Pass 1: log2_z[i] = log2 sum_k exp(l_ik) for n points (prepared / norms:
 * gmm_estep_prepare_points's output for them), and acc.log_likelihood +=
 * sum_i ln Z_i (summed in a fixed order through scratch,
 * estep_log_norm_scratch(n) doubles). log2_z has estep_padded_rows(n) floats
 * (+inf beyond n). cudaErrorInvalidValue for a model that
 * estep_fused_supports refuses. n == 0 is a no-op.
 */
cudaError_t gmm_estep_log_norm(
    const EStepModel& model,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    const EStepAccumulators& acc,
    cudaStream_t stream);

/**
 * Pass 2: adds the statistics of the n prepared points (log2_z from pass 1)
 * to acc; prepared / norms as in gmm_estep_log_norm. num_sms sizes the grid
 * (slabs of points so that the grid fills the device).
 */
cudaError_t gmm_estep_statistics(
    const EStepModel& model,
    int64_t n,
    const void* prepared,
    const float* norms,
    const float* log2_z,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream);

/// dst[i] = bf16(src[i]) (round to nearest even), n values on the device.
cudaError_t
convert_to_bf16(int64_t n, const float* src, void* dst, cudaStream_t stream);

/// dst[i] = src[rows[i]] (rows of d floats), m rows, all on the device.
cudaError_t gather_rows(
    int64_t m,
    const int64_t* rows,
    int d,
    const float* src,
    float* dst,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
