/**
 * Hopper (sm_90a) E-step for bf16 models of logits depth <= 256 (d <= 128
 * spherical and diagonal): the same two passes and the same contract as
 * gmm_estep_log_norm + gmm_estep_statistics on prepared points
 * (gmm_estep.h: centring on c, clamped spherical distances, x'^2 formed in
 * fp32 before rounding, log-likelihood summed in a fixed order), written
 * with TMA, wgmma and warp-specialised ping-pong consumers:
 *   1. log_norm_sm90_kernel (gmm_estep_sm90_log_norm.cuh): log2 Z per point
 *      and per-CTA sums of ln Z, then gmm_estep_sum_partials;
 *   2. statistics_sm90_kernel (gmm_estep_sm90_statistics.cuh): N_k,
 *      sum r x' and the second moments, P fed from registers into the
 *      statistics product.
 * Tile shapes: gmm_estep_sm90_tile.h. The kernels exist only in builds
 * whose CUDA architectures include 90 (compiled for sm_90a); elsewhere
 * estep_sm90_supports() is false and gmm_estep_sm90 returns
 * cudaErrorNotSupported.
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <kernels/gmm_estep.h>

namespace faiss_gmm {
namespace kernels {

/// Whether this build contains the sm_90a kernels.
bool estep_sm90_built();

/**
 * Whether gmm_estep_sm90 runs model m on a device of compute capability
 * cc_major.cc_minor: the kernels are built, the device is 9.0, the model is
 * bf16 with logits depth 32, 64, 96 or 128 (spherical) or 64, 128, 192 or
 * 256 (diagonal).
 */
bool estep_sm90_supports(const EStepModel& m, int cc_major, int cc_minor);

/**
 * Both passes for n points prepared by gmm_estep_prepare_points
 * (prepared: estep_padded_rows(n) x m.depth bf16, norms: as many floats):
 * writes log2_z (estep_padded_rows(n) floats, +inf beyond n), adds
 * sum_i ln Z_i to acc.log_likelihood (through scratch,
 * estep_log_norm_scratch(n) doubles, in a fixed order) and the statistics
 * to acc.count / sum1 / sum2 as gmm_estep_statistics does. num_sms sizes
 * the statistics grid. n == 0 is a no-op. Errors: cudaErrorNotSupported
 * when !estep_sm90_supports for the current device's model class,
 * cudaErrorInvalidValue on bad arguments, launch errors.
 */
cudaError_t gmm_estep_sm90(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
