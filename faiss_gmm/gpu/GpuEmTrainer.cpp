#include <faiss_gmm/gpu/GpuEmTrainer.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <unordered_set>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuEStepImpl.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_gemm.h>
#include <kernels/gmm_estep_sm90.h>
#include <kernels/gmm_mstep.h>

namespace faiss_gmm {
namespace gpu {

using namespace detail;
namespace kn = faiss_gmm::kernels;

namespace {

/// The statistics download loops over the model (K x D values) on OpenMP
/// threads only above this many values: below it, waking the threads costs
/// more than the loop (bench_em on an H100 host, 1M x 128, K = 1024: an EM
/// iteration took 1.4-2.6x the bf16 E-step with 16 threads, 1.2-1.4x with 1).
constexpr size_t kParallelModelValues = size_t(1) << 21;

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
    DeviceScope guard(config.device, kEStepOwner);
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
    DeviceScope guard(config.device, kEStepOwner);
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
    DeviceScope guard(im.config.device, kEStepOwner);
    im.launch_start_ms = faiss::getmillisecs();
    if (model.covariance == CovarianceType::Full) {
        im.allocate_full(model);
        im.upload_full_model(model, true);
        im.prepare_full_model();
        im.full_seen = im.run_timed();
        return im.full_seen;
    }
    im.allocate_model(model);
    im.upload_model(model, true);
    im.prepare_model();
    return im.run_timed();
}

GpuEStep::DeviceStatistics GpuEStep::device_statistics() const {
    const Impl& im = *impl_;
    DeviceStatistics ds;
    if (im.model_full) {
        // One accumulator holds every full-covariance statistic (sum r x',
        // N_k, the whitened second moments: kernels/gmm_estep_full.h);
        // it is exposed whole as `count`, sum1 and sum2 are empty.
        ds.count = im.full_acc.as<double>();
        ds.count_size = im.full_acc.bytes() / sizeof(double);
        ds.sum1 = im.full_acc.as<double>();
        ds.sum2 = im.full_acc.as<double>();
        ds.log_likelihood = im.full_ll.as<double>();
        ds.stream = static_cast<void*>(im.compute_stream.get());
        return ds;
    }
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
    if (model.covariance == CovarianceType::Full || im.model_full) {
        DeviceScope guard(im.config.device, kEStepOwner);
        im.download_full(model, seen, stats);
        im.last_compute_ms = faiss::getmillisecs() - im.launch_start_ms;
        return;
    }
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
    DeviceScope guard(im.config.device, kEStepOwner);
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
    if (model->covariance == CovarianceType::Full || im.model_full) {
        // The full-covariance M-step runs on the host (gmm_m_step; see
        // impl/GpuEStepFull.cpp for why) on the downloaded statistics.
        GmmSufficientStats stats(model->d, model->k, model->covariance);
        download(*model, im.full_seen, &stats);
        check_total_responsibility(
            std::accumulate(stats.count.begin(), stats.count.end(), 0.0));
        GaussianMixture next = *model;
        const int reseeded = gmm_m_step(&next, stats, params, 0);
        if (reseeded > 0) {
            return reseeded;
        }
        *model = std::move(next);
        return 0;
    }
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
    DeviceScope guard(im.config.device, kEStepOwner);
    const kn::MStepSummary summary =
        im.m_step(model->variance_floor, params.min_component_count);
    check_total_responsibility(summary.total_count);
    if (summary.dead_components > 0) {
        return summary.dead_components;
    }
    im.download_model(1 - im.current, model);
    return 0;
}

void GpuEStep::Impl::run_full_em(
    GaussianMixture* model,
    const GmmParameters& params,
    EmProgress& progress,
    std::vector<double>* estep_kernel_ms) {
    Impl& im = *this;
    im.allocate_full(*model);
    // The centre: the initial model's mixture mean, then fixed (as in the
    // device loop of the other covariances).
    im.upload_full_model(*model, true);
    GmmSufficientStats stats(model->d, model->k, model->covariance);
    for (int it = 0; it < params.niter; it++) {
        const double t0 = faiss::getmillisecs();
        im.launch_start_ms = t0;
        if (it > 0) {
            im.upload_full_model(*model, false);
        }
        im.prepare_full_model();
        const idx_t seen = im.run_timed();
        im.full_seen = seen;
        FAISS_THROW_IF_NOT_FMT(
            seen > 0, "EM iteration %d: the E-step saw no points", it);
        stats.reset();
        im.download_full(*model, seen, &stats);
        if (estep_kernel_ms) {
            estep_kernel_ms->push_back(im.last_kernel_ms);
        }
        GmmIterationStats is;
        is.iteration = it;
        is.log_likelihood = stats.log_likelihood / seen;
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(is.log_likelihood),
            "EM iteration %d: mean log-likelihood is %g",
            it,
            is.log_likelihood);
        // The host M-step (covariances, floor, Cholesky factors, re-seeding)
        // shared with the CPU trainer.
        is.n_reseeded = gmm_m_step(model, stats, params, it);
        is.min_weight = min_value(model->weights);
        is.min_variance = min_value(model->variances);
        is.time_s = (faiss::getmillisecs() - t0) / 1000;
        im.last_compute_ms = faiss::getmillisecs() - t0;
        if (progress.finish_iteration(model, is)) {
            break;
        }
    }
    model->is_trained = true;
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
    DeviceScope guard(im.config.device, kEStepOwner);
    if (model->covariance == CovarianceType::Full) {
        im.run_full_em(model, params, progress, estep_kernel_ms);
        return;
    }
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
        DeviceScope guard(config.device, kEStepOwner);
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
