/**
 * List assignment of the CPU index's add() on a GPU: a ListAssigner
 * (ListAssignment.h) that IndexIVFGMM::set_assigner installs, so that
 * add_with_ids of N host vectors finds each vector's candidate components
 * with the fused top-m kernel (kernels/ivf_assign.h) while the CPU's
 * OpenMP threads encode and store the previous batch. The spill rule that
 * turns candidates into lists is the CPU's own (lists_from_top_candidates),
 * so the lists are assign_lists's up to floating-point ties.
 *
 *     faiss_gmm::IndexIVFGMM& index = ...; // trained, any code
 *     index.set_assigner(
 *             std::make_shared<faiss_gmm::gpu::GpuListAssigner>());
 *     index.add(n, x); // or gpu::add_with_gpu_assignment(index, n, x, ids)
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

struct IndexIVFGMM;

namespace gpu {

/** Where and in what pieces GpuListAssigner works. */
struct GpuListAssignerConfig {
    /// CUDA device ordinal
    int device = 0;
    /// vectors per assign() call of add_with_ids: the batch that the CPU
    /// encodes while the GPU assigns the next (the index holds two batches
    /// of lists: 2 x batch_size x max_assign ids)
    idx_t batch_size = idx_t(1) << 20;
    /// rows per host-to-device copy and kernel launch inside a batch: the
    /// vectors go through two pinned staging buffers of this many rows, the
    /// copy of one overlapping the kernel of the other
    idx_t chunk_rows = idx_t(1) << 18;

    /// Throws naming the first out-of-range field.
    void check() const;
};

/** What a GpuListAssigner has done so far. */
struct GpuListAssignerStats {
    /// vectors whose candidates the GPU found
    int64_t gpu_vectors = 0;
    /// vectors assigned by the CPU rule instead (Soar and Rair rules, more
    /// than kernels::kAssignMaxTop candidates, full covariances)
    int64_t cpu_vectors = 0;
    /// wall time inside assign(), seconds
    double seconds = 0;
    /// device memory held now (model, staging, outputs), bytes
    size_t device_bytes = 0;
    /// pinned host memory held now, bytes
    size_t pinned_bytes = 0;
};

/**
 * ListAssigner on one CUDA device. Each assign() streams the vectors from
 * host memory in chunks of config.chunk_rows rows through two pinned
 * buffers (copies on one stream, the top-m kernel on another), downloads
 * the candidates (ids, scores, log-normaliser, nearest mean) and applies
 * the spill rule on the host. The model is uploaded on first use and again
 * whenever the index's model changes. Rules the kernel cannot serve (Soar,
 * Rair: they need the vectors; more than kernels::kAssignMaxTop candidates;
 * full covariances) fall back to assign_lists on the CPU. Calls are
 * serialised (one assigner may serve several indexes).
 */
class GpuListAssigner : public ListAssigner {
   public:
    /// Throws when config.device is not a usable CUDA device.
    explicit GpuListAssigner(
        const GpuListAssignerConfig& config = GpuListAssignerConfig());
    ~GpuListAssigner() override;
    GpuListAssigner(const GpuListAssigner&) = delete;
    GpuListAssigner& operator=(const GpuListAssigner&) = delete;

    void assign(
        const GaussianMixture& gmm,
        const faiss::Index& quantizer,
        const SpillParameters& spill,
        idx_t n,
        const float* x,
        idx_t* lists) override;
    idx_t batch_size() const override;
    /// whether assign() runs on the device for this model and rule (the
    /// CPU then only stages copies and applies the rule); false where it
    /// falls back to the CPU rule (SOAR, RAIR, full covariance, more than
    /// kernels::kAssignMaxTop candidates)
    bool overlaps_encoding(
        const GaussianMixture& gmm,
        const SpillParameters& spill) const override;
    /// "GPU <device>"
    std::string name() const override;

    /// Counters since construction (device_bytes, pinned_bytes: now).
    GpuListAssignerStats stats() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/**
 * index.add_with_ids(n, x, xids) with a GpuListAssigner on config.device
 * installed for the call (the index's own assigner is restored after it,
 * also when it throws).
 */
void add_with_gpu_assignment(
    IndexIVFGMM& index,
    idx_t n,
    const float* x,
    const idx_t* xids,
    const GpuListAssignerConfig& config = GpuListAssignerConfig());

} // namespace gpu
} // namespace faiss_gmm
