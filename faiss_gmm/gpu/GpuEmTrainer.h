/**
 * GMM training on one GPU with the fused E-step kernels of kernels/.
 * (Interface fixed here; the fused E-step work fills in the rest.)
 */

#pragma once

#include <faiss_gmm/GaussianMixture.h>

namespace faiss_gmm {
namespace gpu {

/// Arithmetic of the E-step's matrix products (accumulation is fp32).
enum class EStepPrecision : int {
    FP32 = 0, ///< reference
    TF32 = 1, ///< tensor cores, 10-bit mantissa inputs
    BF16 = 2, ///< tensor cores, 8-bit mantissa inputs
};

/** Where and how the GPU trainer runs. */
struct GpuEmConfig {
    int device = 0; ///< CUDA device ordinal
    EStepPrecision precision = EStepPrecision::FP32;
};

/// True when a CUDA device with this ordinal is usable (never throws).
bool gpu_is_available(int device = 0);

/**
 * Same contract as GaussianMixture::train (same parameters, initialisation,
 * M-step, verbose lines, iteration_stats), with the E-step on the GPU. x is
 * host memory.
 */
void train_gmm_gpu(
        GaussianMixture* model,
        idx_t n,
        const float* x,
        const GmmParameters& params,
        const GpuEmConfig& config = GpuEmConfig());

} // namespace gpu
} // namespace faiss_gmm
