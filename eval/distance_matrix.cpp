#include <eval/distance_matrix.h>

#include <omp.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <memory>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <datasets/inner_products.h>

namespace faiss_gmm {
namespace eval {

namespace {

/// Queries per inner-product block: at most 2^28 products (1 GiB).
int64_t query_block_rows(int64_t nq, int64_t nb) {
    return std::max<int64_t>(1, std::min<int64_t>(nq, (int64_t(1) << 28) / nb));
}

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
    FAISS_THROW_IF_NOT_FMT(
        nb <= INT_MAX,
        "distance matrix: %" PRId64 " base rows exceed the GEMM int limit",
        nb);
    // the inner products by one GEMM per block of queries (datasets/
    // inner_products.h: BLAS, or cuBLAS in strict fp32), then the distances
    datasets::FloatMatrix queries;
    queries.n = nq;
    queries.d = d;
    queries.data.assign(xq, xq + size_t(nq) * d);
    std::unique_ptr<datasets::InnerProducts> products =
        datasets::make_inner_products(queries, use_gpu, gpu_device);
    products->set_base(xb, nb);
    const int64_t block_rows = query_block_rows(nq, nb);
    for (int64_t q0 = 0; q0 < nq; q0 += block_rows) {
        const int64_t rows = std::min(block_rows, nq - q0);
        const float* ip = products->block(q0, rows, 0, nb);
        std::copy(
            ip,
            ip + size_t(rows) * size_t(nb),
            matrix.distances.data() + size_t(q0) * size_t(nb));
    }
    matrix.device = products->device_name();
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
