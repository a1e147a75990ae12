#include <faiss_gmm/gpu/GpuEmTrainer.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <unordered_set>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_gemm.h>
#include <kernels/gmm_estep_sm90.h>
#include <kernels/gmm_mstep.h>

namespace faiss_gmm {
namespace gpu {

namespace {

namespace kn = faiss_gmm::kernels;

/// Names the E-step in its CUDA errors.
constexpr const char* kOwner = "GPU E-step";
/// The statistics download loops over the model (K x D values) on OpenMP
/// threads only above this many values: below it, waking the threads costs
/// more than the loop (bench_em on an H100 host, 1M x 128, K = 1024: an EM
/// iteration took 1.4-2.6x the bf16 E-step with 16 threads, 1.2-1.4x with 1).
constexpr size_t kParallelModelValues = size_t(1) << 21;

/// Throws a FaissException naming what was being done when err is an error.
void check_cuda(cudaError_t err, const char* what) {
    throw_on_cuda_error(err, what, kOwner);
}

/// Throws a FaissException naming what was being done when a cuBLAS call
/// failed.
void check_cublas(cublasStatus_t status, const char* what) {
    FAISS_THROW_IF_NOT_FMT(
        status == CUBLAS_STATUS_SUCCESS,
        "%s: %s failed: cuBLAS status %d (%s)",
        kOwner,
        what,
        int(status),
        cublasGetStatusString(status));
}

/// A cuBLAS handle owned by its scope (created on first use).
class CublasHandle {
   public:
    CublasHandle() = default;
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    ~CublasHandle() {
        if (handle_) {
            cublasDestroy(handle_);
        }
    }
    /// Creates the handle (once) on the current device, bound to stream.
    void create(cudaStream_t stream) {
        if (handle_) {
            return;
        }
        check_cublas(cublasCreate(&handle_), "creating a cuBLAS handle");
        check_cublas(
            cublasSetStream(handle_, stream), "binding cuBLAS to the stream");
    }
    cublasHandle_t get() const {
        return handle_;
    }

   private:
    cublasHandle_t handle_ = nullptr;
};

/// A device allocation whose allocations count into a byte total.
class DeviceBuffer : public DeviceAllocation {
   public:
    /// DeviceAllocation::allocate, then bytes added to *total.
    void allocate(size_t bytes, const char* what, size_t* total) {
        DeviceAllocation::allocate(bytes, what, kOwner);
        *total += bytes;
    }
};

/// Pinned host allocation owned by its scope.
class PinnedBuffer {
   public:
    PinnedBuffer() = default;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() {
        if (ptr_) {
            cudaFreeHost(ptr_);
        }
    }
    void allocate(size_t bytes, const char* what) {
        if (ptr_) {
            cudaFreeHost(ptr_);
            ptr_ = nullptr;
        }
        cudaError_t err = cudaMallocHost(&ptr_, bytes);
        if (err != cudaSuccess) {
            ptr_ = nullptr;
            cudaGetLastError();
            FAISS_THROW_FMT(
                "GPU E-step: allocating %zu bytes of pinned host memory "
                "for %s failed: %s",
                bytes,
                what,
                cudaGetErrorString(err));
        }
    }
    float* data() const {
        return static_cast<float*>(ptr_);
    }
    double* doubles() const {
        return static_cast<double*>(ptr_);
    }
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }

   private:
    void* ptr_ = nullptr;
};

class Event {
   public:
    explicit Event(bool timing = false) {
        check_cuda(
            cudaEventCreateWithFlags(
                &e_, timing ? cudaEventDefault : cudaEventDisableTiming),
            "creating an event");
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() {
        cudaEventDestroy(e_);
    }
    cudaEvent_t get() const {
        return e_;
    }

   private:
    cudaEvent_t e_ = nullptr;
};

kn::EStepMath to_kernel_math(EStepPrecision p) {
    switch (p) {
    case EStepPrecision::FP32:
        return kn::EStepMath::FP32;
    case EStepPrecision::TF32:
        return kn::EStepMath::TF32;
    case EStepPrecision::BF16:
        return kn::EStepMath::BF16;
    }
    FAISS_THROW_FMT("unknown EStepPrecision %d", int(p));
}

} // namespace

const char* estep_precision_name(EStepPrecision precision) {
    switch (precision) {
    case EStepPrecision::FP32:
        return "fp32";
    case EStepPrecision::TF32:
        return "tf32";
    case EStepPrecision::BF16:
        return "bf16";
    }
    return "unknown";
}

EStepPrecision estep_precision_from_name(const std::string& name) {
    if (name == "fp32") {
        return EStepPrecision::FP32;
    }
    if (name == "tf32") {
        return EStepPrecision::TF32;
    }
    if (name == "bf16") {
        return EStepPrecision::BF16;
    }
    FAISS_THROW_FMT(
        "unknown E-step precision '%s' (fp32, tf32 or bf16)", name.c_str());
}

bool gpu_is_available(int device) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (device < 0 || device >= count) {
        return false;
    }
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess ||
        cudaSetDevice(device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    const bool ok = cudaFree(nullptr) == cudaSuccess;
    cudaGetLastError();
    cudaSetDevice(previous);
    return ok;
}

/*********************************************************************
 * GpuEStep
 *********************************************************************/

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

    ScopedStream compute_stream{kOwner}, copy_stream{kOwner};
    Event start{true}, stop{true};
    Event copied[2], consumed[2];

    DeviceBuffer resident;     // host data uploaded once
    DeviceBuffer chunk_buf[2]; // streamed chunks
    PinnedBuffer pinned[2];    // staging of unregistered host data / callback
    DeviceBuffer log2_z, scratch;
    // bf16 points converted once per E-step (prepared path), in sub-chunks
    // of prep_rows rows of at most prep_depth columns
    DeviceBuffer prepared, prepared_norms;
    idx_t prep_rows = 0;
    int prep_depth = 0;
    // GEMM path (deep models, kernels/gmm_estep_gemm.h): chunk buffers of
    // at most gemm_budget bytes (gemm_rows rows), sized for the model of
    // k_pad gemm_k_pad and depth gemm_depth; stats is k_pad x depth
    // (the workspace outlives the handle: members die in reverse order)
    DeviceBuffer gemm_workspace;
    CublasHandle cublas;
    DeviceBuffer gemm_points, gemm_norms, gemm_logits, gemm_probs;
    DeviceBuffer gemm_log2_z, gemm_partials, gemm_stats;
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
    DeviceBuffer matrix, center, row_const, row_scale, row_norm;
    // the model itself, twice: the M-step reads model_*[current] and writes
    // the other one, which becomes current when the step is kept
    DeviceBuffer model_means[2], model_variances[2], model_weights[2];
    int current = 0;
    DeviceBuffer mstep_scratch, mstep_summary;
    DeviceBuffer acc_count, acc_sum1, acc_sum2, acc_ll;
    // pinned copies of the accumulators and of the M-step summary
    PinnedBuffer dl_count, dl_sum1, dl_sum2, dl_ll, dl_summary;
    Event summary_ready;
    std::vector<float> h_center; // the centre c of the device buffer

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
        check_cuda(
            cudaMemGetInfo(&free_bytes, &total_bytes),
            "querying free device memory");
        return size_t(double(free_bytes) * 0.8);
    }

    /// Chunk buffers of the GEMM path at most (a quarter of the budget left
    /// at most): 32k rows of 960-d points with K = 1024 (bf16) per GEMM.
    static constexpr size_t kGemmChunkBytes = size_t(256) << 20;
    /// The cuBLAS workspace of the GEMM path (cuBLAS's advice for Hopper).
    static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

    /// Whether models of this logits depth take the GEMM path.
    bool uses_gemm_path(int depth) const {
        int min_depth = config.gemm_path_min_depth;
        if (min_depth == -1) {
            min_depth = config.precision == EStepPrecision::BF16 ? 257 : 1;
        }
        return min_depth > 0 && depth >= min_depth;
    }

    /// Device bytes of the model-dependent buffers for k components (an
    /// estimate at construction, with k unknown, uses k = 65536 / 16).
    size_t model_bytes(int k, bool diagonal) const {
        const size_t kp = kn::estep_padded_components(k);
        const size_t depth = kn::estep_depth(d, diagonal);
        const size_t cols = kn::estep_output_columns(d);
        const size_t vpc = diagonal ? d : 1;
        const size_t gemm = uses_gemm_path(int(depth))
                                ? kp * depth * 4 + kCublasWorkspaceBytes
                                : 0;
        return kp * depth * 4 + kp * 16 + size_t(d) * 4 +
               kp * cols * 8 * (diagonal ? 2 : 1) + kp * 16 + 64 +
               2 * kp * (size_t(d) + vpc + 1) * 4 + kp * 4 + 64 + gemm;
    }

    void plan(idx_t rows, bool data_on_device, size_t reserve_model) {
        cudaDeviceProp prop;
        check_cuda(
            cudaGetDeviceProperties(&prop, config.device),
            "querying the device properties");
        num_sms = prop.multiProcessorCount;
        cc_major = prop.major;
        cc_minor = prop.minor;
        const size_t avail = budget();
        const size_t per_row_resident = size_t(d) * 4 + 4 + 1;
        FAISS_THROW_IF_NOT_FMT(
            config.gemm_path_min_depth >= -1,
            "GPU E-step: gemm_path_min_depth = %d (0: never, -1: by "
            "precision, else the smallest logits depth)",
            config.gemm_path_min_depth);
        FAISS_THROW_IF_NOT_FMT(
            avail > reserve_model,
            "GPU E-step: device memory budget %zu bytes is smaller than "
            "the model buffers (%zu bytes)",
            avail,
            reserve_model);
        size_t left = avail - reserve_model;
        reserve_prepared(rows, left);
        reserve_gemm(left);
        const bool force_chunks =
            config.chunk_rows > 0 && config.chunk_rows < rows;
        if (data_on_device ||
            (!force_chunks && size_t(rows) * per_row_resident <= left)) {
            chunk = rows;
            return;
        }
        // Two chunk buffers (data) + one log2 Z buffer + the scratch.
        const size_t per_row_stream = 2 * size_t(d) * 4 + 4 + 1;
        idx_t fit = idx_t(left / per_row_stream) / 64 * 64;
        if (config.chunk_rows > 0) {
            fit = std::min(fit, config.chunk_rows);
        }
        FAISS_THROW_IF_NOT_FMT(
            fit >= 1,
            "GPU E-step: device memory budget %zu bytes leaves no room "
            "for a chunk of %d-d rows",
            avail,
            d);
        chunk = std::min<idx_t>(fit, rows);
    }

    /// Largest prepared-point buffer (bytes), so that one E-step of a
    /// million 128-d points (diagonal) runs in one sub-chunk.
    static constexpr size_t kPreparedBytes = size_t(512) << 20;

    /// Sets prep_rows / prep_depth for the bf16 prepared-point path (the
    /// deepest covariance that uses it) and takes its bytes from left.
    void reserve_prepared(idx_t rows, size_t& left) {
        prep_rows = 0;
        prep_depth = 0;
        if (config.precision != EStepPrecision::BF16) {
            return;
        }
        kn::EStepModel probe;
        probe.math = kn::EStepMath::BF16;
        for (bool diagonal : {true, false}) {
            probe.depth = kn::estep_depth(d, diagonal);
            if (!uses_gemm_path(probe.depth) &&
                kn::estep_uses_prepared_points(probe)) {
                prep_depth = probe.depth;
                break;
            }
        }
        if (prep_depth == 0) {
            return;
        }
        const size_t row_bytes = size_t(prep_depth) * 2 + 4;
        const size_t cap = std::min(kPreparedBytes, left / 4) / row_bytes;
        prep_rows = std::max<idx_t>(
            64,
            std::min<idx_t>(
                kn::estep_padded_rows(std::max<idx_t>(rows, 1)),
                idx_t(cap) / 64 * 64));
        left -= std::min(left, size_t(prep_rows) * row_bytes);
    }

    /// Sets gemm_budget, the chunk-buffer bytes of the GEMM path, when some
    /// covariance takes it (the diagonal one first: the deeper), and takes
    /// them from left.
    void reserve_gemm(size_t& left) {
        gemm_budget = 0;
        if (!uses_gemm_path(kn::estep_depth(d, true))) {
            return;
        }
        gemm_budget = std::min(kGemmChunkBytes, left / 4);
        left -= gemm_budget;
    }

    /// (Re)allocates the GEMM path's buffers for model m (once per model
    /// shape): chunks of gemm_rows rows, a multiple of 64 that fits
    /// gemm_budget (at least 64), no more than the rows of one pass.
    void allocate_gemm_buffers(const kn::EStepModel& m) {
        cublas.create(compute_stream.get());
        if (!gemm_workspace.bytes()) {
            gemm_workspace.allocate(
                kCublasWorkspaceBytes, "the cuBLAS workspace", &device_bytes);
            check_cublas(
                cublasSetWorkspace(
                    cublas.get(),
                    gemm_workspace.as<void>(),
                    gemm_workspace.bytes()),
                "setting the cuBLAS workspace");
        }
        if (gemm_rows > 0 && gemm_k_pad == m.k_pad && gemm_depth == m.depth) {
            return;
        }
        DeviceBuffer* buffers[] = {
            &gemm_points,
            &gemm_norms,
            &gemm_logits,
            &gemm_probs,
            &gemm_log2_z,
            &gemm_partials,
            &gemm_stats};
        for (DeviceBuffer* b : buffers) {
            device_bytes -= b->bytes();
            b->release();
        }
        gemm_rows = 0;
        constexpr idx_t align = kn::kEStepGemmRowAlign;
        const size_t row_bytes = size_t(kn::estep_gemm_row_bytes(m));
        const idx_t fit = idx_t(gemm_budget / row_bytes) / align * align;
        const idx_t pass_rows =
            (std::max<idx_t>(chunk, 1) + align - 1) / align * align;
        const idx_t rows = std::min(std::max(fit, align), pass_rows);
        const size_t element = kn::estep_gemm_element_bytes(m.math);
        gemm_points.allocate(
            size_t(rows) * m.depth * element,
            "the GEMM path's centred points",
            &device_bytes);
        gemm_norms.allocate(
            size_t(rows) * 4, "the GEMM path's point norms", &device_bytes);
        gemm_logits.allocate(
            size_t(rows) * m.k_pad * 4,
            "the GEMM path's logits chunk",
            &device_bytes);
        if (kn::estep_gemm_separate_probabilities(m.math)) {
            gemm_probs.allocate(
                size_t(rows) * m.k_pad * element,
                "the GEMM path's responsibilities chunk",
                &device_bytes);
        }
        gemm_log2_z.allocate(
            size_t(rows) * 4, "the GEMM path's log2 Z", &device_bytes);
        gemm_partials.allocate(
            size_t(kn::estep_gemm_partials(rows)) * 8,
            "the GEMM path's log-likelihood partials",
            &device_bytes);
        gemm_stats.allocate(
            size_t(m.k_pad) * m.depth * 4,
            "the GEMM path's statistics product",
            &device_bytes);
        gemm_rows = rows;
        gemm_k_pad = m.k_pad;
        gemm_depth = m.depth;
        if (config.verbose) {
            printf(
                "GPU E-step: cuBLAS path for logits depth %d, K = %d: chunks "
                "of %" PRId64 " rows, %.1f MB of device memory in all\n",
                m.depth,
                m.k,
                int64_t(rows),
                device_bytes / 1e6);
        }
    }

    /**
     * The E-step of rows points x through the GEMM path, in sub-chunks of
     * gemm_rows rows: X' (prepare), raw = X' M^T (cuBLAS), log2 Z and
     * P = exp2(l - log2 Z) with N_k and the spherical distance sums,
     * S = P^T X' (cuBLAS), S into the accumulators. cuBLAS is column-major:
     * a row-major r x c matrix is its c x r transpose, so raw^T = M X'^T is
     * gemm(T, N) of M (depth x k_pad, ld depth) and X'^T (depth x r), and
     * S^T = X'^T P is gemm(N, T) of X'^T and P^T (k_pad x r, ld k_pad).
     */
    void run_gemm_passes(const kn::EStepModel& m, idx_t rows, const float* x) {
        cudaStream_t s = compute_stream.get();
        allocate_gemm_buffers(m);
        const kn::EStepAccumulators a = accumulators();
        const bool bf16 = m.math == kn::EStepMath::BF16;
        const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
        const cublasComputeType_t compute = m.math == kn::EStepMath::TF32
                                                ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                : CUBLAS_COMPUTE_32F;
        // P overwrites the logits in place unless it has its own type.
        void* probs = kn::estep_gemm_separate_probabilities(m.math)
                          ? gemm_probs.as<void>()
                          : gemm_logits.as<void>();
        const float one = 1.0f, zero = 0.0f;
        for (idx_t off = 0; off < rows; off += gemm_rows) {
            const int r = int(std::min(gemm_rows, rows - off));
            check_cuda(
                kn::gmm_estep_gemm_prepare(
                    m,
                    r,
                    x + size_t(off) * d,
                    gemm_points.as<void>(),
                    gemm_norms.as<float>(),
                    s),
                "launching the GEMM-path point preparation");
            check_cublas(
                cublasGemmEx(
                    cublas.get(),
                    CUBLAS_OP_T,
                    CUBLAS_OP_N,
                    m.k_pad,
                    r,
                    m.depth,
                    &one,
                    m.component_matrix,
                    in_type,
                    m.depth,
                    gemm_points.as<const void>(),
                    in_type,
                    m.depth,
                    &zero,
                    gemm_logits.as<void>(),
                    CUDA_R_32F,
                    m.k_pad,
                    compute,
                    CUBLAS_GEMM_DEFAULT),
                "the logits GEMM (points x components) of the E-step");
            check_cuda(
                kn::gmm_estep_gemm_log_norm(
                    m,
                    r,
                    gemm_logits.as<const float>(),
                    gemm_norms.as<const float>(),
                    gemm_log2_z.as<float>(),
                    gemm_partials.as<double>(),
                    a.log_likelihood,
                    s),
                "launching the GEMM-path log-normaliser");
            check_cuda(
                kn::gmm_estep_gemm_probabilities(
                    m,
                    r,
                    gemm_logits.as<const float>(),
                    gemm_norms.as<const float>(),
                    gemm_log2_z.as<const float>(),
                    probs,
                    a,
                    s),
                "launching the GEMM-path responsibilities");
            check_cublas(
                cublasGemmEx(
                    cublas.get(),
                    CUBLAS_OP_N,
                    CUBLAS_OP_T,
                    m.depth,
                    m.k_pad,
                    r,
                    &one,
                    gemm_points.as<const void>(),
                    in_type,
                    m.depth,
                    probs,
                    in_type,
                    m.k_pad,
                    &zero,
                    gemm_stats.as<void>(),
                    CUDA_R_32F,
                    m.depth,
                    compute,
                    CUBLAS_GEMM_DEFAULT),
                "the statistics GEMM (responsibilities x points) of the "
                "E-step");
            check_cuda(
                kn::gmm_estep_gemm_add_statistics(
                    m, gemm_stats.as<const float>(), a, s),
                "launching the GEMM-path statistics accumulation");
        }
    }

    void allocate_row_buffers(idx_t rows) {
        log2_z.allocate(
            size_t(kn::estep_padded_rows(rows)) * 4,
            "log2 Z (one float per row)",
            &device_bytes);
        scratch.allocate(
            size_t(kn::estep_log_norm_scratch(rows)) * 8,
            "log-likelihood partials",
            &device_bytes);
    }

    void setup_streaming() {
        for (int b = 0; b < 2; b++) {
            chunk_buf[b].allocate(
                size_t(chunk) * d * 4, "a streamed chunk", &device_bytes);
        }
        allocate_row_buffers(chunk);
    }

    /// (Re)allocates the model-sized buffers when k or the variance
    /// layout changes.
    void allocate_model(const GaussianMixture& model) {
        const int k = model.k;
        const bool diagonal = model.covariance == CovarianceType::Diagonal;
        model_tied = model.covariance == CovarianceType::TiedSpherical;
        if (k == model_k && diagonal == model_diagonal) {
            return;
        }
        const int kp = kn::estep_padded_components(k);
        const int depth = kn::estep_depth(d, diagonal);
        const int cols = kn::estep_output_columns(d);
        const size_t vpc = diagonal ? d : 1;
        std::vector<DeviceBuffer*> buffers = {
            &matrix,
            &center,
            &row_const,
            &row_scale,
            &row_norm,
            &mstep_scratch,
            &mstep_summary,
            &acc_count,
            &acc_sum1,
            &acc_sum2,
            &acc_ll};
        for (int b = 0; b < 2; b++) {
            buffers.insert(
                buffers.end(),
                {&model_means[b], &model_variances[b], &model_weights[b]});
        }
        // Release first so that a new k does not hold both sizes.
        for (DeviceBuffer* b : buffers) {
            device_bytes -= b->bytes();
            b->release();
        }
        const size_t element = config.precision == EStepPrecision::BF16 ? 2 : 4;
        matrix.allocate(
            size_t(kp) * depth * element,
            "the component matrix",
            &device_bytes);
        center.allocate(size_t(d) * 4, "the centre", &device_bytes);
        row_const.allocate(
            size_t(kp) * 4, "per-component constants", &device_bytes);
        row_scale.allocate(
            size_t(kp) * 4, "per-component scales", &device_bytes);
        row_norm.allocate(size_t(kp) * 4, "per-component norms", &device_bytes);
        for (int b = 0; b < 2; b++) {
            model_means[b].allocate(
                size_t(k) * d * 4, "the model means", &device_bytes);
            model_variances[b].allocate(
                size_t(k) * vpc * 4, "the model variances", &device_bytes);
            model_weights[b].allocate(
                size_t(k) * 4, "the model weights", &device_bytes);
        }
        mstep_scratch.allocate(
            size_t(kn::mstep_scratch_doubles(k)) * 8,
            "the M-step scratch",
            &device_bytes);
        mstep_summary.allocate(
            sizeof(kn::MStepSummary), "the M-step summary", &device_bytes);
        acc_count.allocate(
            size_t(kp) * 8, "the N_k accumulator", &device_bytes);
        acc_sum1.allocate(
            size_t(kp) * cols * 8, "the sum r x accumulator", &device_bytes);
        acc_sum2.allocate(
            size_t(kp) * (diagonal ? cols : 1) * 8,
            "the second-moment accumulator",
            &device_bytes);
        acc_ll.allocate(8, "the log-likelihood", &device_bytes);
        dl_count.allocate(acc_count.bytes(), "downloading N_k");
        dl_sum1.allocate(acc_sum1.bytes(), "downloading sum r x");
        dl_sum2.allocate(acc_sum2.bytes(), "downloading second moments");
        dl_ll.allocate(8, "downloading the log-likelihood");
        dl_summary.allocate(
            sizeof(kn::MStepSummary), "downloading the M-step summary");
        model_k = k;
        model_diagonal = diagonal;
        current = 0;
    }

    /// The device model buffer `which` (0 or 1) as the kernels take it.
    kn::DeviceGmm device_gmm(int which) const {
        kn::DeviceGmm g;
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
    void upload_model(const GaussianMixture& model, bool new_center) {
        cudaStream_t s = compute_stream.get();
        const struct {
            DeviceBuffer* dst;
            const std::vector<float>* src;
            const char* what;
        } copies[] = {
            {&model_means[current], &model.means, "uploading the means"},
            {&model_variances[current],
             &model.variances,
             "uploading the variances"},
            {&model_weights[current], &model.weights, "uploading the weights"},
        };
        for (const auto& c : copies) {
            check_cuda(
                cudaMemcpyAsync(
                    c.dst->as<void>(),
                    c.src->data(),
                    c.src->size() * 4,
                    cudaMemcpyHostToDevice,
                    s),
                c.what);
        }
        if (!new_center) {
            return;
        }
        std::vector<double> c(d, 0.0);
        double wsum = 0;
        for (int j = 0; j < model.k; j++) {
            const double w = model.weights[j];
            wsum += w;
            const float* mu = model.means.data() + size_t(j) * d;
            for (int l = 0; l < d; l++) {
                c[l] += w * mu[l];
            }
        }
        h_center.resize(d);
        for (int l = 0; l < d; l++) {
            h_center[l] = float(wsum > 0 ? c[l] / wsum : 0.0);
        }
        check_cuda(
            cudaMemcpyAsync(
                center.as<void>(),
                h_center.data(),
                size_t(d) * 4,
                cudaMemcpyHostToDevice,
                s),
            "uploading the centre");
    }

    /// Copies the device model buffer `which` into model (synchronous).
    void download_model(int which, GaussianMixture* model) {
        cudaStream_t s = compute_stream.get();
        const struct {
            std::vector<float>* dst;
            const DeviceBuffer* src;
            const char* what;
        } copies[] = {
            {&model->means, &model_means[which], "downloading the means"},
            {&model->variances,
             &model_variances[which],
             "downloading the variances"},
            {&model->weights, &model_weights[which], "downloading the weights"},
        };
        for (const auto& c : copies) {
            check_cuda(
                cudaMemcpyAsync(
                    c.dst->data(),
                    c.src->as<void>(),
                    c.dst->size() * 4,
                    cudaMemcpyDeviceToHost,
                    s),
                c.what);
        }
        check_cuda(cudaStreamSynchronize(s), "downloading the model");
    }

    /// Writes the E-step's form of the current device model (component
    /// matrix, constants, scales, norms) and zeroes the accumulators.
    void prepare_model() {
        cudaStream_t s = compute_stream.get();
        check_cuda(
            kn::gmm_prepare_estep_model(
                device_gmm(current),
                center.as<const float>(),
                to_kernel_math(config.precision),
                matrix.as<void>(),
                row_const.as<float>(),
                row_scale.as<float>(),
                row_norm.as<float>(),
                s),
            "launching the model preparation");
        for (DeviceBuffer* acc : {&acc_count, &acc_sum1, &acc_sum2, &acc_ll}) {
            check_cuda(
                cudaMemsetAsync(acc->as<void>(), 0, acc->bytes(), s),
                "zeroing the accumulators");
        }
    }

    /// Both passes over every row with the prepared model, between the
    /// timing events; returns the rows seen.
    idx_t run_timed() {
        cudaStream_t s = compute_stream.get();
        const kn::EStepModel m = kernel_model();
        check_cuda(cudaEventRecord(start.get(), s), "recording an event");
        const idx_t seen = run_all(m);
        check_cuda(cudaEventRecord(stop.get(), s), "recording an event");
        return seen;
    }

    /// Device time between the timing events of the last run_timed (which
    /// must be complete), stored as last_kernel_ms.
    double read_kernel_ms() {
        float ms = 0;
        check_cuda(
            cudaEventElapsedTime(&ms, start.get(), stop.get()),
            "reading the E-step timer");
        last_kernel_ms = ms;
        return ms;
    }

    /**
     * Enqueues the M-step from the accumulators and the current device model
     * into the other one, then waits for its summary (the only
     * synchronisation of a device EM iteration). Throws, as gmm_m_step
     * does, when the total responsibility is not positive.
     */
    kn::MStepSummary m_step(double variance_floor, double min_count) {
        cudaStream_t s = compute_stream.get();
        check_cuda(
            kn::gmm_mstep(
                accumulators(),
                device_gmm(current),
                center.as<const float>(),
                variance_floor,
                min_count,
                device_gmm(1 - current),
                mstep_scratch.as<double>(),
                mstep_summary.as<kn::MStepSummary>(),
                s),
            "launching the M-step");
        check_cuda(
            cudaMemcpyAsync(
                dl_summary.as<void>(),
                mstep_summary.as<void>(),
                sizeof(kn::MStepSummary),
                cudaMemcpyDeviceToHost,
                s),
            "downloading the M-step summary");
        check_cuda(
            cudaEventRecord(summary_ready.get(), s), "recording an event");
        check_cuda(
            cudaEventSynchronize(summary_ready.get()),
            "running the E-step and the M-step");
        return *dl_summary.as<kn::MStepSummary>();
    }

    kn::EStepModel kernel_model() const {
        kn::EStepModel m;
        m.d = d;
        m.k = model_k;
        m.diagonal = model_diagonal;
        m.math = to_kernel_math(config.precision);
        m.k_pad = kn::estep_padded_components(model_k);
        m.depth = kn::estep_depth(d, m.diagonal);
        m.component_matrix = matrix.as<const void>();
        m.center = center.as<const float>();
        m.row_const = row_const.as<const float>();
        m.row_scale = row_scale.as<const float>();
        m.row_norm = row_norm.as<const float>();
        return m;
    }

    kn::EStepAccumulators accumulators() const {
        kn::EStepAccumulators a;
        a.count = acc_count.as<double>();
        a.sum1 = acc_sum1.as<double>();
        a.sum2 = acc_sum2.as<double>();
        a.log_likelihood = acc_ll.as<double>();
        return a;
    }

    void run_passes(const kn::EStepModel& m, idx_t rows, const float* x) {
        cudaStream_t s = compute_stream.get();
        const kn::EStepAccumulators a = accumulators();
        if (uses_gemm_path(m.depth)) {
            run_gemm_passes(m, rows, x);
            return;
        }
        if (!kn::estep_uses_prepared_points(m)) {
            check_cuda(
                kn::gmm_estep_log_norm(
                    m,
                    rows,
                    x,
                    nullptr,
                    nullptr,
                    log2_z.as<float>(),
                    scratch.as<double>(),
                    a,
                    s),
                "launching the E-step log-normaliser pass");
            check_cuda(
                kn::gmm_estep_statistics(
                    m,
                    rows,
                    x,
                    nullptr,
                    nullptr,
                    log2_z.as<const float>(),
                    a,
                    num_sms,
                    s),
                "launching the E-step statistics pass");
            return;
        }
        FAISS_THROW_IF_NOT_FMT(
            prep_rows > 0 && m.depth <= prep_depth,
            "GPU E-step: no prepared-point buffer planned for depth %d",
            m.depth);
        if (!prepared.bytes()) {
            prepared.allocate(
                size_t(prep_rows) * prep_depth * 2,
                "the bf16 copy of the points",
                &device_bytes);
            prepared_norms.allocate(
                size_t(prep_rows) * 4, "the point norms", &device_bytes);
        }
        const bool hopper = config.hopper_estep &&
                            kn::estep_sm90_supports(m, cc_major, cc_minor);
        // prep_rows is a multiple of 64: sub-chunks keep the tile grid.
        for (idx_t off = 0; off < rows; off += prep_rows) {
            const idx_t r = std::min(prep_rows, rows - off);
            const float* xs = x + size_t(off) * d;
            check_cuda(
                kn::gmm_estep_prepare_points(
                    m,
                    r,
                    xs,
                    prepared.as<void>(),
                    prepared_norms.as<float>(),
                    s),
                "launching the E-step point conversion");
            if (hopper) {
                check_cuda(
                    kn::gmm_estep_sm90(
                        m,
                        r,
                        prepared.as<const void>(),
                        prepared_norms.as<const float>(),
                        log2_z.as<float>(),
                        scratch.as<double>(),
                        a,
                        num_sms,
                        s),
                    "launching the Hopper E-step");
                continue;
            }
            check_cuda(
                kn::gmm_estep_log_norm(
                    m,
                    r,
                    xs,
                    prepared.as<const void>(),
                    prepared_norms.as<const float>(),
                    log2_z.as<float>(),
                    scratch.as<double>(),
                    a,
                    s),
                "launching the E-step log-normaliser pass");
            check_cuda(
                kn::gmm_estep_statistics(
                    m,
                    r,
                    xs,
                    prepared.as<const void>(),
                    prepared_norms.as<const float>(),
                    log2_z.as<const float>(),
                    a,
                    num_sms,
                    s),
                "launching the E-step statistics pass");
        }
    }

    /// Both passes over every chunk; returns the rows seen.
    idx_t run_all(const kn::EStepModel& m) {
        cudaStream_t s = compute_stream.get();
        if (source == Source::Device || source == Source::HostResident) {
            run_passes(m, n, x_device);
            return n;
        }
        cudaStream_t cs = copy_stream.get();
        if (source == Source::Callback) {
            callback->rewind();
        }
        idx_t seen = 0;
        for (int64_t c = 0;; c++) {
            const int b = int(c & 1);
            // The kernels of chunk c - 2 must be done with this buffer.
            check_cuda(
                cudaStreamWaitEvent(cs, consumed[b].get(), 0),
                "ordering the chunk copy");
            idx_t rows = 0;
            const float* src = nullptr;
            if (source == Source::Callback ||
                (source == Source::HostStream && !host_registered)) {
                // The pinned buffer's previous copy must be finished.
                check_cuda(
                    cudaEventSynchronize(copied[b].get()),
                    "waiting for a chunk copy");
                if (source == Source::Callback) {
                    rows = callback->next(chunk, pinned[b].data());
                    FAISS_THROW_IF_NOT_FMT(
                        rows >= 0 && rows <= chunk,
                        "GpuChunkSource::next returned %" PRId64
                        " rows for at most %" PRId64,
                        int64_t(rows),
                        int64_t(chunk));
                } else {
                    rows = std::min(chunk, n - seen);
                    std::memcpy(
                        pinned[b].data(),
                        x_host + size_t(seen) * d,
                        size_t(rows) * d * 4);
                }
                src = pinned[b].data();
            } else {
                rows = std::min(chunk, n - seen);
                src = x_host + size_t(seen) * d;
            }
            if (rows == 0) {
                break;
            }
            check_cuda(
                cudaMemcpyAsync(
                    chunk_buf[b].as<void>(),
                    src,
                    size_t(rows) * d * 4,
                    cudaMemcpyHostToDevice,
                    cs),
                "copying a chunk to the device");
            check_cuda(
                cudaEventRecord(copied[b].get(), cs), "recording a copy event");
            check_cuda(
                cudaStreamWaitEvent(s, copied[b].get(), 0),
                "ordering the chunk kernels");
            run_passes(m, rows, chunk_buf[b].as<const float>());
            check_cuda(
                cudaEventRecord(consumed[b].get(), s),
                "recording a kernel event");
            seen += rows;
            if (source == Source::HostStream && seen >= n) {
                break;
            }
        }
        return seen;
    }
};

GpuEStep::GpuEStep(
    idx_t n,
    const float* x,
    int d,
    bool x_on_device,
    const GpuEmConfig& config) {
    FAISS_THROW_IF_NOT_FMT(
        d >= 1 && d <= 4096, "GPU E-step: d = %d out of 1..4096", d);
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "GPU E-step: n = %" PRId64 " < 0", int64_t(n));
    FAISS_THROW_IF_NOT_MSG(x || n == 0, "GPU E-step: x is null");
    DeviceScope guard(config.device, kOwner);
    impl_ = std::make_unique<Impl>(config, d);
    Impl& im = *impl_;
    im.n = n;
    // Leave room for a model of up to 4096 components in the plan; larger
    // models are allocated when they come (and may fail with a clear error).
    im.plan(n, x_on_device, im.model_bytes(4096, true));
    double t0 = faiss::getmillisecs();
    if (x_on_device) {
        im.source = Impl::Source::Device;
        im.x_device = x;
        im.allocate_row_buffers(std::max<idx_t>(n, 1));
    } else if (im.chunk >= n) {
        im.source = Impl::Source::HostResident;
        im.x_host = x;
        im.resident.allocate(
            size_t(n) * d * 4, "the resident training data", &im.device_bytes);
        check_cuda(
            cudaMemcpy(
                im.resident.as<void>(),
                x,
                size_t(n) * d * 4,
                cudaMemcpyHostToDevice),
            "uploading the training data");
        im.x_device = im.resident.as<const float>();
        im.allocate_row_buffers(std::max<idx_t>(n, 1));
    } else {
        im.source = Impl::Source::HostStream;
        im.x_host = x;
        cudaError_t err = cudaHostRegister(
            const_cast<float*>(x), size_t(n) * d * 4, cudaHostRegisterDefault);
        im.host_registered = err == cudaSuccess;
        if (!im.host_registered) {
            cudaGetLastError();
            for (int b = 0; b < 2; b++) {
                im.pinned[b].allocate(
                    size_t(im.chunk) * d * 4, "a staging chunk");
            }
        }
        im.setup_streaming();
    }
    if (config.verbose) {
        printf(
            "GPU E-step: %" PRId64 " x %d points, %s, %s, chunk %" PRId64
            " rows, %.1f MB of device memory, set up in %.2f s\n",
            int64_t(n),
            d,
            x_on_device ? "on the device"
                        : (im.source == Impl::Source::HostResident
                               ? "uploaded once"
                               : (im.host_registered ? "streamed (registered)"
                                                     : "streamed (staged)")),
            estep_precision_name(config.precision),
            int64_t(im.chunk),
            im.device_bytes / 1e6,
            (faiss::getmillisecs() - t0) / 1000);
    }
}

GpuEStep::GpuEStep(GpuChunkSource* source, int d, const GpuEmConfig& config) {
    FAISS_THROW_IF_NOT_MSG(source, "GPU E-step: chunk source is null");
    FAISS_THROW_IF_NOT_FMT(
        d >= 1 && d <= 4096, "GPU E-step: d = %d out of 1..4096", d);
    DeviceScope guard(config.device, kOwner);
    impl_ = std::make_unique<Impl>(config, d);
    Impl& im = *impl_;
    im.source = Impl::Source::Callback;
    im.callback = source;
    im.n = source->total_rows();
    FAISS_THROW_IF_NOT_FMT(
        im.n >= 1,
        "GPU E-step: chunk source has %" PRId64 " rows",
        int64_t(im.n));
    im.plan(im.n, false, im.model_bytes(4096, true));
    if (config.chunk_rows <= 0 || config.chunk_rows >= im.n) {
        // Streaming anyway: keep chunks moderate so copies overlap.
        im.chunk = std::min<idx_t>(im.chunk, 1 << 20);
    }
    for (int b = 0; b < 2; b++) {
        im.pinned[b].allocate(size_t(im.chunk) * d * 4, "a staging chunk");
    }
    im.setup_streaming();
    if (config.verbose) {
        printf(
            "GPU E-step: %" PRId64 " x %d points from a chunk source, %s, "
            "chunk %" PRId64 " rows, %.1f MB of device memory\n",
            int64_t(im.n),
            d,
            estep_precision_name(config.precision),
            int64_t(im.chunk),
            im.device_bytes / 1e6);
    }
}

GpuEStep::~GpuEStep() {
    if (impl_) {
        int previous = 0;
        cudaGetDevice(&previous);
        cudaSetDevice(impl_->config.device);
        cudaStreamSynchronize(impl_->compute_stream.get());
        cudaStreamSynchronize(impl_->copy_stream.get());
        impl_.reset();
        cudaSetDevice(previous);
    }
}

void GpuEStep::compute(
    const GaussianMixture& model, GmmSufficientStats* stats) {
    FAISS_THROW_IF_NOT_MSG(stats, "GpuEStep: stats is null");
    stats->check_shaped_for(model, "GpuEStep");
    const idx_t seen = launch(model);
    download(model, seen, stats);
}

idx_t GpuEStep::launch(const GaussianMixture& model) {
    Impl& im = *impl_;
    FAISS_THROW_IF_NOT_FMT(
        model.d == im.d,
        "GpuEStep built for d = %d, model has d = %d",
        im.d,
        model.d);
    impl::check_model_shape(model);
    DeviceScope guard(im.config.device, kOwner);
    im.launch_start_ms = faiss::getmillisecs();
    im.allocate_model(model);
    im.upload_model(model, true);
    im.prepare_model();
    return im.run_timed();
}

GpuEStep::DeviceStatistics GpuEStep::device_statistics() const {
    const Impl& im = *impl_;
    DeviceStatistics ds;
    ds.count = im.acc_count.as<double>();
    ds.count_size = im.acc_count.bytes() / sizeof(double);
    ds.sum1 = im.acc_sum1.as<double>();
    ds.sum1_size = im.acc_sum1.bytes() / sizeof(double);
    ds.sum2 = im.acc_sum2.as<double>();
    ds.sum2_size = im.acc_sum2.bytes() / sizeof(double);
    ds.log_likelihood = im.acc_ll.as<double>();
    ds.stream = static_cast<void*>(im.compute_stream.get());
    return ds;
}

void GpuEStep::download(
    const GaussianMixture& model, idx_t seen, GmmSufficientStats* stats) {
    Impl& im = *impl_;
    FAISS_THROW_IF_NOT_MSG(stats, "GpuEStep: stats is null");
    stats->check_shaped_for(model, "GpuEStep");
    const bool diagonal = model.covariance == CovarianceType::Diagonal;
    FAISS_THROW_IF_NOT_FMT(
        model.d == im.d && model.k == im.model_k &&
            diagonal == im.model_diagonal,
        "GpuEStep::download: model (d=%d, k=%d, %s) is not the one of the "
        "last launch (d=%d, k=%d)",
        model.d,
        model.k,
        covariance_type_name(model.covariance),
        im.d,
        im.model_k);
    DeviceScope guard(im.config.device, kOwner);
    const int d = im.d, k = model.k;
    cudaStream_t s = im.compute_stream.get();

    const int cols = kn::estep_output_columns(d);
    const struct {
        PinnedBuffer* dst;
        const DeviceBuffer* src;
        const char* what;
    } copies[] = {
        {&im.dl_count, &im.acc_count, "downloading N_k"},
        {&im.dl_sum1, &im.acc_sum1, "downloading sum r x"},
        {&im.dl_sum2, &im.acc_sum2, "downloading the second moments"},
        {&im.dl_ll, &im.acc_ll, "downloading the log-likelihood"},
    };
    for (const auto& c : copies) {
        check_cuda(
            cudaMemcpyAsync(
                c.dst->as<void>(),
                c.src->as<void>(),
                c.src->bytes(),
                cudaMemcpyDeviceToHost,
                s),
            c.what);
    }
    check_cuda(cudaStreamSynchronize(s), "running the E-step");
    im.read_kernel_ms();
    const double* count = im.dl_count.doubles();
    const double* sum1 = im.dl_sum1.doubles();
    const double* sum2 = im.dl_sum2.doubles();

    stats->n += seen;
    stats->log_likelihood += im.dl_ll.doubles()[0];
    const float* c = im.h_center.data();
#pragma omp parallel for schedule(                                             \
    static) if (size_t(k) * d >= kParallelModelValues)
    for (int j = 0; j < k; j++) {
        const double nk = count[j];
        stats->count[j] += nk;
        const double* s1 = sum1 + size_t(j) * cols;
        const float* mu = model.means.data() + size_t(j) * d;
        for (int l = 0; l < d; l++) {
            stats->sum_x[size_t(j) * d + l] += s1[l] + nk * c[l];
        }
        if (!diagonal) {
            stats->sum_sq[j] += sum2[j];
        } else {
            // About the old mean: S2 - 2 m' S1 + N m'^2 with m' = mu - c.
            const double* s2 = sum2 + size_t(j) * cols;
            for (int l = 0; l < d; l++) {
                const double mc = double(mu[l]) - c[l];
                const double v = s2[l] - 2 * mc * s1[l] + nk * mc * mc;
                stats->sum_sq[size_t(j) * d + l] += std::max(v, 0.0);
            }
        }
    }
    im.last_compute_ms = faiss::getmillisecs() - im.launch_start_ms;
}

namespace {

/// Throws as gmm_m_step does when the total responsibility is unusable.
void check_total_responsibility(double total) {
    FAISS_THROW_IF_NOT_FMT(
        total > 0 && std::isfinite(total),
        "device M-step: total responsibility %g (no points?)",
        total);
}

float min_value(const std::vector<float>& v) {
    return v.empty() ? 0.0f : *std::min_element(v.begin(), v.end());
}

} // namespace

int GpuEStep::device_m_step(
    GaussianMixture* model, const GmmParameters& params) {
    Impl& im = *impl_;
    FAISS_THROW_IF_NOT_MSG(model, "GpuEStep::device_m_step: model is null");
    const bool diagonal = model->covariance == CovarianceType::Diagonal;
    FAISS_THROW_IF_NOT_FMT(
        model->d == im.d && model->k == im.model_k &&
            diagonal == im.model_diagonal &&
            (model->covariance == CovarianceType::TiedSpherical) ==
                im.model_tied,
        "GpuEStep::device_m_step: model (d=%d, k=%d, %s) is not the one of "
        "the last launch (d=%d, k=%d)",
        model->d,
        model->k,
        covariance_type_name(model->covariance),
        im.d,
        im.model_k);
    DeviceScope guard(im.config.device, kOwner);
    const kn::MStepSummary summary =
        im.m_step(model->variance_floor, params.min_component_count);
    check_total_responsibility(summary.total_count);
    if (summary.dead_components > 0) {
        return summary.dead_components;
    }
    im.download_model(1 - im.current, model);
    return 0;
}

void run_em_on_device(
    GaussianMixture* model,
    GpuEStep* estep,
    const GmmParameters& params,
    std::vector<double>* estep_kernel_ms) {
    FAISS_THROW_IF_NOT_MSG(model, "run_em_on_device: model is null");
    FAISS_THROW_IF_NOT_MSG(estep, "run_em_on_device: estep is null");
    EmProgress progress(params);
    model->check_consistency();
    model->iteration_stats.clear();
    if (estep_kernel_ms) {
        estep_kernel_ms->clear();
    }
    GpuEStep::Impl& im = *estep->impl_;
    FAISS_THROW_IF_NOT_FMT(
        model->d == im.d,
        "run_em_on_device: GpuEStep built for d = %d, model has d = %d",
        im.d,
        model->d);
    if (params.niter == 0) {
        model->is_trained = true;
        return;
    }
    DeviceScope guard(im.config.device, kOwner);
    im.allocate_model(*model);
    // The centre: this model's mixture mean, then fixed. After an M-step the
    // mixture mean is the data mean, so it barely moves, and the statistics
    // are exact about any centre (it only shrinks the operands).
    im.upload_model(*model, true);
    GmmSufficientStats stats(model->d, model->k, model->covariance);
    for (int it = 0; it < params.niter; it++) {
        const double t0 = faiss::getmillisecs();
        im.launch_start_ms = t0;
        im.prepare_model();
        const idx_t seen = im.run_timed();
        if (seen <= 0) {
            im.download_model(im.current, model);
            FAISS_THROW_FMT("EM iteration %d: the E-step saw no points", it);
        }
        const kn::MStepSummary summary =
            im.m_step(model->variance_floor, params.min_component_count);
        const double kernel_ms = im.read_kernel_ms();
        if (estep_kernel_ms) {
            estep_kernel_ms->push_back(kernel_ms);
        }
        GmmIterationStats is;
        is.iteration = it;
        is.log_likelihood = summary.log_likelihood / seen;
        if (!std::isfinite(is.log_likelihood)) {
            im.download_model(im.current, model);
            FAISS_THROW_FMT(
                "EM iteration %d: mean log-likelihood is %g",
                it,
                is.log_likelihood);
        }
        if (!(summary.total_count > 0 && std::isfinite(summary.total_count))) {
            im.download_model(im.current, model);
            check_total_responsibility(summary.total_count);
        }
        if (summary.dead_components == 0) {
            im.current = 1 - im.current;
            is.min_weight = summary.min_weight;
            is.min_variance = summary.min_variance;
        } else {
            // Rare: re-seeding splits the heaviest component with the
            // shared host code (and its random stream).
            im.download_model(im.current, model);
            stats.reset();
            estep->download(*model, seen, &stats);
            is.n_reseeded = gmm_m_step(model, stats, params, it);
            is.min_weight = min_value(model->weights);
            is.min_variance = min_value(model->variances);
            im.upload_model(*model, false);
        }
        is.time_s = (faiss::getmillisecs() - t0) / 1000;
        im.last_compute_ms = faiss::getmillisecs() - t0;
        if (progress.finish_iteration(model, is)) {
            break;
        }
    }
    im.download_model(im.current, model);
    model->is_trained = true;
}

size_t GpuEStep::device_bytes() const {
    return impl_->device_bytes;
}

bool GpuEStep::is_streaming() const {
    return impl_->source == Impl::Source::HostStream ||
           impl_->source == Impl::Source::Callback;
}

idx_t GpuEStep::chunk_rows() const {
    return impl_->chunk;
}

double GpuEStep::last_kernel_ms() const {
    return impl_->last_kernel_ms;
}

double GpuEStep::last_compute_ms() const {
    return impl_->last_compute_ms;
}

/*********************************************************************
 * Trainers
 *********************************************************************/

namespace {

void check_train_args(
    const GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params) {
    FAISS_THROW_IF_NOT_MSG(model, "train_gmm_gpu: model is null");
    FAISS_THROW_IF_NOT_FMT(model->d >= 1, "GMM dimension d = %d < 1", model->d);
    FAISS_THROW_IF_NOT_FMT(
        model->k >= 1, "GMM component count k = %d < 1", model->k);
    FAISS_THROW_IF_NOT_FMT(
        n >= model->k,
        "GMM training needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(n),
        model->k);
    FAISS_THROW_IF_NOT_MSG(x, "train_gmm_gpu: x is null");
    FAISS_THROW_IF_NOT_FMT(
        params.covariance == model->covariance,
        "train_gmm_gpu: parameters ask for %s covariance, the model is %s",
        covariance_type_name(params.covariance),
        covariance_type_name(model->covariance));
}

void check_finite_rows(idx_t n, int d, const float* x) {
    const size_t total = size_t(n) * d;
    bool ok = true;
#pragma omp parallel for reduction(&& : ok)
    for (size_t i = 0; i < total; i++) {
        ok = ok && std::isfinite(x[i]);
    }
    FAISS_THROW_IF_NOT_MSG(ok, "GMM training data contain NaN or Inf");
}

} // namespace

void train_gmm_gpu(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    const GpuEmConfig& config) {
    check_train_args(model, n, x, params);
    FAISS_THROW_IF_NOT_FMT(
        gpu_is_available(config.device),
        "train_gmm_gpu: CUDA device %d is not usable",
        config.device);
    check_finite_rows(n, model->d, x);
    std::vector<float> sample;
    const idx_t n_train =
        subsample_training_set(model->d, model->k, n, x, params, &sample);
    const float* x_train = sample.empty() ? x : sample.data();
    {
        GpuIndexFlatL2 assign_index(model->d, config.device);
        initialize_gmm(model, n_train, x_train, params, &assign_index);
    }
    GpuEStep estep(n_train, x_train, model->d, false, config);
    run_em_on_device(model, &estep, params);
}

void train_gmm_gpu_device(
    GaussianMixture* model,
    idx_t n,
    const float* x_device,
    const GmmParameters& params,
    const GpuEmConfig& config) {
    check_train_args(model, n, x_device, params);
    FAISS_THROW_IF_NOT_FMT(
        gpu_is_available(config.device),
        "train_gmm_gpu_device: CUDA device %d is not usable",
        config.device);
    const int d = model->d;
    idx_t n_train = n;
    const idx_t max_points = idx_t(model->k) * params.max_points_per_component;
    std::vector<float> host_sample;
    size_t ignored = 0;
    DeviceBuffer rows_dev, sample_dev;
    const float* x_train_dev = x_device;
    {
        DeviceScope guard(config.device, kOwner);
        if (params.max_points_per_component > 0 && n > max_points) {
            // Floyd's algorithm: max_points distinct rows, sorted.
            std::mt19937_64 rng(uint64_t(params.seed) ^ 0x9e3779b97f4a7c15ULL);
            std::unordered_set<idx_t> chosen;
            chosen.reserve(size_t(max_points) * 2);
            for (idx_t j = n - max_points; j < n; j++) {
                const idx_t t = idx_t(rng() % uint64_t(j + 1));
                if (!chosen.insert(t).second) {
                    chosen.insert(j);
                }
            }
            std::vector<int64_t> rows(chosen.begin(), chosen.end());
            std::sort(rows.begin(), rows.end());
            rows_dev.allocate(
                rows.size() * 8, "the sample row indices", &ignored);
            sample_dev.allocate(
                size_t(max_points) * d * 4, "the training sample", &ignored);
            check_cuda(
                cudaMemcpy(
                    rows_dev.as<void>(),
                    rows.data(),
                    rows.size() * 8,
                    cudaMemcpyHostToDevice),
                "uploading the sample row indices");
            check_cuda(
                kn::gather_rows(
                    max_points,
                    rows_dev.as<int64_t>(),
                    d,
                    x_device,
                    sample_dev.as<float>(),
                    nullptr),
                "gathering the training sample");
            n_train = max_points;
            x_train_dev = sample_dev.as<const float>();
        }
        host_sample.resize(size_t(n_train) * d);
        check_cuda(
            cudaMemcpy(
                host_sample.data(),
                x_train_dev,
                host_sample.size() * 4,
                cudaMemcpyDeviceToHost),
            "copying the training sample to the host");
    }
    check_finite_rows(n_train, d, host_sample.data());
    {
        GpuIndexFlatL2 assign_index(d, config.device);
        initialize_gmm(
            model, n_train, host_sample.data(), params, &assign_index);
    }
    GpuEStep estep(n_train, x_train_dev, d, true, config);
    run_em_on_device(model, &estep, params);
}

void train_gmm_gpu_streaming(
    GaussianMixture* model,
    int d,
    GpuChunkSource* source,
    const GmmParameters& params,
    const GpuEmConfig& config) {
    FAISS_THROW_IF_NOT_MSG(
        source, "train_gmm_gpu_streaming: chunk source is null");
    FAISS_THROW_IF_NOT_MSG(model, "train_gmm_gpu: model is null");
    FAISS_THROW_IF_NOT_FMT(
        model->d == d,
        "train_gmm_gpu: model d = %d, source d = %d",
        model->d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        gpu_is_available(config.device),
        "train_gmm_gpu: CUDA device %d is not usable",
        config.device);
    const idx_t n = source->total_rows();
    const int k = model->k;
    const idx_t cap = params.max_points_per_component > 0
                          ? idx_t(k) * params.max_points_per_component
                          : idx_t(k) * 256;
    const idx_t m = std::min(n, cap);
    // One pass: seeded reservoir sample of m rows (algorithm R).
    std::vector<float> sample(size_t(m) * d);
    std::mt19937_64 rng(uint64_t(params.seed) ^ 0x2545f4914f6cdd1dULL);
    const idx_t block = 65536;
    std::vector<float> buf(size_t(block) * d);
    source->rewind();
    idx_t seen = 0;
    for (;;) {
        const idx_t got = source->next(block, buf.data());
        FAISS_THROW_IF_NOT_FMT(
            got >= 0 && got <= block,
            "GpuChunkSource::next returned %" PRId64
            " rows for at most %" PRId64,
            int64_t(got),
            int64_t(block));
        if (got == 0) {
            break;
        }
        check_finite_rows(got, d, buf.data());
        for (idx_t i = 0; i < got; i++, seen++) {
            idx_t slot = seen;
            if (seen >= m) {
                slot = idx_t(rng() % uint64_t(seen + 1));
            }
            if (slot < m) {
                std::memcpy(
                    sample.data() + size_t(slot) * d,
                    buf.data() + size_t(i) * d,
                    size_t(d) * 4);
            }
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        seen == n,
        "GpuChunkSource delivered %" PRId64 " rows, total_rows() says %" PRId64,
        int64_t(seen),
        int64_t(n));
    FAISS_THROW_IF_NOT_FMT(
        m >= k,
        "GMM training needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(m),
        k);
    {
        GpuIndexFlatL2 assign_index(d, config.device);
        initialize_gmm(model, m, sample.data(), params, &assign_index);
    }
    if (m < n) {
        GpuEStep estep(m, sample.data(), d, false, config);
        run_em_on_device(model, &estep, params);
    } else {
        GpuEStep estep(source, d, config);
        run_em_on_device(model, &estep, params);
    }
}

} // namespace gpu
} // namespace faiss_gmm
