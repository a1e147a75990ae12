/**
 * Internal (not installed): the lists GpuIndexIVFGMM::add stores a batch of
 * vectors in. The fused top-m kernel (kernels/ivf_assign.h) finds each
 * vector's candidate components on the device; the spill rule of
 * ListAssignment.h (lists_from_top_candidates) turns them into lists, the
 * very rule and code the CPU index uses. The Soar rule and spills wider
 * than the kernel's top-m go through the CPU assign_lists itself.
 */

#pragma once

#include <faiss/IndexFlat.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuModel.h>
#include <kernels/ivf_assign.h>

namespace faiss_gmm {
namespace gpu {

/**
 * The kernel's outputs for nb vectors (top candidates each; with log_joint
 * also each vector's log-normaliser and nearest mean), carved in that order
 * from `buffer`, which is grown as needed (what, owner: as
 * DeviceAllocation::reserve).
 */
kernels::AssignOutput reserve_assign_output(
    DeviceAllocation& buffer,
    idx_t nb,
    int top,
    bool log_joint,
    const char* what,
    const char* owner = kGpuIndexOwner);

/// The kernel's view of gmm's device copy `model`.
kernels::AssignModel
assign_model(const GaussianMixture& gmm, const GpuModel& model);

/// The kernel's temperature under `spill`: spill.temperature for the
/// posterior rule, 1 for the others.
float assign_temperature(const SpillParameters& spill);

/**
 * The candidates per vector that the device kernel finds for this model and
 * rule (top_candidates_needed; *log_joint as it sets it), or 0 where the
 * rule stays on the CPU: SOAR and RAIR (they need the vectors), full
 * covariance (the kernel scores spherical and diagonal models) and more
 * than kernels::kAssignMaxTop candidates. The one CPU-fallback rule of
 * gpu_assign_lists and GpuListAssigner.
 */
int device_candidates(
    const GaussianMixture& gmm, const SpillParameters& spill, bool* log_joint);

/**
 * lists (nb x spill.max_assign, as assign_lists lays them out) of nb
 * vectors, given on the host (xh) and on the device (xd); on the CPU
 * (assign_lists) where device_candidates is 0.
 *
 * @param gmm         the model (host)
 * @param host_means  an exact L2 index over gmm's means (CPU rules)
 * @param model       the model on the device
 * @param workspace   device scratch, grown as needed
 */
void gpu_assign_lists(
    const GpuIndexContext& ctx,
    const GaussianMixture& gmm,
    const faiss::IndexFlatL2& host_means,
    const GpuModel& model,
    const SpillParameters& spill,
    idx_t nb,
    const float* xh,
    const float* xd,
    DeviceAllocation& workspace,
    idx_t* lists);

} // namespace gpu
} // namespace faiss_gmm
