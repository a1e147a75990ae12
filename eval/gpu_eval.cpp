#include <eval/gpu_eval.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include <cuda_runtime.h>

#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuCloner.h>
#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

namespace faiss_gmm {
namespace eval {

namespace {

class GpuIndexHolder : public GpuEvalIndex {
   public:
    explicit GpuIndexHolder(faiss::Index* index) : index_(index) {
        ivf_ = gpu::try_extract_gpu_index_ivfgmm(index);
        FAISS_THROW_IF_NOT_MSG(ivf_, "GPU evaluation: no GpuIndexIVFGMM");
    }

    faiss::Index* index() override {
        return index_.get();
    }

    void set_search(int64_t nprobe, float posterior_mass) override {
        ivf_->nprobe = size_t(nprobe);
        ivf_->search_options.posterior_mass = posterior_mass;
    }

    void fill_storage_figures(IndexResult* result) const override {
        result->ntotal = index_->ntotal;
        double sum = 0, sum_sq = 0;
        for (size_t l = 0; l < ivf_->nlist; l++) {
            const double s = double(ivf_->list_length(idx_t(l)));
            sum += s;
            sum_sq += s * s;
        }
        result->nentries = int64_t(sum);
        result->imbalance =
            sum > 0 ? double(ivf_->nlist) * sum_sq / (sum * sum) : 1;
        result->list_bytes =
            result->nentries *
            int64_t(
                size_t(ivf_->d) * sizeof(float) + sizeof(idx_t) +
                size_t(ivf_->other_lists_width()) * sizeof(int32_t));
        result->replication = ivf_->replication_factor();
    }

    const GaussianMixture& gmm() const override {
        return ivf_->gmm;
    }

   private:
    std::unique_ptr<faiss::Index> index_;
    gpu::GpuIndexIVFGMM* ivf_ = nullptr;
};

gpu::GpuIndexIVFGMMConfig make_config(int device, bool verbose) {
    gpu::GpuIndexIVFGMMConfig config;
    config.device = device;
    config.verbose = verbose;
    return config;
}

} // namespace

bool gpu_eval_built() {
    return true;
}

std::string check_gpu_usable(int device) {
    FAISS_THROW_IF_NOT_FMT(
        gpu::gpu_is_available(device),
        "--gpu: CUDA device %d is not usable (no such device, or no "
        "working driver)",
        device);
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    FAISS_THROW_IF_NOT_FMT(
        err == cudaSuccess,
        "--gpu: reading the properties of CUDA device %d: %s",
        device,
        cudaGetErrorString(err));
    char line[512];
    snprintf(
        line,
        sizeof(line),
        "device %d: %s, %d SMs, %.1f GB",
        device,
        prop.name,
        prop.multiProcessorCount,
        prop.totalGlobalMem / 1e9);
    return line;
}

int64_t gpu_max_search_k() {
    return gpu::GpuIndexIVFGMM::max_search_k();
}

std::unique_ptr<faiss::Index>
make_kmeans_assigner(int d, bool use_gpu, int device) {
    if (use_gpu) {
        return std::make_unique<gpu::GpuIndexFlatL2>(d, device);
    }
    return std::make_unique<faiss::IndexFlatL2>(d);
}

std::unique_ptr<GpuEvalIndex>
gpu_copy_of_chain(const faiss::Index& cpu_chain, int device, bool verbose) {
    return std::make_unique<GpuIndexHolder>(
        gpu::index_cpu_to_gpu(&cpu_chain, make_config(device, verbose)));
}

std::unique_ptr<GpuEvalIndex> gpu_kmeans_lists(
    const faiss::IndexIVF& ivf,
    const GaussianMixture& centroids_as_gmm,
    int device,
    bool verbose) {
    IVFGMMBuildParameters params;
    params.spill.rule = SpillRule::None;
    params.spill.max_assign = 1;
    params.spill.primary_is_nearest_mean = true;
    IndexIVFGMM lists(ivf.d, ivf.nlist, params);
    // FAISS's IVF search: L2 probe order, no list pruning
    lists.search_options = IVFGMMSearchOptions();
    lists.search_options.probe_order = ProbeOrder::L2;
    lists.search_options.prune_margin = 0;
    lists.search_options.min_expected_hits = 0;
    lists.set_gmm(centroids_as_gmm);
    return std::make_unique<GpuIndexHolder>(
        new gpu::GpuIndexIVFGMM(&lists, make_config(device, verbose)));
}

} // namespace eval
} // namespace faiss_gmm
