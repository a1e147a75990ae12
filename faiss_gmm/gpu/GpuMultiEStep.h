/**
 * GMM training over several GPUs of one host. Each device holds (or
 * streams) a contiguous shard of the training rows and runs the fused
 * E-step of GpuEStep on it; the per-device statistics are summed on the
 * devices by an NCCL all-reduce (ncclDouble) every iteration and
 * downloaded once. Initialisation, M-step and every other step are the
 * shared EM driver's (GmmEM.h), so the result is the one-GPU trainer's up
 * to the summation order of the statistics.
 *
 * NCCL comes with the CUDA toolkit; CMake defines FAISS_GMM_WITH_NCCL when
 * it finds nccl.h and libnccl. A build without NCCL still has these
 * functions: one device works (no reduction is needed), more than one
 * throws "built without NCCL".
 *
 * NVLink multicast (NVLS) stays off: the communicators are created with
 * NCCL_NVLS_ENABLE=0 set in the environment (NVLS needs a fabric manager
 * and multicast objects that shared machines may not grant; the statistics
 * are a few MB, where it gains nothing).
 */

#pragma once

#include <memory>
#include <string>
#include <vector>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>

namespace faiss_gmm {
namespace gpu {

/// Number of usable CUDA devices (0 when there is no driver or device;
/// never throws).
int gpu_device_count();

/**
 * Parses a device list such as "0,1,3" (non-negative ordinals, no
 * duplicates); throws naming the string when malformed.
 */
std::vector<int> parse_device_list(const std::string& list);

/// True when this build sums statistics across devices with NCCL.
bool multi_gpu_has_nccl();

/**
 * The fused E-step over G devices: rows [b_g, e_g) of the n host rows
 * (contiguous shards, sizes differing by at most one, in device-list
 * order) go to devices[g], each a GpuEStep with `config` (config.device is
 * replaced by devices[g]; max_device_memory and chunk_rows apply per
 * device). compute() launches every shard concurrently (one host thread
 * per device), all-reduces the device statistics with NCCL on the
 * devices' streams and downloads the sum from the first device.
 */
class GpuMultiEStep : public GmmEStep {
   public:
    /**
     * @param n       number of rows (>= number of devices)
     * @param x       n x d row-major floats in host memory (must outlive
     *                this object)
     * @param d       dimension
     * @param devices CUDA ordinals, distinct, at least one
     * @param config  precision, per-device memory budget, chunking
     */
    GpuMultiEStep(
        idx_t n,
        const float* x,
        int d,
        const std::vector<int>& devices,
        const GpuEmConfig& config = GpuEmConfig());
    ~GpuMultiEStep() override;

    void
    compute(const GaussianMixture& model, GmmSufficientStats* stats) override;

    /// number of devices
    int num_devices() const;
    /// the E-step of the g-th device of the list
    const GpuEStep& shard(int g) const;
    /// rows of the g-th device's shard
    idx_t shard_rows(int g) const;
    /// wall time of the last compute (launch, reduction, download), ms
    double last_compute_ms() const;
    /// wall time from the end of the launches to the end of the all-reduce
    /// (waiting for the slowest device included), milliseconds
    double last_reduce_ms() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/**
 * Same contract as train_gmm_gpu (subsampling, initialisation on the GPU
 * devices[0], M-step, verbose lines, iteration_stats) with the E-step
 * spread over devices by GpuMultiEStep. x is host memory. One device gives
 * the one-GPU trainer's model (same E-step, no reduction but NCCL's
 * copy); G devices differ from it only by the summation order of the
 * statistics.
 */
void train_gmm_multi_gpu(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    const std::vector<int>& devices,
    const GpuEmConfig& config = GpuEmConfig());

} // namespace gpu
} // namespace faiss_gmm
