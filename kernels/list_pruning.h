/**
 * The two list-pruning tests of the IVF-GMM search, written once for the
 * CPU scan (faiss_gmm/impl/ListPruning.h) and the GPU prune kernel
 * (ivf_prune_probes in ivf_search.h), so both skip exactly the same lists
 * for the same k-th neighbour distance. Plain arithmetic, no FAISS headers.
 *
 * Notation: q the query, mu_1 the nearest mean (probe 0), mu_l the list
 * tested, d_1 = ||q - mu_1||^2, d_l = ||q - mu_l||^2 (squared distances),
 * kth the current k-th neighbour's squared distance.
 */

#pragma once

#include <cmath>

#include <kernels/host_device.h>

namespace faiss_gmm {
namespace kernels {

/**
 * Bisector test, the cheap half: every point whose nearest mean is mu_l
 * lies beyond the bisector hyperplane of mu_1 and mu_l, at distance
 * (d_l - d_1) / (2 ||mu_l - mu_1||) >= (sqrt(d_l) - sqrt(d_1)) / 2 from q
 * (triangle inequality: ||mu_l - mu_1|| <= sqrt(d_l) + sqrt(d_1)). True
 * when that lower bound already exceeds margin * sqrt(kth), so the list can
 * be skipped without the mean-to-mean distance.
 */
FAISS_GMM_HOST_DEVICE inline bool
bisector_prunes_free(float d1, float dl, float kth, float margin) {
    const float limit = margin * sqrtf(kth);
    return (sqrtf(fmaxf(dl, 0.0f)) - sqrtf(fmaxf(d1, 0.0f))) * 0.5f > limit;
}

/**
 * Bisector test, the exact half, given mean_dis = ||mu_l - mu_1||^2: true
 * when the hyperplane's distance (d_l - d_1) / (2 sqrt(mean_dis)) exceeds
 * margin * sqrt(kth). margin = 1 loses no vector whose nearest mean is mu_l.
 */
FAISS_GMM_HOST_DEVICE inline bool bisector_prunes_exact(
    float d1, float dl, float mean_dis, float kth, float margin) {
    const float limit = margin * sqrtf(kth);
    return dl - d1 > 2 * limit * sqrtf(mean_dis);
}

/**
 * Hit-model test: the list's n vectors modelled as N(mu_l, var I) in
 * dimension d, ||q - x||^2 is approximately normal with mean
 * m = d_l + d var and variance s^2 = 4 var d_l + 2 d var^2; true when the
 * expected number of them closer than kth, n Phi((kth - m) / s), is below
 * min_hits.
 */
FAISS_GMM_HOST_DEVICE inline bool hit_model_prunes(
    float dl, double var, long long n, int d, float kth, float min_hits) {
    const double mean = double(dl) + d * var;
    const double sd = sqrt(4 * var * dl + 2 * d * var * var);
    const double z = (double(kth) - mean) / fmax(sd, 1e-30);
    const double expected = double(n) * 0.5 * erfc(-z / sqrt(2.0));
    return expected < min_hits;
}

} // namespace kernels
} // namespace faiss_gmm
