#include <eval/gpu_eval.h>

#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

namespace {

[[noreturn]] void throw_no_gpu(int device) {
    FAISS_THROW_FMT(
        "--gpu: faiss_gmm was built without CUDA, so CUDA device %d cannot "
        "be used",
        device);
}

} // namespace

bool gpu_eval_built() {
    return false;
}

std::string check_gpu_usable(int device) {
    throw_no_gpu(device);
}

int64_t gpu_max_search_k() {
    return 0;
}

std::unique_ptr<faiss::Index>
make_kmeans_assigner(int d, bool use_gpu, int device) {
    if (use_gpu) {
        throw_no_gpu(device);
    }
    return std::make_unique<faiss::IndexFlatL2>(d);
}

std::unique_ptr<GpuEvalIndex>
gpu_copy_of_chain(const faiss::Index&, int device, bool) {
    throw_no_gpu(device);
}

std::unique_ptr<GpuEvalIndex> gpu_kmeans_lists(
    const faiss::IndexIVF&, const GaussianMixture&, int device, bool) {
    throw_no_gpu(device);
}

} // namespace eval
} // namespace faiss_gmm
