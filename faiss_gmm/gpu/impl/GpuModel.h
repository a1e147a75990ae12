/**
 * Internal (not installed): the mixture in the forms the GPU index's
 * kernels read, on the device: raw means (assignment), means centred on the
 * mixture mean c and their squared norms (coarse GEMMs: centring keeps the
 * fp32 expansion |q|^2 - 2 q.mu + |mu|^2 accurate for data far from the
 * origin), the log-joint constants and inverse variances, and for a
 * diagonal model the [mu / v | -1 / (2 v)] rows of the log-joint GEMM, and
 * the mean variances the hit-model list pruning reads.
 */

#pragma once

#include <vector>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>

namespace faiss_gmm {
namespace gpu {

/** The model's device buffers (valid after upload). */
struct GpuModel {
    DeviceAllocation buffer;
    const float* means = nullptr;         ///< nlist x d, raw
    const float* centred_means = nullptr; ///< nlist x d, mu - c
    const float* centred_norms = nullptr; ///< nlist, |mu - c|^2
    const float* log_const = nullptr;     ///< nlist
    const float* inv_var = nullptr;       ///< nlist or nlist x d
    const float* diag_rhs = nullptr;      ///< nlist x 2d (diagonal)
    const float* diag_norms = nullptr;    ///< nlist (diagonal)
    /// nlist mean per-dimension variances (hit-model pruning)
    const float* mean_variances = nullptr;
    std::vector<float> center; ///< mixture mean c, d (host)
    bool diagonal = false;

    /// Upload `model` (replacing what was there) on ctx's stream and wait.
    void upload(const GaussianMixture& model, const GpuIndexContext& ctx);
    /// Free the buffers.
    void release();
};

} // namespace gpu
} // namespace faiss_gmm
