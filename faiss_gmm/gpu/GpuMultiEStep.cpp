#include <faiss_gmm/gpu/GpuMultiEStep.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <thread>

#include <cuda_runtime.h>
#ifdef FAISS_GMM_WITH_NCCL
#include <nccl.h>
#endif

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>

namespace faiss_gmm {
namespace gpu {

namespace {

void check_cuda(cudaError_t err, const char* what) {
    throw_on_cuda_error(err, what, "multi-GPU E-step");
}

#ifdef FAISS_GMM_WITH_NCCL
void check_nccl(ncclResult_t result, const char* what) {
    if (result != ncclSuccess) {
        FAISS_THROW_FMT(
            "multi-GPU E-step: %s failed: %s",
            what,
            ncclGetErrorString(result));
    }
}
#endif

/// Runs fn(g) for g in [0, count), each on its own host thread (kernels of
/// all devices then run concurrently, streamed copies included), and
/// rethrows the exception of the lowest failing g once all are done.
template <class F>
void on_every_device(int count, const F& fn) {
    std::vector<std::exception_ptr> errors(count);
    std::vector<std::thread> threads;
    threads.reserve(count);
    for (int g = 0; g < count; g++) {
        threads.emplace_back([&fn, &errors, g] {
            try {
                fn(g);
            } catch (...) {
                errors[g] = std::current_exception();
            }
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    for (const std::exception_ptr& e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
}

/// Restores the caller's current device on scope exit.
class CurrentDeviceRestorer {
   public:
    CurrentDeviceRestorer() {
        check_cuda(cudaGetDevice(&previous_), "querying the current device");
    }
    ~CurrentDeviceRestorer() {
        cudaSetDevice(previous_);
    }

   private:
    int previous_ = 0;
};

} // namespace

int gpu_device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

std::vector<int> parse_device_list(const std::string& list) {
    std::vector<int> devices;
    std::set<int> seen;
    size_t pos = 0;
    while (pos <= list.size()) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        const std::string token = list.substr(pos, comma - pos);
        FAISS_THROW_IF_NOT_FMT(
            !token.empty() && token.size() <= 6 &&
                token.find_first_not_of("0123456789") == std::string::npos,
            "device list '%s': '%s' is not a device ordinal",
            list.c_str(),
            token.c_str());
        const int device = std::stoi(token);
        FAISS_THROW_IF_NOT_FMT(
            seen.insert(device).second,
            "device list '%s' names device %d twice",
            list.c_str(),
            device);
        devices.push_back(device);
        pos = comma + 1;
    }
    return devices;
}

bool multi_gpu_has_nccl() {
#ifdef FAISS_GMM_WITH_NCCL
    return true;
#else
    return false;
#endif
}

/*********************************************************************
 * GpuMultiEStep
 *********************************************************************/

struct GpuMultiEStep::Impl {
    std::vector<int> devices;
    std::vector<idx_t> rows; // per device
    std::vector<std::unique_ptr<GpuEStep>> steps;
#ifdef FAISS_GMM_WITH_NCCL
    std::vector<ncclComm_t> comms;
#endif
    double last_compute_ms = 0;
    double last_reduce_ms = 0;

    ~Impl() {
#ifdef FAISS_GMM_WITH_NCCL
        for (ncclComm_t comm : comms) {
            if (comm) {
                ncclCommDestroy(comm);
            }
        }
#endif
    }
};

GpuMultiEStep::GpuMultiEStep(
    idx_t n,
    const float* x,
    int d,
    const std::vector<int>& devices,
    const GpuEmConfig& config)
    : impl_(std::make_unique<Impl>()) {
    const int G = int(devices.size());
    FAISS_THROW_IF_NOT_MSG(G >= 1, "GpuMultiEStep: empty device list");
    FAISS_THROW_IF_NOT_FMT(
        d >= 1 && d <= 4096, "GpuMultiEStep: d = %d out of 1..4096", d);
    FAISS_THROW_IF_NOT_FMT(
        n >= G,
        "GpuMultiEStep: %" PRId64 " rows for %d devices (need >= 1 each)",
        int64_t(n),
        G);
    FAISS_THROW_IF_NOT_MSG(x, "GpuMultiEStep: x is null");
    std::set<int> distinct(devices.begin(), devices.end());
    FAISS_THROW_IF_NOT_FMT(
        int(distinct.size()) == G,
        "GpuMultiEStep: a device is listed twice among %d devices",
        G);
    for (int device : devices) {
        FAISS_THROW_IF_NOT_FMT(
            gpu_is_available(device),
            "GpuMultiEStep: CUDA device %d is not usable (%d devices "
            "visible)",
            device,
            gpu_device_count());
    }
#ifndef FAISS_GMM_WITH_NCCL
    FAISS_THROW_IF_NOT_FMT(
        G == 1,
        "GpuMultiEStep: %d devices need NCCL to sum their statistics, and "
        "faiss_gmm was built without NCCL (nccl.h / libnccl not found in "
        "the CUDA toolkit)",
        G);
#endif
    Impl& im = *impl_;
    im.devices = devices;
    im.rows.resize(G);
    im.steps.resize(G);
    std::vector<idx_t> begin(G);
    const idx_t base = n / G, extra = n % G;
    for (int g = 0; g < G; g++) {
        begin[g] = g * base + std::min<idx_t>(g, extra);
        im.rows[g] = base + (g < extra ? 1 : 0);
    }
    CurrentDeviceRestorer restore;
    // Uploads to all devices at once.
    on_every_device(G, [&](int g) {
        GpuEmConfig cfg = config;
        cfg.device = devices[g];
        im.steps[g] = std::make_unique<GpuEStep>(
            im.rows[g], x + size_t(begin[g]) * d, d, false, cfg);
    });
#ifdef FAISS_GMM_WITH_NCCL
    // Never NVLink multicast (see the header).
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    im.comms.assign(G, nullptr);
    check_nccl(
        ncclCommInitAll(im.comms.data(), G, devices.data()),
        "creating the NCCL communicators (ncclCommInitAll)");
#endif
}

GpuMultiEStep::~GpuMultiEStep() = default;

void GpuMultiEStep::compute(
    const GaussianMixture& model, GmmSufficientStats* stats) {
    FAISS_THROW_IF_NOT_MSG(stats, "GpuMultiEStep: stats is null");
    stats->check_shaped_for(model, "GpuMultiEStep");
    Impl& im = *impl_;
    const int G = int(im.devices.size());
    CurrentDeviceRestorer restore;
    const double t0 = faiss::getmillisecs();
    std::vector<idx_t> seen(G, 0);
    on_every_device(G, [&](int g) { seen[g] = im.steps[g]->launch(model); });
    const double t1 = faiss::getmillisecs();
    idx_t total = 0;
    for (idx_t s : seen) {
        total += s;
    }
#ifdef FAISS_GMM_WITH_NCCL
    {
        const GpuEStep::DeviceStatistics first =
            im.steps[0]->device_statistics();
        check_nccl(ncclGroupStart(), "ncclGroupStart");
        for (int g = 0; g < G; g++) {
            const GpuEStep::DeviceStatistics ds =
                im.steps[g]->device_statistics();
            FAISS_THROW_IF_NOT_FMT(
                ds.count_size == first.count_size &&
                    ds.sum1_size == first.sum1_size &&
                    ds.sum2_size == first.sum2_size,
                "GpuMultiEStep: device %d's statistics are shaped unlike "
                "device %d's",
                im.devices[g],
                im.devices[0]);
            cudaStream_t s = static_cast<cudaStream_t>(ds.stream);
            // In place: every device ends with the sum.
            check_nccl(
                ncclAllReduce(
                    ds.count,
                    ds.count,
                    ds.count_size,
                    ncclDouble,
                    ncclSum,
                    im.comms[g],
                    s),
                "all-reducing N_k (ncclAllReduce)");
            // A full model's statistics are all in `count` (sum1 and sum2
            // are empty, the same on every device): no empty reductions.
            if (ds.sum1_size > 0) {
                check_nccl(
                    ncclAllReduce(
                        ds.sum1,
                        ds.sum1,
                        ds.sum1_size,
                        ncclDouble,
                        ncclSum,
                        im.comms[g],
                        s),
                    "all-reducing sum r x (ncclAllReduce)");
            }
            if (ds.sum2_size > 0) {
                check_nccl(
                    ncclAllReduce(
                        ds.sum2,
                        ds.sum2,
                        ds.sum2_size,
                        ncclDouble,
                        ncclSum,
                        im.comms[g],
                        s),
                    "all-reducing the second moments (ncclAllReduce)");
            }
            check_nccl(
                ncclAllReduce(
                    ds.log_likelihood,
                    ds.log_likelihood,
                    1,
                    ncclDouble,
                    ncclSum,
                    im.comms[g],
                    s),
                "all-reducing the log-likelihood (ncclAllReduce)");
        }
        check_nccl(ncclGroupEnd(), "ncclGroupEnd");
        // Wait for every device (so that an error of any surfaces here).
        for (int g = 0; g < G; g++) {
            check_cuda(cudaSetDevice(im.devices[g]), "selecting a device");
            check_cuda(
                cudaStreamSynchronize(static_cast<cudaStream_t>(
                    im.steps[g]->device_statistics().stream)),
                "running the E-step and the all-reduce");
        }
    }
#endif
    im.last_reduce_ms = faiss::getmillisecs() - t1;
    im.steps[0]->download(model, total, stats);
    im.last_compute_ms = faiss::getmillisecs() - t0;
}

int GpuMultiEStep::num_devices() const {
    return int(impl_->devices.size());
}

const GpuEStep& GpuMultiEStep::shard(int g) const {
    FAISS_THROW_IF_NOT_FMT(
        g >= 0 && g < num_devices(),
        "GpuMultiEStep::shard(%d) out of 0..%d",
        g,
        num_devices() - 1);
    return *impl_->steps[g];
}

idx_t GpuMultiEStep::shard_rows(int g) const {
    FAISS_THROW_IF_NOT_FMT(
        g >= 0 && g < num_devices(),
        "GpuMultiEStep::shard_rows(%d) out of 0..%d",
        g,
        num_devices() - 1);
    return impl_->rows[g];
}

double GpuMultiEStep::last_compute_ms() const {
    return impl_->last_compute_ms;
}

double GpuMultiEStep::last_reduce_ms() const {
    return impl_->last_reduce_ms;
}

/*********************************************************************
 * train_gmm_multi_gpu
 *********************************************************************/

void train_gmm_multi_gpu(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    const std::vector<int>& devices,
    const GpuEmConfig& config) {
    FAISS_THROW_IF_NOT_MSG(model, "train_gmm_multi_gpu: model is null");
    FAISS_THROW_IF_NOT_MSG(
        !devices.empty(), "train_gmm_multi_gpu: empty device list");
    const int d = model->d, k = model->k;
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    FAISS_THROW_IF_NOT_FMT(
        n >= k,
        "GMM training needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(n),
        k);
    FAISS_THROW_IF_NOT_MSG(x, "train_gmm_multi_gpu: x is null");
    for (int device : devices) {
        FAISS_THROW_IF_NOT_FMT(
            gpu_is_available(device),
            "train_gmm_multi_gpu: CUDA device %d is not usable (%d devices "
            "visible)",
            device,
            gpu_device_count());
    }
    FAISS_THROW_IF_NOT_FMT(
        params.covariance == model->covariance,
        "train_gmm_multi_gpu: parameters ask for %s covariance, the model "
        "is %s",
        covariance_type_name(params.covariance),
        covariance_type_name(model->covariance));
    const size_t total = size_t(n) * d;
    bool finite = true;
#pragma omp parallel for reduction(&& : finite)
    for (size_t i = 0; i < total; i++) {
        finite = finite && std::isfinite(x[i]);
    }
    FAISS_THROW_IF_NOT_MSG(finite, "GMM training data contain NaN or Inf");
    std::vector<float> sample;
    const idx_t n_train = subsample_training_set(d, k, n, x, params, &sample);
    const float* x_train = sample.empty() ? x : sample.data();
    {
        GpuIndexFlatL2 assign_index(d, devices[0]);
        initialize_gmm(model, n_train, x_train, params, &assign_index);
    }
    const double t0 = faiss::getmillisecs();
    GpuMultiEStep estep(n_train, x_train, d, devices, config);
    if (params.verbose) {
        printf(
            "GMM multi-GPU: %" PRId64 " rows over %d device(s) (",
            int64_t(n_train),
            estep.num_devices());
        for (int g = 0; g < estep.num_devices(); g++) {
            printf(
                "%s%d: %" PRId64,
                g ? ", " : "",
                devices[g],
                int64_t(estep.shard_rows(g)));
        }
        printf(
            "), statistics summed by %s, set up in %.2f s\n",
            multi_gpu_has_nccl() ? "NCCL all-reduce" : "none (one device)",
            (faiss::getmillisecs() - t0) / 1000);
    }
    run_em(model, &estep, params);
}

} // namespace gpu
} // namespace faiss_gmm
