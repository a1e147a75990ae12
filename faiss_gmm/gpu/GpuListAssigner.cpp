#include <faiss_gmm/gpu/GpuListAssigner.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <mutex>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuListAssignment.h>
#include <faiss_gmm/gpu/impl/GpuModel.h>
#include <kernels/ivf_assign.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

namespace {

constexpr const char* kOwner = "GpuListAssigner";

void check_cuda(cudaError_t err, const char* what) {
    throw_on_cuda_error(err, what, kOwner);
}

/// The parameters of the model that the device copy depends on.
bool same_model(const GaussianMixture& a, const GaussianMixture& b) {
    return a.d == b.d && a.k == b.k && a.covariance == b.covariance &&
           a.weights == b.weights && a.means == b.means &&
           a.variances == b.variances;
}

} // namespace

void GpuListAssignerConfig::check() const {
    FAISS_THROW_IF_NOT_FMT(
        device >= 0, "GpuListAssignerConfig: device=%d is negative", device);
    FAISS_THROW_IF_NOT_FMT(
        batch_size >= 1,
        "GpuListAssignerConfig: batch_size=%" PRId64 " must be >= 1",
        int64_t(batch_size));
    FAISS_THROW_IF_NOT_FMT(
        chunk_rows >= 1,
        "GpuListAssignerConfig: chunk_rows=%" PRId64 " must be >= 1",
        int64_t(chunk_rows));
}

struct GpuListAssigner::Impl {
    GpuListAssignerConfig config;
    std::mutex mutex;
    GpuListAssignerStats stats;
    // Device resources, created on the device in the constructor and
    // released on it in the destructor (release()).
    std::unique_ptr<GpuIndexContext> ctx; // its stream runs the kernel
    std::unique_ptr<ScopedStream> copy_stream;
    std::unique_ptr<ScopedEvent> copied[2];   // staging b copied to the device
    std::unique_ptr<ScopedEvent> consumed[2]; // kernel done reading chunk b
    GpuModel model;
    GaussianMixture uploaded; // host copy of the model on the device
    bool has_model = false;
    DeviceAllocation chunks;  // 2 x chunk_rows x d floats
    DeviceAllocation outputs; // the candidates of one batch
    PinnedAllocation staging; // 2 x chunk_rows x d floats
    PinnedAllocation results; // the candidates, downloaded

    explicit Impl(const GpuListAssignerConfig& cfg) : config(cfg) {
        config.check();
        FAISS_THROW_IF_NOT_FMT(
            gpu_is_available(config.device),
            "%s: CUDA device %d is not usable",
            kOwner,
            config.device);
        DeviceScope scope(config.device, kOwner);
        ctx = std::make_unique<GpuIndexContext>(config.device);
        copy_stream = std::make_unique<ScopedStream>(kOwner);
        for (int b = 0; b < 2; b++) {
            copied[b] = std::make_unique<ScopedEvent>(false, kOwner);
            consumed[b] = std::make_unique<ScopedEvent>(false, kOwner);
        }
    }

    ~Impl() {
        int previous = -1;
        const bool switched = cudaGetDevice(&previous) == cudaSuccess &&
                              previous != config.device &&
                              cudaSetDevice(config.device) == cudaSuccess;
        // Pending work (an assign() that threw part way) must not touch
        // what is freed below.
        if (ctx) {
            cudaStreamSynchronize(ctx->stream());
        }
        if (copy_stream) {
            cudaStreamSynchronize(copy_stream->get());
        }
        model.release();
        chunks.release();
        outputs.release();
        staging.release();
        results.release();
        for (int b = 0; b < 2; b++) {
            copied[b].reset();
            consumed[b].reset();
        }
        copy_stream.reset();
        ctx.reset();
        if (switched) {
            cudaSetDevice(previous);
        }
    }

    /// Upload gmm unless the device holds it already.
    void ensure_model(const GaussianMixture& gmm) {
        if (has_model && same_model(uploaded, gmm)) {
            return;
        }
        has_model = false;
        model.upload(gmm, *ctx);
        uploaded.d = gmm.d;
        uploaded.k = gmm.k;
        uploaded.covariance = gmm.covariance;
        uploaded.weights = gmm.weights;
        uploaded.means = gmm.means;
        uploaded.variances = gmm.variances;
        has_model = true;
    }

    /// The candidates of n host vectors on the device, then the rule.
    void assign_on_gpu(
        const GaussianMixture& gmm,
        const SpillParameters& spill,
        int top,
        bool log_joint,
        idx_t n,
        const float* x,
        idx_t* lists) {
        const int d = gmm.d;
        const idx_t chunk = std::min(n, config.chunk_rows);
        const size_t chunk_floats = size_t(chunk) * d;
        // Work a throwing call left queued must finish before buffers are
        // reused or reallocated (no-ops when the streams are idle).
        check_cuda(
            cudaStreamSynchronize(copy_stream->get()), "finishing copies");
        check_cuda(
            cudaStreamSynchronize(ctx->stream()), "finishing assignment");
        ensure_model(gmm);

        // device: two chunks of vectors, the batch's candidates
        chunks.reserve(2 * chunk_floats * sizeof(float), "vectors", kOwner);
        const kn::AssignOutput out = reserve_assign_output(
            outputs, n, top, log_joint, "the candidates", kOwner);
        // host: two pinned staging chunks, the downloaded candidates
        staging.reserve(
            2 * chunk_floats * sizeof(float), "staging vectors", kOwner);
        const size_t result_bytes =
            size_t(n) * top * 8 + (log_joint ? size_t(n) * 8 : 0);
        results.reserve(result_bytes, "the candidates", kOwner);
        int32_t* h_index = results.as<int32_t>();
        float* h_score = reinterpret_cast<float*>(h_index + size_t(n) * top);
        float* h_log_norm = log_joint ? h_score + size_t(n) * top : nullptr;
        int32_t* h_nearest =
            log_joint ? reinterpret_cast<int32_t*>(h_log_norm + n) : nullptr;

        const kn::AssignModel am = assign_model(gmm, model);
        const float temperature = assign_temperature(spill);
        const cudaStream_t compute = ctx->stream();
        const cudaStream_t copy = copy_stream->get();

        for (idx_t r0 = 0, c = 0; r0 < n; r0 += chunk, c++) {
            const int b = int(c % 2);
            const idx_t rows = std::min(chunk, n - r0);
            float* stage = staging.as<float>() + b * chunk_floats;
            float* xd = chunks.as<float>() + b * chunk_floats;
            // staging b is free once its last copy (chunk c - 2) is done;
            // device chunk b once the kernel of chunk c - 2 has read it
            check_cuda(
                cudaEventSynchronize(copied[b]->get()),
                "waiting for a staging buffer");
            std::memcpy(stage, x + int64_t(r0) * d, size_t(rows) * d * 4);
            check_cuda(
                cudaStreamWaitEvent(copy, consumed[b]->get(), 0),
                "ordering the copy after the kernel");
            check_cuda(
                cudaMemcpyAsync(
                    xd,
                    stage,
                    size_t(rows) * d * 4,
                    cudaMemcpyHostToDevice,
                    copy),
                "copying vectors to the device");
            check_cuda(
                cudaEventRecord(copied[b]->get(), copy), "recording a copy");
            check_cuda(
                cudaStreamWaitEvent(compute, copied[b]->get(), 0),
                "ordering the kernel after the copy");
            kn::AssignOutput part = out;
            part.top_index += size_t(r0) * top;
            part.top_score += size_t(r0) * top;
            if (log_joint) {
                part.log_norm += r0;
                part.nearest += r0;
            }
            check_cuda(
                kn::ivf_assign_top(
                    am,
                    log_joint ? kn::AssignScore::LogJoint : kn::AssignScore::L2,
                    int64_t(rows),
                    xd,
                    top,
                    temperature,
                    part,
                    compute),
                "launching the list assignment kernel");
            check_cuda(
                cudaEventRecord(consumed[b]->get(), compute),
                "recording a kernel");
        }
        ctx->download(
            h_index,
            out.top_index,
            size_t(n) * top * 4,
            "downloading the candidates");
        ctx->download(
            h_score,
            out.top_score,
            size_t(n) * top * 4,
            "downloading the candidates' scores");
        if (log_joint) {
            ctx->download(
                h_log_norm, out.log_norm, size_t(n) * 4, "downloading norms");
            ctx->download(
                h_nearest,
                out.nearest,
                size_t(n) * 4,
                "downloading the nearest means");
        }
        check_cuda(
            cudaStreamSynchronize(compute), "assigning lists on the GPU");
        TopCandidates candidates;
        candidates.top = top;
        candidates.index = h_index;
        candidates.score = h_score;
        candidates.log_norm = h_log_norm;
        candidates.nearest = h_nearest;
        lists_from_top_candidates(spill, n, candidates, lists);
    }
};

GpuListAssigner::GpuListAssigner(const GpuListAssignerConfig& config)
    : impl_(std::make_unique<Impl>(config)) {}

GpuListAssigner::~GpuListAssigner() = default;

void GpuListAssigner::assign(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SpillParameters& spill,
    idx_t n,
    const float* x,
    idx_t* lists) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "%s::assign: n=%" PRId64 " < 0", kOwner, int64_t(n));
    FAISS_THROW_IF_NOT_FMT(
        gmm.is_trained, "%s::assign: the model is not trained", kOwner);
    spill.check("GpuListAssigner::assign");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const double t0 = faiss::getmillisecs();
    bool log_joint = true;
    const int top = device_candidates(gmm, spill, &log_joint);
    if (top == 0) {
        assign_lists(gmm, quantizer, spill, n, x, lists);
        impl_->stats.cpu_vectors += n;
    } else if (n > 0) {
        DeviceScope scope(impl_->config.device, kOwner);
        impl_->assign_on_gpu(gmm, spill, top, log_joint, n, x, lists);
        impl_->stats.gpu_vectors += n;
    }
    impl_->stats.seconds += (faiss::getmillisecs() - t0) / 1000;
}

bool GpuListAssigner::overlaps_encoding(
    const GaussianMixture& gmm, const SpillParameters& spill) const {
    bool log_joint = true;
    return device_candidates(gmm, spill, &log_joint) > 0;
}

idx_t GpuListAssigner::batch_size() const {
    return impl_->config.batch_size;
}

std::string GpuListAssigner::name() const {
    return "GPU " + std::to_string(impl_->config.device);
}

GpuListAssignerStats GpuListAssigner::stats() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    GpuListAssignerStats s = impl_->stats;
    s.device_bytes = impl_->model.buffer.bytes() + impl_->chunks.bytes() +
                     impl_->outputs.bytes();
    s.pinned_bytes = impl_->staging.bytes() + impl_->results.bytes();
    return s;
}

void add_with_gpu_assignment(
    IndexIVFGMM& index,
    idx_t n,
    const float* x,
    const idx_t* xids,
    const GpuListAssignerConfig& config) {
    /// Puts the index's own assigner back, also when add_with_ids throws.
    struct Restore {
        IndexIVFGMM& index;
        std::shared_ptr<ListAssigner> previous;
        ~Restore() {
            index.set_assigner(std::move(previous));
        }
    } restore{index, index.get_assigner()};
    index.set_assigner(std::make_shared<GpuListAssigner>(config));
    index.add_with_ids(n, x, xids);
}

} // namespace gpu
} // namespace faiss_gmm
