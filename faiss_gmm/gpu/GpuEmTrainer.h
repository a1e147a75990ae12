/**
 * GMM training on one GPU with the fused E-step kernels of kernels/.
 *
 * Initialisation, M-step, variance floor, re-seeding, convergence test and
 * verbose lines are the shared EM driver's (GmmEM.h): only the E-step runs
 * on the GPU, so the CPU and GPU trainers differ only in the arithmetic of
 * that step. The E-step never stores the N x K responsibilities; its extra
 * device memory is O(N + K D) (O(chunk + K D) when streaming), plus for
 * bf16 a converted copy of the points of at most 512 MiB (and at most a
 * quarter of the budget left), filled sub-chunk by sub-chunk.
 */

#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>

namespace faiss_gmm {
namespace gpu {

/// Arithmetic of the E-step's matrix products (accumulation is fp32).
enum class EStepPrecision : int {
    FP32 = 0, ///< reference: CUDA-core FMA
    TF32 = 1, ///< tensor cores, 10-bit mantissa inputs
    BF16 = 2, ///< tensor cores, 8-bit mantissa inputs
};

/// "fp32" / "tf32" / "bf16".
const char* estep_precision_name(EStepPrecision precision);
/// Inverse of estep_precision_name; throws naming the string when unknown.
EStepPrecision estep_precision_from_name(const std::string& name);

/** Where and how the GPU trainer runs. */
struct GpuEmConfig {
    int device = 0; ///< CUDA device ordinal
    /**
     * Arithmetic of the E-step products. Default BF16: the fastest mode,
     * and its models make the same IVF as fp32's. Measured on one H100
     * (bench_search, GpuIndexIVFGMM defaults, 10 EM iterations):
     * sift-debian-a, nlist 1024, 10k queries, recall@10 at nprobe
     * 4/8/16/32: fp32 .7837/.8963/.9612/.9906, tf32 .7836/.8963/.9611/.9906,
     * bf16 .7836/.8962/.9612/.9906 (same distance counts within 0.01%);
     * synthetic 1M x 128, nlist 4096, nprobe 16/64: fp32 .7904/.9643, bf16
     * .7910/.9642; build (train + add) 8.4 s fp32, 6.3 s bf16. FP32 is the
     * reference for accuracy tests.
     */
    EStepPrecision precision = EStepPrecision::BF16;
    /// device memory the E-step may use, bytes, data included (0: 80% of
    /// the free memory when the E-step is built). Host data that does not
    /// fit is streamed in chunks.
    size_t max_device_memory = 0;
    /// rows per streamed chunk (0: the largest two chunks that fit the
    /// budget); forces streaming of host data when > 0 and < n
    idx_t chunk_rows = 0;
    /// print what the E-step allocates and how it moves the data
    bool verbose = false;
};

/// True when a CUDA device with this ordinal is usable (never throws).
bool gpu_is_available(int device = 0);

/**
 * Rows supplied by the caller chunk by chunk (read from disk, generated...),
 * so that a data set need not be held in memory. The E-step reads it once
 * per EM iteration, from the first row.
 */
struct GpuChunkSource {
    virtual ~GpuChunkSource() = default;
    /// total number of rows one pass delivers
    virtual idx_t total_rows() const = 0;
    /// the next next() call starts again from the first row
    virtual void rewind() = 0;
    /**
     * Write the next at most max_rows rows (row-major, d floats each) into
     * out and return how many were written; 0 when the pass is over.
     */
    virtual idx_t next(idx_t max_rows, float* out) = 0;
};

/**
 * The fused GPU E-step as a GmmEStep: sufficient statistics of the whole
 * data set (host memory, device memory or a GpuChunkSource) on one device.
 * Host data that fits the budget is uploaded once and stays resident; larger
 * host data is streamed through two pinned chunks per iteration, copies
 * overlapping the kernels.
 */
class GpuEStep : public GmmEStep {
   public:
    /**
     * @param n           number of points
     * @param x           n x d row-major floats (must outlive this object)
     * @param d           dimension
     * @param x_on_device x is device memory of config.device (else host)
     * @param config      device, precision, memory budget
     */
    GpuEStep(
        idx_t n,
        const float* x,
        int d,
        bool x_on_device,
        const GpuEmConfig& config = GpuEmConfig());
    /// Rows from source (must outlive this object), streamed every pass.
    GpuEStep(
        GpuChunkSource* source,
        int d,
        const GpuEmConfig& config = GpuEmConfig());
    ~GpuEStep() override;

    void
    compute(const GaussianMixture& model, GmmSufficientStats* stats) override;

    /// device bytes this E-step allocated (its peak extra memory)
    size_t device_bytes() const;
    /// true when the data are streamed in chunks every iteration
    bool is_streaming() const;
    /// rows per chunk (n when the data are resident)
    idx_t chunk_rows() const;
    /// device time of the last compute's kernels (both passes, all chunks,
    /// copies in between when streaming), milliseconds (CUDA events)
    double last_kernel_ms() const;
    /// wall time of the last compute, milliseconds (host clock)
    double last_compute_ms() const;

    /**
     * The statistics of the last launch() while they are still in device
     * memory (of config.device): raw sums in the kernels' padded layout
     * (kernels/gmm_estep.h: N_k, sum r x', second moments, log-likelihood),
     * all doubles. Several devices' E-steps over shards of one data set
     * (same model) add up element by element, so a reducer (NCCL
     * all-reduce) may sum them in place between launch() and download().
     */
    struct DeviceStatistics {
        double* count = nullptr;          ///< N_k accumulator
        size_t count_size = 0;            ///< doubles at count
        double* sum1 = nullptr;           ///< sum r x' accumulator
        size_t sum1_size = 0;             ///< doubles at sum1
        double* sum2 = nullptr;           ///< second-moment accumulator
        size_t sum2_size = 0;             ///< doubles at sum2
        double* log_likelihood = nullptr; ///< one double, sum ln Z_i
        /// the cudaStream_t the passes run on (void*: this header needs no
        /// CUDA header); work enqueued on it runs after the passes and
        /// before download()'s copies
        void* stream = nullptr;
    };

    /**
     * First half of compute(): uploads the model, zeroes the accumulators
     * and enqueues both passes over every row on the E-step's stream. It
     * returns once the work is enqueued (resident data) or the last chunk
     * is handed over (streamed data). Returns the number of rows seen.
     */
    idx_t launch(const GaussianMixture& model);
    /// The device accumulators that launch() fills.
    DeviceStatistics device_statistics() const;
    /**
     * Second half of compute(): waits for the stream, downloads the
     * accumulators and adds them to stats as the statistics of `rows`
     * points (launch()'s return value, or the sum over the devices whose
     * accumulators were reduced into these). model must be the one given
     * to launch().
     */
    void download(
        const GaussianMixture& model, idx_t rows, GmmSufficientStats* stats);

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/**
 * Same contract as GaussianMixture::train (same parameters, subsampling,
 * initialisation, M-step, verbose lines, iteration_stats), with the E-step
 * on the GPU. x is host memory. The initialisation also runs on the GPU:
 * k-means (and the nearest-mean assignment of KMeans / Random inits) search
 * a GpuIndexFlatL2 on config.device; only kmeans++ init stays on the CPU.
 * The same holds for train_gmm_gpu_device and train_gmm_gpu_streaming.
 */
void train_gmm_gpu(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    const GpuEmConfig& config = GpuEmConfig());

/**
 * As train_gmm_gpu, with x in the memory of config.device. The training
 * sample (params.max_points_per_component) is gathered on the device; only
 * it is copied to the host, for the initialisation.
 */
void train_gmm_gpu_device(
    GaussianMixture* model,
    idx_t n,
    const float* x_device,
    const GmmParameters& params,
    const GpuEmConfig& config = GpuEmConfig());

/**
 * As train_gmm_gpu, with the rows from a chunk source (never held whole in
 * memory). One pass draws a seeded uniform sample (reservoir) of
 * m = min(n, k * max_points_per_component) rows (k * 256 when
 * max_points_per_component is 0) for the initialisation. EM then runs on
 * that sample (held on the host) when m < n, as the other trainers do, and
 * streams the source every iteration otherwise.
 */
void train_gmm_gpu_streaming(
    GaussianMixture* model,
    int d,
    GpuChunkSource* source,
    const GmmParameters& params,
    const GpuEmConfig& config = GpuEmConfig());

} // namespace gpu
} // namespace faiss_gmm
