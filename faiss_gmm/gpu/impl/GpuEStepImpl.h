/**
 * Internal (not installed): the state of a GpuEStep (its data source,
 * buffers, device model and accumulators) and the steps it takes, defined
 * by concern in
 *   GpuEStepMemory.cpp  the memory plan and the buffers it sizes,
 *   GpuEStepModel.cpp   the model's uploads and downloads, its E-step form
 *                       and the device M-step,
 *   GpuEStepPasses.cpp  the data feed (resident or streamed chunks) and the
 *                       E-step dispatch (prepared, fused, GEMM or sm_90a).
 *   GpuEStepFull.cpp    the full-covariance E-step (its buffers, model,
 *                       passes and statistics).
 * GpuEmTrainer.cpp drives them (GpuEStep's interface, the device EM loop,
 * the training entry points).
 */

#pragma once

#include <cstddef>
#include <vector>

#include <cuda_runtime.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/EStepResources.h>
#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_full.h>
#include <kernels/gmm_mstep.h>

namespace faiss_gmm {
namespace gpu {

struct GpuEStep::Impl {
    enum class Source { Device, HostResident, HostStream, Callback };

    GpuEmConfig config;
    int d = 0;
    idx_t n = 0;
    Source source = Source::Device;
    const float* x_host = nullptr;
    const float* x_device = nullptr; // caller's or the resident copy
    GpuChunkSource* callback = nullptr;
    bool host_registered = false;
    idx_t chunk = 0; // rows per chunk (n when resident)
    int num_sms = 1;
    int cc_major = 0, cc_minor = 0; // compute capability of the device
    size_t device_bytes = 0;
    double last_kernel_ms = 0;
    double last_compute_ms = 0;
    double launch_start_ms = 0; // host clock at the last launch

    ScopedStream compute_stream{detail::kEStepOwner},
        copy_stream{detail::kEStepOwner};
    detail::Event start{true}, stop{true};
    detail::Event copied[2], consumed[2];

    detail::DeviceBuffer resident;     // host data uploaded once
    detail::DeviceBuffer chunk_buf[2]; // streamed chunks
    detail::PinnedBuffer
        pinned[2]; // staging of unregistered host data / callback
    detail::DeviceBuffer log2_z, scratch;
    // bf16 points converted once per E-step (prepared path), in sub-chunks
    // of prep_rows rows of at most prep_depth columns
    detail::DeviceBuffer prepared, prepared_norms;
    idx_t prep_rows = 0;
    int prep_depth = 0;
    // GEMM path (deep models, kernels/gmm_estep_gemm.h): chunk buffers of
    // at most gemm_budget bytes (gemm_rows rows), sized for the model of
    // k_pad gemm_k_pad and depth gemm_depth; stats is k_pad x depth
    // (the workspace outlives the handle: members die in reverse order)
    detail::DeviceBuffer gemm_workspace;
    detail::CublasHandle cublas;
    detail::DeviceBuffer gemm_points, gemm_norms, gemm_logits, gemm_probs;
    detail::DeviceBuffer gemm_log2_z, gemm_partials, gemm_stats;
    size_t gemm_budget = 0;
    idx_t gemm_rows = 0;
    int gemm_k_pad = 0;
    int gemm_depth = 0;
    // model, sized for the last k seen
    int model_k = -1;
    bool model_diagonal = false;
    // tied spherical: the M-step pools the variance (no buffer change)
    bool model_tied = false;
    // the E-step's form of the model (gmm_prepare_estep_model's output)
    detail::DeviceBuffer matrix, center, row_const, row_scale, row_norm;
    // the model itself, twice: the M-step reads model_*[current] and writes
    // the other one, which becomes current when the step is kept
    detail::DeviceBuffer model_means[2], model_variances[2], model_weights[2];
    int current = 0;
    detail::DeviceBuffer mstep_scratch, mstep_summary;
    detail::DeviceBuffer acc_count, acc_sum1, acc_sum2, acc_ll;
    // pinned copies of the accumulators and of the M-step summary
    detail::PinnedBuffer dl_count, dl_sum1, dl_sum2, dl_ll, dl_summary;
    detail::Event summary_ready;
    std::vector<float> h_center; // the centre c of the device buffer

    // Full covariance (kernels/gmm_estep_full.h, GpuEStepFull.cpp): the
    // model as uploaded (means, weights, precision Cholesky factors), its
    // E-step form (product matrix W, offsets, constants), chunk buffers of
    // full_rows rows (features, Z, responsibilities, ln Z), the fp32
    // statistics (S: k x feature columns, then M: k x d x d whitened
    // second moments) and their double accumulator.
    // model_full selects this path for launch, download and the EM loop.
    bool model_full = false;
    int full_k = -1;
    idx_t full_rows = 0;
    idx_t full_pending = 0; // rows summed in full_stats since the last fold
    idx_t full_seen = 0;    // rows of the last launch
    detail::DeviceBuffer full_means, full_weights, full_cholesky;
    detail::DeviceBuffer full_products, full_offsets, full_const;
    detail::DeviceBuffer full_features, full_z, full_resp, full_log_z;
    detail::DeviceBuffer full_stats, full_acc, full_ll;
    detail::PinnedBuffer dl_full, dl_full_ll;

    Impl(const GpuEmConfig& cfg, int dim) : config(cfg), d(dim) {}

    ~Impl() {
        if (host_registered) {
            cudaHostUnregister(const_cast<float*>(x_host));
        }
    }

    size_t budget() const {
        if (config.max_device_memory > 0) {
            return config.max_device_memory;
        }
        size_t free_bytes = 0, total_bytes = 0;
        detail::check_cuda(
            cudaMemGetInfo(&free_bytes, &total_bytes),
            "querying free device memory");
        return size_t(double(free_bytes) * 0.8);
    }

    /// Chunk buffers of the GEMM path at most (a quarter of the budget left
    /// at most): 32k rows of 960-d points with K = 1024 (bf16) per GEMM.
    static constexpr size_t kGemmChunkBytes = size_t(256) << 20;
    /// The cuBLAS workspace of the GEMM path (cuBLAS's advice for Hopper).
    static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

    /// Whether models of this logits depth take the GEMM path: every model
    /// the fused kernels do not take (kernels::estep_fused_supports), and
    /// all of them under config.force_gemm_path.
    bool uses_gemm_path(int depth) const {
        kernels::EStepModel probe;
        probe.math = detail::to_kernel_math(config.precision);
        probe.depth = depth;
        return config.force_gemm_path || !kernels::estep_fused_supports(probe);
    }

    /// Device bytes of the model-dependent buffers for k components (an
    /// estimate at construction, with k unknown, uses k = 65536 / 16).
    size_t model_bytes(int k, bool diagonal) const {
        const size_t kp = kernels::estep_padded_components(k);
        const size_t depth = kernels::estep_depth(d, diagonal);
        const size_t cols = kernels::estep_output_columns(d);
        const size_t vpc = diagonal ? d : 1;
        const size_t gemm = uses_gemm_path(int(depth))
                                ? kp * depth * 4 + kCublasWorkspaceBytes
                                : 0;
        return kp * depth * 4 + kp * 16 + size_t(d) * 4 +
               kp * cols * 8 * (diagonal ? 2 : 1) + kp * 16 + 64 +
               2 * kp * (size_t(d) + vpc + 1) * 4 + kp * 4 + 64 + gemm;
    }

    /**
     * Reads the device (SMs, compute capability) and plans its memory: the
     * model's reserve_model bytes, the prepared-point and GEMM buffers, then
     * the data, resident (chunk = rows) when it is on the device or fits,
     * else chunks of a multiple of 64 rows, two in flight.
     */
    void plan(idx_t rows, bool data_on_device, size_t reserve_model);

    /// Largest prepared-point buffer (bytes), so that one E-step of a
    /// million 128-d points (diagonal) runs in one sub-chunk.
    static constexpr size_t kPreparedBytes = size_t(512) << 20;

    /// Sets prep_rows / prep_depth for the bf16 prepared-point path (the
    /// deepest covariance that uses it) and takes its bytes from left.
    void reserve_prepared(idx_t rows, size_t& left);

    /// Sets gemm_budget, the chunk-buffer bytes of the GEMM path, when some
    /// covariance takes it (the diagonal one first: the deeper), and takes
    /// them from left.
    void reserve_gemm(size_t& left);

    /// (Re)allocates the GEMM path's buffers for model m (once per model
    /// shape): chunks of gemm_rows rows, a multiple of 64 that fits
    /// gemm_budget (at least 64), no more than the rows of one pass.
    void allocate_gemm_buffers(const kernels::EStepModel& m);

    /**
     * The E-step of rows points x through the GEMM path, in sub-chunks of
     * gemm_rows rows: X' (prepare), raw = X' M^T (cuBLAS), log2 Z and
     * P = exp2(l - log2 Z) with N_k and the spherical distance sums,
     * S = P^T X' (cuBLAS), S into the accumulators. cuBLAS is column-major:
     * a row-major r x c matrix is its c x r transpose, so raw^T = M X'^T is
     * gemm(T, N) of M (depth x k_pad, ld depth) and X'^T (depth x r), and
     * S^T = X'^T P is gemm(N, T) of X'^T and P^T (k_pad x r, ld k_pad).
     */
    void
    run_gemm_passes(const kernels::EStepModel& m, idx_t rows, const float* x);

    /// Allocates the per-row buffers (log2 Z, log-likelihood partials) for
    /// passes of up to rows rows.
    void allocate_row_buffers(idx_t rows);

    /// Allocates the two chunk buffers of the streamed data and the
    /// per-row buffers for one chunk.
    void setup_streaming();

    /// (Re)allocates the model-sized buffers when k or the variance
    /// layout changes.
    void allocate_model(const GaussianMixture& model);

    /// Creates the cuBLAS handle on the E-step's stream and its workspace
    /// (once; the GEMM and full-covariance paths share them).
    void create_cublas();

    /// The device model buffer `which` (0 or 1) as the kernels take it.
    kernels::DeviceGmm device_gmm(int which) const {
        kernels::DeviceGmm g;
        g.d = d;
        g.k = model_k;
        g.diagonal = model_diagonal;
        g.tied = model_tied;
        g.means = model_means[which].as<float>();
        g.variances = model_variances[which].as<float>();
        g.weights = model_weights[which].as<float>();
        return g;
    }

    /**
     * Copies model into the current device model. With new_center, the
     * centre c becomes the model's mixture mean (equal to the data mean
     * after an M-step); the device EM loop keeps the first one instead.
     */
    void upload_model(const GaussianMixture& model, bool new_center);

    /// Sets the centre c (h_center and the device buffer, which must hold
    /// d floats) to the model's mixture mean.
    void upload_center(const GaussianMixture& model);

    /// Copies the device model buffer `which` into model (synchronous).
    void download_model(int which, GaussianMixture* model);

    /// Writes the E-step's form of the current device model (component
    /// matrix, constants, scales, norms) and zeroes the accumulators.
    void prepare_model();

    /// Both passes over every row with the prepared model, between the
    /// timing events; returns the rows seen.
    idx_t run_timed();

    /// Device time between the timing events of the last run_timed (which
    /// must be complete), stored as last_kernel_ms.
    double read_kernel_ms();

    /**
     * Enqueues the M-step from the accumulators and the current device model
     * into the other one, then waits for its summary (the only
     * synchronisation of a device EM iteration). Throws, as gmm_m_step
     * does, when the total responsibility is not positive.
     */
    kernels::MStepSummary m_step(double variance_floor, double min_count);

    kernels::EStepModel kernel_model() const {
        kernels::EStepModel m;
        m.d = d;
        m.k = model_k;
        m.diagonal = model_diagonal;
        m.math = detail::to_kernel_math(config.precision);
        m.k_pad = kernels::estep_padded_components(model_k);
        m.depth = kernels::estep_depth(d, m.diagonal);
        m.component_matrix = matrix.as<const void>();
        m.center = center.as<const float>();
        m.row_const = row_const.as<const float>();
        m.row_scale = row_scale.as<const float>();
        m.row_norm = row_norm.as<const float>();
        return m;
    }

    kernels::EStepAccumulators accumulators() const {
        kernels::EStepAccumulators a;
        a.count = acc_count.as<double>();
        a.sum1 = acc_sum1.as<double>();
        a.sum2 = acc_sum2.as<double>();
        a.log_likelihood = acc_ll.as<double>();
        return a;
    }

    /// Enqueues the E-step of rows points x (device) into the accumulators:
    /// the GEMM path for deep models, else the log-normaliser pass then the
    /// statistics pass (fused, prepared bf16 or sm_90a kernels).
    void run_passes(const kernels::EStepModel& m, idx_t rows, const float* x);

    /// Both passes over every chunk; returns the rows seen.
    idx_t run_all(const kernels::EStepModel& m);

    /// The arithmetic of the full-covariance E-step (fp32 or tf32).
    kernels::EStepMath full_math() const;

    /// The full-covariance model's E-step form, as its kernels take it.
    kernels::FullEStepModel full_kernel_model() const;

    /**
     * Full covariance: (re)allocates the model and chunk buffers for model
     * (once per k), creates the cuBLAS handle, and selects this path
     * (model_full) for the following launches. Chunks of full_rows rows:
     * kFullChunkBytes of chunk buffers at most, and at most half of the
     * budget left after the data and the model (GpuEStepFullPlan.h).
     */
    void allocate_full(const GaussianMixture& model);

    /// Copies the full model (means, weights, precision Cholesky factors)
    /// to the device; with new_center, c becomes its mixture mean.
    void upload_full_model(const GaussianMixture& model, bool new_center);

    /// Writes the E-step form of the uploaded full model and zeroes the
    /// accumulators.
    void prepare_full_model();

    /**
     * The full-covariance E-step of rows points x (device), in sub-chunks
     * of full_rows rows: features, Z = F[:, 0:d] W (cuBLAS), the
     * responsibilities and ln Z, S (+)= R^T F (cuBLAS), the weighted
     * residuals in place of Z and M_j (+)= Y_j^T Y_j (cuBLAS, K strided
     * batches), folded into the double accumulator before they would sum
     * more than kFullFoldRows rows.
     */
    void run_full_passes(idx_t rows, const float* x);

    /// Folds the pending fp32 statistics into the double accumulator.
    void flush_full_statistics();

    /**
     * Waits for the stream, downloads the full accumulators and adds them
     * to stats (count, sum_x, sum_outer about model's means) as the
     * statistics of `rows` points.
     */
    void download_full(
        const GaussianMixture& model, idx_t rows, GmmSufficientStats* stats);

    /**
     * run_em_on_device for a full model (GpuEmTrainer.cpp): per iteration
     * the model's upload and E-step form, the E-step on the device, the
     * statistics download and the shared host M-step (gmm_m_step), then
     * progress.finish_iteration.
     */
    void run_full_em(
        GaussianMixture* model,
        const GmmParameters& params,
        EmProgress& progress,
        std::vector<double>* estep_kernel_ms);
};

} // namespace gpu
} // namespace faiss_gmm
