/**
 * Internal (not installed): the search-time rules that skip whole probed
 * lists (IVFGMMSearchOptions::prune_margin and min_expected_hits), given
 * the query's squared distances to the means and the current k-th
 * neighbour distance. They never change which ids can be returned other
 * than by skipping whole lists.
 */

#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <faiss_gmm/GaussianMixture.h>
#include <kernels/list_pruning.h>

namespace faiss_gmm {
namespace impl {

/**
 * Bisector pruning of one list (the tests of kernels/list_pruning.h, which
 * the GPU search shares): q is at least (d_l - d_1) / (2 ||mu_l - mu_1||)
 * from every point whose nearest mean is mu_l (d_j: squared distance from
 * q to mu_j), so list l is skipped when that exceeds margin times the
 * current k-th neighbour distance.
 */
struct BisectorPruner {
    float margin = 0; ///< 0 = off
    int d = 0;
    const float* means = nullptr; ///< nlist x d

    bool active() const {
        return margin > 0;
    }

    /// true when list l can be skipped given the current k-th neighbour
    /// squared distance kth_dis; counts a mean-to-mean distance in *nbound
    /// when the free triangle bound does not decide.
    bool
    prunes(idx_t l1, float d1, idx_t l, float dl, float kth_dis, size_t* nbound)
        const {
        if (!(kth_dis < std::numeric_limits<float>::infinity())) {
            return false; // fewer than k results so far
        }
        if (kernels::bisector_prunes_free(d1, dl, kth_dis, margin)) {
            return true;
        }
        const float mean_dis = faiss::fvec_L2sqr(
            means + int64_t(l) * d, means + int64_t(l1) * d, size_t(d));
        (*nbound)++;
        return kernels::bisector_prunes_exact(
            d1, dl, mean_dis, kth_dis, margin);
    }
};

/// Per component, the mean of its per-dimension variances (the hit model's
/// sigma^2; the variance itself for a spherical or tied model).
inline std::vector<float> mean_variances(const GaussianMixture& gmm) {
    const int vpc = gmm.variances_per_component();
    std::vector<float> variance(gmm.k);
    for (int j = 0; j < gmm.k; j++) {
        double sum = 0;
        for (int c = 0; c < vpc; c++) {
            sum += gmm.variances[size_t(j) * vpc + c];
        }
        variance[j] = float(sum / vpc);
    }
    return variance;
}

/**
 * Model-based pruning of one list: the expected number of the list's
 * vectors, modelled as N(mu_l, sigma_l^2 I), closer to q than the current
 * k-th neighbour, from the normal approximation of ||q - x||^2.
 */
struct HitModelPruner {
    float min_hits = 0; ///< 0 = off
    int d = 0;
    std::vector<float> variance; ///< per list: mean per-dimension variance
    const faiss::InvertedLists* invlists = nullptr;

    HitModelPruner(
        float min_hits_in,
        const GaussianMixture& gmm,
        const faiss::InvertedLists* invlists_in)
        : min_hits(min_hits_in), d(gmm.d), invlists(invlists_in) {
        if (min_hits > 0) {
            variance = mean_variances(gmm);
        }
    }

    bool active() const {
        return min_hits > 0;
    }

    /// true when list l (squared distance dl to its mean) is expected to
    /// hold fewer than min_hits vectors within kth_dis (squared)
    bool prunes(idx_t l, float dl, float kth_dis) const {
        if (!(kth_dis < std::numeric_limits<float>::infinity())) {
            return false; // fewer than k results so far
        }
        return kernels::hit_model_prunes(
            dl,
            variance[l],
            (long long)invlists->list_size(l),
            d,
            kth_dis,
            min_hits);
    }
};

} // namespace impl
} // namespace faiss_gmm
