/**
 * Internal (not installed): the search-time rules that skip whole probed
 * lists (IVFGMMSearchOptions::prune_margin and min_expected_hits), given
 * the query's squared distances to the means and the current k-th
 * neighbour distance. They never change which ids can be returned other
 * than by skipping whole lists.
 */

#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <faiss_gmm/GaussianMixture.h>

namespace faiss_gmm {
namespace impl {

/**
 * Bisector pruning of one list: q is at least (d_l - d_1) / (2 ||mu_l -
 * mu_1||) from every point whose nearest mean is mu_l (d_j: squared
 * distance from q to mu_j), so list l is skipped when that exceeds margin
 * times the current k-th neighbour distance.
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
        const float limit = margin * std::sqrt(kth_dis);
        const float s1 = std::sqrt(std::max(d1, 0.0f));
        const float sl = std::sqrt(std::max(dl, 0.0f));
        // ||mu_l - mu_1|| <= sl + s1, so the gap is >= (sl - s1) / 2
        if ((sl - s1) * 0.5f > limit) {
            return true;
        }
        const float mean_dis = faiss::fvec_L2sqr(
            means + int64_t(l) * d, means + int64_t(l1) * d, size_t(d));
        (*nbound)++;
        return dl - d1 > 2 * limit * std::sqrt(mean_dis);
    }
};

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
        if (min_hits == 0) {
            return;
        }
        const int vpc = gmm.variances_per_component();
        variance.resize(gmm.k);
        for (int j = 0; j < gmm.k; j++) {
            double sum = 0;
            for (int c = 0; c < vpc; c++) {
                sum += gmm.variances[size_t(j) * vpc + c];
            }
            variance[j] = float(sum / vpc);
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
        const double s2 = variance[l];
        const double mean = double(dl) + d * s2;
        const double sd = std::sqrt(4 * s2 * dl + 2 * d * s2 * s2);
        const double z = (double(kth_dis) - mean) / std::max(sd, 1e-30);
        const double expected = double(invlists->list_size(l)) * 0.5 *
                                std::erfc(-z / std::sqrt(2.0));
        return expected < min_hits;
    }
};

} // namespace impl
} // namespace faiss_gmm
