#include <faiss_gmm/CoarseProbe.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {

namespace {

/// Drops (-1, +inf) the lists of each query whose squared distance exceeds
/// ratio times the nearest one's; coarse_dis is sorted per query.
void cut_by_distance_ratio(
    idx_t n, size_t nprobe, float ratio, idx_t* assign, float* coarse_dis) {
    if (ratio == 0) {
        return;
    }
    for (idx_t i = 0; i < n; i++) {
        idx_t* ai = assign + size_t(i) * nprobe;
        float* di = coarse_dis + size_t(i) * nprobe;
        for (size_t r = 1; r < nprobe; r++) {
            if (ai[r] >= 0 && di[r] > ratio * di[0]) {
                ai[r] = -1;
                di[r] = std::numeric_limits<float>::infinity();
            }
        }
    }
}

} // namespace

void coarse_probe(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SearchParametersIVFGMM& params,
    idx_t n,
    const float* x,
    idx_t* assign,
    float* coarse_dis) {
    const size_t nlist = size_t(gmm.k);
    const size_t nprobe = params.nprobe;
    FAISS_THROW_IF_NOT_FMT(
        nprobe >= 1 && nprobe <= nlist,
        "coarse_probe: nprobe=%zu must be in [1, nlist=%zu]",
        nprobe,
        nlist);
    params.IVFGMMSearchOptions::check("coarse_probe");
    if (n == 0) {
        return;
    }
    const ProbeOrder order = params.probe_order;
    const float mass = params.posterior_mass;
    const double inv_temperature = 1.0 / double(params.mass_temperature);
    if (order == ProbeOrder::L2 && mass == 0) {
        quantizer.search(n, x, nprobe, coarse_dis, assign);
        cut_by_distance_ratio(
            n, nprobe, params.distance_ratio, assign, coarse_dis);
        return;
    }
    // log-joint of a block of queries against every component
    const idx_t bs =
        std::max<idx_t>(1, std::min<idx_t>(n, (idx_t(1) << 22) / idx_t(nlist)));
    std::vector<float> log_joint(size_t(bs) * nlist);
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * gmm.d;
        idx_t* ab = assign + int64_t(i0) * nprobe;
        float* db = coarse_dis + int64_t(i0) * nprobe;
        gmm.log_joint(nb, xb, log_joint.data());
        if (order == ProbeOrder::L2) {
            quantizer.search(nb, xb, nprobe, db, ab);
            cut_by_distance_ratio(nb, nprobe, params.distance_ratio, ab, db);
        }
#pragma omp parallel
        {
            std::vector<idx_t> order_buf(
                order == ProbeOrder::Posterior ? nlist : 0);
#pragma omp for
            for (idx_t i = 0; i < nb; i++) {
                const float* row = log_joint.data() + size_t(i) * nlist;
                idx_t* ai = ab + size_t(i) * nprobe;
                float* di = db + size_t(i) * nprobe;
                if (order == ProbeOrder::Posterior) {
                    std::iota(order_buf.begin(), order_buf.end(), idx_t(0));
                    std::partial_sort(
                        order_buf.begin(),
                        order_buf.begin() + nprobe,
                        order_buf.end(),
                        [row](idx_t a, idx_t b) {
                            return row[a] > row[b] ||
                                   (row[a] == row[b] && a < b);
                        });
                    for (size_t r = 0; r < nprobe; r++) {
                        ai[r] = order_buf[r];
                        di[r] = -row[order_buf[r]];
                    }
                }
                if (mass > 0) {
                    const float max_lj = *std::max_element(row, row + nlist);
                    // tempered posterior: softmax of log-joint / T
                    double sum = 0;
                    for (size_t j = 0; j < nlist; j++) {
                        sum += std::exp(
                            (double(row[j]) - max_lj) * inv_temperature);
                    }
                    double cumulated = 0;
                    for (size_t r = 0; r < nprobe; r++) {
                        if (cumulated >= mass) {
                            ai[r] = -1;
                            di[r] = std::numeric_limits<float>::infinity();
                        } else if (ai[r] >= 0) {
                            cumulated += std::exp(
                                             (double(row[ai[r]]) - max_lj) *
                                             inv_temperature) /
                                         sum;
                        }
                    }
                }
            }
        }
    }
}

} // namespace faiss_gmm
