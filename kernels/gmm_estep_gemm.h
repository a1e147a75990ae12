/**
 * The GEMM-based E-step for deep models: the kernels around two cuBLAS
 * products (the host driver, faiss_gmm/gpu/GpuEmTrainer.cpp, calls cuBLAS).
 * Plain pointers, sizes and streams only, like gmm_estep.h, whose model
 * (EStepModel), logits and accumulators (EStepAccumulators) it shares.
 *
 * Per chunk of at most max_rows points (the chunk's buffers are bounded, so
 * the extra memory is independent of N; the N x K matrix is never stored
 * whole):
 *   1. gmm_estep_gemm_prepare: X' = [x' | x'^2 (diagonal)] rows of
 *      model.depth in the GEMM input type (x' = x - c, squares formed in
 *      fp32, zero padding columns) and |x'|^2 in fp32;
 *   2. cuBLAS: raw = X' . M^T (rows x k_pad, fp32), M = component_matrix;
 *   3. gmm_estep_gemm_log_norm: log2 Z per row (log-sum-exp of the logits
 *      of gmm_estep.h, formed from raw), sum ln Z added to
 *      acc.log_likelihood in a fixed order;
 *      gmm_estep_gemm_probabilities: P = exp2(l - log2 Z) in the GEMM input
 *      type, N_k and (spherical) sum_i p_ik |x'_i - mu'_k|^2 (the clamped
 *      distance) added to acc.count / acc.sum2;
 *   4. cuBLAS: S = P^T . X' (k_pad x depth, fp32);
 *   5. gmm_estep_gemm_add_statistics: S added into acc.sum1 (and diagonal
 *      acc.sum2) in the fused kernels' layout (estep_output_columns(d)
 *      columns per component).
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <kernels/gmm_estep.h>

namespace faiss_gmm {
namespace kernels {

/// Chunk rows of the GEMM path are a multiple of this.
constexpr int kEStepGemmRowAlign = 64;
/// Rows per CTA of gmm_estep_gemm_log_norm (one warp per row).
constexpr int kEStepGemmNormRows = 8;

/// Bytes of one element of X' and P: 2 (bf16) for BF16, 4 (float) else.
int estep_gemm_element_bytes(EStepMath math);
/// Whether P has its own buffer (BF16); else it overwrites raw in place.
bool estep_gemm_separate_probabilities(EStepMath math);
/// Device bytes per chunk row of the GEMM path's chunk buffers (X', |x'|^2,
/// raw, P when separate, log2 Z, log-likelihood partials).
int64_t estep_gemm_row_bytes(const EStepModel& model);
/// Doubles of log-likelihood partials for a chunk of rows points.
int64_t estep_gemm_partials(int64_t rows);

/**
 * Step 1. points = rows x model.depth, row-major, __nv_bfloat16 (BF16) or
 * float (TF32, FP32): [x' | x'^2] with x' = x - c (x rows x model.d fp32),
 * x'^2 formed in fp32 before rounding, columns beyond d zero;
 * norms[i] = |x'_i|^2 in fp32 (from the unrounded x').
 */
cudaError_t gmm_estep_gemm_prepare(
    const EStepModel& model,
    int64_t rows,
    const float* x,
    void* points,
    float* norms,
    cudaStream_t stream);

/**
 * Step 3a. raw = rows x k_pad fp32 (row-major, raw_ik = X'_i . M_k).
 * Writes log2_z[i] = log2 sum_k exp2(l_ik) for i < rows, one sum of ln Z
 * per CTA into partials (estep_gemm_partials(rows) doubles), then adds
 * their sum, in a fixed order, to *log_likelihood.
 */
cudaError_t gmm_estep_gemm_log_norm(
    const EStepModel& model,
    int64_t rows,
    const float* raw,
    const float* norms,
    float* log2_z,
    double* partials,
    double* log_likelihood,
    cudaStream_t stream);

/**
 * Step 3b. From raw and log2_z: probs (rows x k_pad row-major, the GEMM
 * input type; for TF32 / FP32 it may be raw itself: each element is read
 * before it is overwritten by the same thread) = exp2(l - log2 Z); adds
 * N_k to acc.count and, spherical, sum_i p_ik * clamped distance to
 * acc.sum2 (fp32 over a CTA's rows, one double atomic per component and
 * CTA).
 */
cudaError_t gmm_estep_gemm_probabilities(
    const EStepModel& model,
    int64_t rows,
    const float* raw,
    const float* norms,
    const float* log2_z,
    void* probs,
    const EStepAccumulators& acc,
    cudaStream_t stream);

/**
 * Step 5. stats = k_pad x model.depth fp32 (row-major, S = P^T X'):
 * acc.sum1[k][l] += S[k][l] and, diagonal, acc.sum2[k][l] +=
 * S[k][d_pad + l] for l < d (d_pad = round_up(d, 32)).
 */
cudaError_t gmm_estep_gemm_add_statistics(
    const EStepModel& model,
    const float* stats,
    const EStepAccumulators& acc,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
