#include <eval/distance_matrix.h>

#include <omp.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <memory>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#ifdef FAISS_GMM_WITH_GPU
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <eval/gpu_bench.h>
#endif

extern "C" {
/// Fortran BLAS single-precision GEMM (the entry point FAISS uses).
int sgemm_(
    const char* transa,
    const char* transb,
    const int* m,
    const int* n,
    const int* k,
    const float* alpha,
    const float* a,
    const int* lda,
    const float* b,
    const int* ldb,
    const float* beta,
    float* c,
    const int* ldc);
}

namespace faiss_gmm {
namespace eval {

namespace {

/// Base rows per CPU GEMM call: bounds the int arguments of sgemm_.
constexpr int64_t kCpuBaseBlock = int64_t(1) << 20;

/// matrix->distances[q][j] = <query q, base row j> by CPU BLAS.
void cpu_inner_products(
    int d, const float* xq, const float* xb, DistanceMatrix* matrix) {
    const float one = 1, zero = 0;
    const int n = int(matrix->nq), kdim = d;
    const int ldc = int(matrix->nb);
    for (int64_t j0 = 0; j0 < matrix->nb; j0 += kCpuBaseBlock) {
        const int m = int(std::min(kCpuBaseBlock, matrix->nb - j0));
        // column-major C (m x n, ldc = nb) is the row-major nq x nb matrix
        sgemm_(
            "Transpose",
            "Not transpose",
            &m,
            &n,
            &kdim,
            &one,
            xb + size_t(j0) * d,
            &kdim,
            xq,
            &kdim,
            &zero,
            matrix->distances.data() + j0,
            &ldc);
    }
    matrix->device = "CPU (BLAS)";
}

#ifdef FAISS_GMM_WITH_GPU

/// cudaMalloc'ed floats, freed on destruction.
struct DeviceFloats {
    float* data = nullptr;
    explicit DeviceFloats(size_t n) {
        CUDA_OK(cudaMalloc(&data, n * sizeof(float)));
    }
    DeviceFloats(const DeviceFloats&) = delete;
    DeviceFloats& operator=(const DeviceFloats&) = delete;
    ~DeviceFloats() {
        cudaFree(data);
    }
};

void cublas_ok(cublasStatus_t status, const char* call) {
    FAISS_THROW_IF_NOT_FMT(
        status == CUBLAS_STATUS_SUCCESS,
        "distance matrix: %s failed: %s",
        call,
        cublasGetStatusString(status));
}

/// The same inner products by cuBLAS SGEMM (pedantic fp32) on `device`:
/// base and queries copied once, the output in blocks of queries of at most
/// 1 GiB, each copied straight into its rows of the host matrix.
void gpu_inner_products(
    int device,
    int d,
    const float* xq,
    const float* xb,
    DistanceMatrix* matrix) {
    const int64_t nq = matrix->nq, nb = matrix->nb;
    FAISS_THROW_IF_NOT_FMT(
        nb <= INT_MAX,
        "distance matrix: %" PRId64 " base rows exceed the cuBLAS int limit",
        nb);
    CUDA_OK(cudaSetDevice(device));
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, device));
    const int64_t block_rows =
        std::max<int64_t>(1, std::min<int64_t>(nq, (int64_t(1) << 28) / nb));
    DeviceFloats base(size_t(nb) * d), queries(size_t(nq) * d);
    DeviceFloats block(size_t(block_rows) * nb);
    CUDA_OK(cudaMemcpy(
        base.data, xb, size_t(nb) * d * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(
        queries.data,
        xq,
        size_t(nq) * d * sizeof(float),
        cudaMemcpyHostToDevice));
    cublasHandle_t handle = nullptr;
    cublas_ok(cublasCreate(&handle), "cublasCreate");
    std::unique_ptr<cublasContext, decltype(&cublasDestroy)> owned(
        handle, &cublasDestroy);
    // plain fp32 (no TF32): integer-valued data stays exact
    cublas_ok(
        cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    const float one = 1, zero = 0;
    for (int64_t q0 = 0; q0 < nq; q0 += block_rows) {
        const int rows = int(std::min(block_rows, nq - q0));
        cublas_ok(
            cublasSgemm(
                handle,
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                int(nb),
                rows,
                d,
                &one,
                base.data,
                d,
                queries.data + size_t(q0) * d,
                d,
                &zero,
                block.data,
                int(nb)),
            "cublasSgemm");
        CUDA_OK(cudaMemcpy(
            matrix->distances.data() + size_t(q0) * nb,
            block.data,
            size_t(rows) * nb * sizeof(float),
            cudaMemcpyDeviceToHost));
    }
    matrix->device = "GPU " + std::to_string(device) + " (" + prop.name + ")";
}

#endif // FAISS_GMM_WITH_GPU

} // namespace

double distance_matrix_bytes(int64_t nq, int64_t nb) {
    return double(nq) * double(nb) * sizeof(float);
}

void check_distance_matrix_size(int64_t nq, int64_t nb, double max_bytes) {
    const double bytes = distance_matrix_bytes(nq, nb);
    FAISS_THROW_IF_NOT_FMT(
        bytes <= max_bytes,
        "--distance-matrix: the %" PRId64 " x %" PRId64
        " distance matrix (queries x base vectors) needs %.0f bytes (%.2f "
        "GB), more than the limit of %.0f bytes (%.2f GB, "
        "--distance-matrix-max-gb); lower --query-rows (at most %" PRId64
        " queries fit) or raise the limit",
        nq,
        nb,
        bytes,
        bytes / 1e9,
        max_bytes,
        max_bytes / 1e9,
        int64_t(max_bytes / (double(nb) * sizeof(float))));
}

DistanceMatrix compute_distance_matrix(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    double max_bytes,
    bool use_gpu,
    int gpu_device) {
    FAISS_THROW_IF_NOT_FMT(
        d >= 1 && nq >= 1 && nb >= 1,
        "distance matrix: d=%d, nq=%" PRId64 ", nb=%" PRId64 " must be >= 1",
        d,
        nq,
        nb);
    FAISS_THROW_IF_NOT_FMT(
        nq <= INT_MAX, "distance matrix: nq=%" PRId64 " too large", nq);
    check_distance_matrix_size(nq, nb, max_bytes);
    DistanceMatrix matrix;
    matrix.nq = nq;
    matrix.nb = nb;
    matrix.distances.resize(size_t(nq) * size_t(nb));
    if (use_gpu) {
#ifdef FAISS_GMM_WITH_GPU
        gpu_inner_products(gpu_device, d, xq, xb, &matrix);
#else
        (void)gpu_device;
        FAISS_THROW_MSG(
            "distance matrix: the GPU was requested but this build has no "
            "CUDA support");
#endif
    } else {
        cpu_inner_products(d, xq, xb, &matrix);
    }
    std::vector<float> query_norms(nq), base_norms(nb);
    faiss::fvec_norms_L2sqr(query_norms.data(), xq, d, nq);
    faiss::fvec_norms_L2sqr(base_norms.data(), xb, d, nb);
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < nq; q++) {
        float* row = matrix.distances.data() + size_t(q) * size_t(nb);
        const double qn = query_norms[q];
        for (int64_t j = 0; j < nb; j++) {
            const double dis = qn + double(base_norms[j]) - 2.0 * row[j];
            row[j] = float(std::max(dis, 0.0));
        }
    }
    return matrix;
}

LookupSearchCounts ivf_flat_lookup_search(
    const faiss::IndexIVF& ivf,
    const DistanceMatrix& matrix,
    const float* xq,
    idx_t k,
    float* distances,
    idx_t* labels) {
    using HeapForL2 = faiss::CMax<float, idx_t>;
    FAISS_THROW_IF_NOT_MSG(
        ivf.metric_type == faiss::METRIC_L2,
        "ivf_flat_lookup_search: the index must be L2");
    FAISS_THROW_IF_NOT_FMT(
        ivf.max_codes == 0,
        "ivf_flat_lookup_search: max_codes=%zu is not supported (0 only)",
        ivf.max_codes);
    FAISS_THROW_IF_NOT_FMT(
        (ivf.parallel_mode & ~ivf.PARALLEL_MODE_NO_HEAP_INIT) == 0,
        "ivf_flat_lookup_search: parallel_mode=%d is not supported (0 only)",
        ivf.parallel_mode);
    FAISS_THROW_IF_NOT_FMT(
        k >= 1, "ivf_flat_lookup_search: k=%" PRId64, int64_t(k));
    FAISS_THROW_IF_NOT_FMT(
        ivf.ntotal == matrix.nb,
        "ivf_flat_lookup_search: the index holds %" PRId64
        " vectors, the matrix has %" PRId64 " columns",
        int64_t(ivf.ntotal),
        matrix.nb);
    for (size_t l = 0; l < ivf.nlist; l++) {
        const size_t size = ivf.invlists->list_size(l);
        if (size == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds ids(ivf.invlists, l);
        for (size_t j = 0; j < size; j++) {
            FAISS_THROW_IF_NOT_FMT(
                ids[j] >= 0 && ids[j] < matrix.nb,
                "ivf_flat_lookup_search: list %zu holds id %" PRId64
                ", outside [0, %" PRId64 "): the matrix needs sequential ids",
                l,
                int64_t(ids[j]),
                matrix.nb);
        }
    }
    const int64_t n = matrix.nq;
    const size_t nprobe = std::min(ivf.nlist, ivf.nprobe);
    FAISS_THROW_IF_NOT_MSG(nprobe > 0, "ivf_flat_lookup_search: nprobe is 0");
    // IndexIVF::search's query slices (one per thread): the quantizer is
    // asked exactly as there, so ties and rounding resolve the same way
    const int nt = int(std::min<int64_t>(omp_get_max_threads(), n));
    size_t nlistv = 0, ndis = 0;
#pragma omp parallel for if (nt > 1) reduction(+ : nlistv, ndis)
    for (int slice = 0; slice < nt; slice++) {
        const int64_t i0 = n * slice / nt, i1 = n * (slice + 1) / nt;
        if (i1 <= i0) {
            continue;
        }
        std::vector<idx_t> keys(size_t(i1 - i0) * nprobe);
        std::vector<float> coarse(size_t(i1 - i0) * nprobe);
        ivf.quantizer->search(
            i1 - i0,
            xq + size_t(i0) * ivf.d,
            idx_t(nprobe),
            coarse.data(),
            keys.data());
        for (int64_t i = i0; i < i1; i++) {
            float* simi = distances + size_t(i) * k;
            idx_t* idxi = labels + size_t(i) * k;
            faiss::heap_heapify<HeapForL2>(k, simi, idxi);
            const float* row = matrix.row(i);
            for (size_t r = 0; r < nprobe; r++) {
                const idx_t list = keys[size_t(i - i0) * nprobe + r];
                if (list < 0) {
                    continue;
                }
                const size_t size = ivf.invlists->list_size(list);
                if (size == 0) {
                    continue;
                }
                nlistv++;
                faiss::InvertedLists::ScopedIds ids(ivf.invlists, list);
                for (size_t j = 0; j < size; j++) {
                    const float dis = row[ids[j]];
                    if (dis < simi[0]) {
                        faiss::heap_replace_top<HeapForL2>(
                            k, simi, idxi, dis, ids[j]);
                    }
                }
                ndis += size;
            }
            faiss::heap_reorder<HeapForL2>(k, simi, idxi);
        }
    }
    return {nlistv, ndis};
}

} // namespace eval
} // namespace faiss_gmm
