/**
 * GMM training on one GPU with the fused E-step kernels of kernels/.
 *
 * Initialisation, convergence test, verbose lines and re-seeding are the
 * shared EM driver's (GmmEM.h). The EM loop runs on the device
 * (run_em_on_device): E-step, M-step (gmm_m_step's arithmetic in double,
 * kernels/gmm_mstep.h) and the preparation of the next E-step's model, with
 * one small download per iteration; the rare iterations that must re-seed a
 * component run the shared host M-step. The E-step never stores the N x K
 * responsibilities; its extra device memory is O(N + K D) (O(chunk + K D) when
 * streaming), plus for bf16 a converted copy of the points of at most 512 MiB
 * (and at most a quarter of the budget left), filled sub-chunk by sub-chunk.
 * Other models (tf32 / fp32, deeper bf16; GpuEmConfig::force_gemm_path) use
 * two cuBLAS GEMMs per
 * sub-chunk instead, with at most 256 MiB of chunk buffers (and at most a
 * quarter of the budget left) plus K x depth floats and a cuBLAS workspace.
 *
 * Full covariance (kernels/gmm_estep_full.h, impl/GpuEStepFull.cpp): the
 * E-step whitens each chunk of points by every component's precision
 * Cholesky factor in one cuBLAS product (chunk x D by D x K D), forms the
 * responsibilities from the squared norms, N_k and sum r x from one more
 * product, R^T [x' | 1], and each component's second moments about its own
 * mean from its whitened residuals (K strided-batched products), mapped
 * back in double on the host; fp32, or tf32 for the tf32 and bf16
 * precisions. Chunk buffers of at most 1 GiB (and half of the budget left),
 * plus the model's 2 K D^2 floats and K (D^2 + D + 1) floats and doubles
 * of statistics. Its M-step runs on the host (gmm_m_step, shared with the
 * CPU trainer: covariances, floor, LAPACK Cholesky factors, re-seeding)
 * after a download of the statistics, every iteration. IndexIVFGMM's
 * train_device=auto keeps full models on the CPU (kernels/README.md says
 * what the device runs measured).
 */

#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

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
    /**
     * Run every model on the cuBLAS-based E-step path
     * (kernels/gmm_estep_gemm.h: two GEMMs per chunk of rows around
     * element-wise kernels), also the bf16 models of logits depth <= 256
     * (d <= 128 diagonal, d <= 256 spherical) that by default take the fused
     * kernels (kernels/gmm_estep.h). For comparisons (bench_em --gemm-path,
     * the tests). Every other model always takes the GEMM path: tf32 / fp32
     * and deeper bf16 models, where it beat the fused kernels on every
     * bench_em shape on an H100 (kernels/README.md).
     */
    bool force_gemm_path = false;
    /**
     * On a compute capability 9.0 device (H100 / H200), run the bf16 E-step
     * of models of logits depth <= 256 (d <= 128) with the Hopper kernels
     * (kernels/gmm_estep_sm90.h: TMA, wgmma, warp-specialised ping-pong)
     * instead of the sm_80 fused kernels; same contract and tolerances.
     * Default on: 1.7x (spherical) to 3.1x (diagonal) faster than the sm_80
     * kernels on an H100 at 1M x 128, K = 1024 and 4096 (kernels/README.md,
     * "Hopper E-step"). Ignored on other devices and in builds without
     * sm_90 code.
     */
    bool hopper_estep = true;
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

class GpuEStep;

/**
 * run_em's contract (same parameters, iteration_stats, verbose lines, tol
 * test, errors on a non-finite log-likelihood or an E-step without points)
 * with the whole EM iteration on estep's device: the model is uploaded once,
 * each iteration runs the E-step, the M-step and the preparation of the next
 * E-step's model there and downloads one small summary (log-likelihood,
 * minima, re-seed count); *model receives the trained model when EM ends.
 * An iteration in which some component must be re-seeded (N_k below
 * params.min_component_count) downloads the statistics and the model and
 * runs gmm_m_step on the host instead, then uploads the result.
 *
 * The centre c that the E-step subtracts (GpuEStep, kernels/gmm_estep.h)
 * is the initial model's mixture mean, kept for every iteration (run_em's
 * launches recompute it; after an M-step the mixture mean equals the data
 * mean, so it barely moves, and the statistics are exact about any c).
 *
 * @param model           initialised model (d and covariance of estep's
 *                        data); trained on return
 * @param estep           the device E-step over the training data
 * @param params          niter, tol, min_component_count, seed (re-seeding),
 *                        verbose
 * @param estep_kernel_ms if not null, receives the device time of each
 *                        iteration's E-step (CUDA events), milliseconds
 */
void run_em_on_device(
    GaussianMixture* model,
    GpuEStep* estep,
    const GmmParameters& params,
    std::vector<double>* estep_kernel_ms = nullptr);

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
     * First half of compute(): uploads the model (means, variances,
     * weights; the centre c is its mixture mean), prepares the E-step's
     * form of it on the device (kernels/gmm_mstep.h), zeroes the
     * accumulators and enqueues both passes over every row on the E-step's
     * stream. It returns once the work is enqueued (resident data) or the last
     * chunk is handed over (streamed data). Returns the number of rows seen.
     */
    idx_t launch(const GaussianMixture& model);
    /// The device accumulators that launch() fills. Full covariance: one
    /// accumulator holds them all (count; sum1 and sum2 are empty).
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

    /**
     * The M-step on the device from the statistics of the last
     * launch(*model) (before or after download(), which leaves them), with
     * gmm_m_step's arithmetic (full covariance: gmm_m_step itself, on the
     * host, from the downloaded statistics; same contract). When no component
     * needs re-seeding, writes the new means, variances and weights into *model
     * and returns 0; otherwise leaves *model unchanged and returns the number
     * of components that gmm_m_step would re-seed. Throws, as gmm_m_step does,
     * when the total responsibility is not positive.
     *
     * @param model  the model given to the last launch(), updated
     * @param params min_component_count (the variance floor is the model's)
     */
    int device_m_step(GaussianMixture* model, const GmmParameters& params);

    /// the device EM loop works on this E-step's model and accumulators
    friend void run_em_on_device(
        GaussianMixture* model,
        GpuEStep* estep,
        const GmmParameters& params,
        std::vector<double>* estep_kernel_ms);

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
