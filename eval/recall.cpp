#include <eval/recall.h>

#include <algorithm>
#include <limits>
#include <unordered_set>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

namespace {

double squared_l2_double(int d, const float* a, const float* b) {
    double sum = 0;
    for (int j = 0; j < d; j++) {
        double diff = double(a[j]) - double(b[j]);
        sum += diff * diff;
    }
    return sum;
}

} // namespace

std::vector<double> exact_distances(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    int k,
    const int64_t* ids) {
    FAISS_THROW_IF_NOT_FMT(d > 0, "exact_distances: dimension %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 0, "exact_distances: k = %d < 0", k);
    std::vector<double> out(size_t(nq) * k);
    for (int64_t i = 0; i < nq * k; i++) {
        FAISS_THROW_IF_NOT_FMT(
            ids[i] < nb,
            "exact_distances: id %lld out of range (nb = %lld)",
            (long long)ids[i],
            (long long)nb);
    }
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < nq; q++) {
        for (int j = 0; j < k; j++) {
            int64_t id = ids[q * k + j];
            out[q * k + j] =
                id < 0 ? std::numeric_limits<double>::infinity()
                       : squared_l2_double(d, xq + q * d, xb + id * d);
        }
    }
    return out;
}

ReferenceDistances make_reference_distances(
    int d,
    int64_t nq,
    const float* xq,
    int64_t nb,
    const float* xb,
    int gt_k,
    const int32_t* gt_ids) {
    FAISS_THROW_IF_NOT_FMT(
        gt_k >= 1, "make_reference_distances: gt_k = %d < 1", gt_k);
    std::vector<int64_t> ids(gt_ids, gt_ids + size_t(nq) * gt_k);
    for (int64_t id : ids) {
        FAISS_THROW_IF_NOT_FMT(
            id >= 0 && id < nb,
            "ground truth id %lld is not a base row (nb = %lld)",
            (long long)id,
            (long long)nb);
    }
    ReferenceDistances ref;
    ref.nq = nq;
    ref.k = gt_k;
    ref.distances = exact_distances(d, nq, xq, nb, xb, gt_k, ids.data());
    for (int64_t q = 0; q < nq; q++) {
        std::sort(
            ref.distances.begin() + q * gt_k,
            ref.distances.begin() + (q + 1) * gt_k);
    }
    return ref;
}

double recall_at_k(
    const ReferenceDistances& reference,
    int k,
    int result_k,
    const int64_t* labels,
    const double* result_distances) {
    FAISS_THROW_IF_NOT_FMT(
        k >= 1 && k <= result_k,
        "recall_at_k: k = %d outside [1, result_k = %d]",
        k,
        result_k);
    FAISS_THROW_IF_NOT_FMT(
        k <= reference.k,
        "recall_at_k: k = %d exceeds the ground truth depth %d",
        k,
        reference.k);
    if (reference.nq == 0) {
        return 0;
    }
    int64_t found = 0;
    std::unordered_set<int64_t> seen;
    for (int64_t q = 0; q < reference.nq; q++) {
        double kth = reference.at(q, k - 1);
        double threshold =
            kth * (1 + kTieRelativeEpsilon) + kTieAbsoluteEpsilon;
        seen.clear();
        for (int j = 0; j < k; j++) {
            int64_t id = labels[q * result_k + j];
            if (id < 0 || !seen.insert(id).second) {
                continue;
            }
            if (result_distances[q * result_k + j] <= threshold) {
                found++;
            }
        }
    }
    return double(found) / (double(reference.nq) * k);
}

} // namespace eval
} // namespace faiss_gmm
