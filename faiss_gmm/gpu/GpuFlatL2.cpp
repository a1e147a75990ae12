#include <faiss_gmm/gpu/GpuFlatL2.h>

#include <algorithm>
#include <cinttypes>
#include <limits>
#include <vector>

#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <kernels/ivf_assign.h>

namespace faiss_gmm {
namespace gpu {

namespace {

/// Names the index in its CUDA errors.
constexpr const char* kOwner = "GpuIndexFlatL2";

/// Throws a FaissException naming what was being done when err is an error.
void check_cuda(cudaError_t err, const char* what) {
    throw_on_cuda_error(err, what, kOwner);
}

} // namespace

GpuIndexFlatL2::GpuIndexFlatL2(int d, int device)
    : faiss::Index(d, faiss::METRIC_L2), device_(device) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GpuIndexFlatL2: dimension d = %d < 1", d);
    int count = 0;
    check_cuda(cudaGetDeviceCount(&count), "counting CUDA devices");
    FAISS_THROW_IF_NOT_FMT(
        device >= 0 && device < count,
        "GpuIndexFlatL2: CUDA device %d does not exist (%d devices)",
        device,
        count);
    is_trained = true;
}

GpuIndexFlatL2::~GpuIndexFlatL2() {
    if (vectors_) {
        int previous = 0;
        const bool switched = cudaGetDevice(&previous) == cudaSuccess &&
                              cudaSetDevice(device_) == cudaSuccess;
        cudaFree(vectors_);
        if (switched) {
            cudaSetDevice(previous);
        }
        cudaGetLastError();
    }
}

void GpuIndexFlatL2::add(idx_t n, const float* x) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "GpuIndexFlatL2::add: n = %" PRId64 " < 0", int64_t(n));
    if (n == 0) {
        return;
    }
    FAISS_THROW_IF_NOT_MSG(x, "GpuIndexFlatL2::add: x is null");
    FAISS_THROW_IF_NOT_FMT(
        ntotal + n <= idx_t(std::numeric_limits<int32_t>::max()),
        "GpuIndexFlatL2::add: %" PRId64 " + %" PRId64
        " vectors exceed the kernel's int32 labels",
        int64_t(ntotal),
        int64_t(n));
    DeviceScope scope(device_, kOwner);
    const size_t row_bytes = size_t(d) * sizeof(float);
    if (ntotal + n > capacity_) {
        // Geometric growth: repeated small adds stay amortised O(1).
        const idx_t capacity = std::max(ntotal + n, 2 * capacity_);
        DeviceAllocation grown;
        grown.allocate(
            size_t(capacity) * row_bytes, "the stored vectors", kOwner);
        if (ntotal > 0) {
            check_cuda(
                cudaMemcpy(
                    grown.as<float>(),
                    vectors_,
                    size_t(ntotal) * row_bytes,
                    cudaMemcpyDeviceToDevice),
                "moving the stored vectors");
        }
        cudaFree(vectors_);
        vectors_ = static_cast<float*>(grown.detach());
        capacity_ = capacity;
    }
    check_cuda(
        cudaMemcpy(
            vectors_ + size_t(ntotal) * d,
            x,
            size_t(n) * row_bytes,
            cudaMemcpyHostToDevice),
        "uploading the added vectors");
    ntotal += n;
}

void GpuIndexFlatL2::reset() {
    ntotal = 0;
}

void GpuIndexFlatL2::search(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    const faiss::SearchParameters* params) const {
    FAISS_THROW_IF_NOT_MSG(
        !params, "GpuIndexFlatL2::search: search parameters unsupported");
    FAISS_THROW_IF_NOT_FMT(
        k >= 1 && k <= kernels::kAssignMaxTop,
        "GpuIndexFlatL2::search: k = %" PRId64
        " outside 1 .. %d (kernels::kAssignMaxTop)",
        int64_t(k),
        kernels::kAssignMaxTop);
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "GpuIndexFlatL2::search: n = %" PRId64 " < 0", int64_t(n));
    if (n == 0) {
        return;
    }
    FAISS_THROW_IF_NOT_MSG(
        x && distances && labels,
        "GpuIndexFlatL2::search: null query or output pointer");
    // Found neighbours per query; the rest of each row is padding.
    const int found = int(std::min<idx_t>(k, ntotal));
    if (found == 0) {
        std::fill(
            distances,
            distances + size_t(n) * k,
            std::numeric_limits<float>::max());
        std::fill(labels, labels + size_t(n) * k, idx_t(-1));
        return;
    }
    DeviceScope scope(device_, kOwner);
    const size_t row_bytes = size_t(d) * sizeof(float) +
                             size_t(found) * (sizeof(float) + sizeof(int32_t));
    const idx_t batch = std::min<idx_t>(
        n, std::max<idx_t>(1, idx_t(search_batch_bytes / row_bytes)));
    DeviceAllocation queries, top_score, top_index;
    queries.allocate(size_t(batch) * d * sizeof(float), "the queries", kOwner);
    top_score.allocate(
        size_t(batch) * found * sizeof(float), "the result distances", kOwner);
    top_index.allocate(
        size_t(batch) * found * sizeof(int32_t), "the result labels", kOwner);
    std::vector<float> host_score(size_t(batch) * found);
    std::vector<int32_t> host_index(size_t(batch) * found);
    ScopedStream stream(kOwner);

    kernels::AssignModel model;
    model.d = d;
    model.k = int(ntotal);
    model.means = vectors_;
    kernels::AssignOutput out;
    out.top_index = top_index.as<int32_t>();
    out.top_score = top_score.as<float>();

    for (idx_t i0 = 0; i0 < n; i0 += batch) {
        const idx_t nb = std::min(batch, n - i0);
        check_cuda(
            cudaMemcpyAsync(
                queries.as<float>(),
                x + size_t(i0) * d,
                size_t(nb) * d * sizeof(float),
                cudaMemcpyHostToDevice,
                stream.get()),
            "uploading the queries");
        check_cuda(
            kernels::ivf_assign_top(
                model,
                kernels::AssignScore::L2,
                nb,
                queries.as<float>(),
                found,
                1.0f,
                out,
                stream.get()),
            "the nearest-vector kernel");
        check_cuda(
            cudaMemcpyAsync(
                host_score.data(),
                out.top_score,
                size_t(nb) * found * sizeof(float),
                cudaMemcpyDeviceToHost,
                stream.get()),
            "downloading the distances");
        check_cuda(
            cudaMemcpyAsync(
                host_index.data(),
                out.top_index,
                size_t(nb) * found * sizeof(int32_t),
                cudaMemcpyDeviceToHost,
                stream.get()),
            "downloading the labels");
        check_cuda(cudaStreamSynchronize(stream.get()), "the search batch");
        for (idx_t i = 0; i < nb; i++) {
            float* dist_row = distances + size_t(i0 + i) * k;
            idx_t* label_row = labels + size_t(i0 + i) * k;
            for (int j = 0; j < found; j++) {
                dist_row[j] = host_score[size_t(i) * found + j];
                label_row[j] = host_index[size_t(i) * found + j];
            }
            for (idx_t j = found; j < k; j++) {
                dist_row[j] = std::numeric_limits<float>::max();
                label_row[j] = -1;
            }
        }
    }
}

void GpuIndexFlatL2::reconstruct(idx_t key, float*) const {
    FAISS_THROW_FMT(
        "GpuIndexFlatL2::reconstruct(%" PRId64
        "): not supported (an assignment-only index)",
        int64_t(key));
}

} // namespace gpu
} // namespace faiss_gmm
