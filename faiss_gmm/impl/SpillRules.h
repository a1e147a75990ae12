/**
 * Internal (not installed): the per-vector spill rules, applied by
 * ListAssignment.cpp to candidates from the CPU (quantizer,
 * GaussianMixture::top_posteriors) or from the GPU assignment kernel, so
 * that both build the very same lists.
 */

#pragma once

#include <limits>

#include <faiss_gmm/IVFGMMParameters.h>

namespace faiss_gmm {
namespace impl {

/**
 * Posterior rule for one vector: the nearest mean first when
 * spill.primary_is_nearest_mean, then the candidates in order while their
 * tempered posterior reaches spill.tau (the first list is always taken),
 * at most m lists, none twice.
 *
 * @param spill     the rule's parameters (tau, primary_is_nearest_mean)
 * @param m         lists per vector at most
 * @param top       candidates, best posterior first
 * @param ids       top candidate components
 * @param posterior posterior(t): the tempered posterior of ids[t]
 * @param nearest   nearest(): the nearest mean's id (called only when
 *                  spill.primary_is_nearest_mean)
 * @param lists     m slots, -1 on entry; filled from the front
 */
template <class Id, class Posterior, class Nearest>
inline void posterior_spill_row(
    const SpillParameters& spill,
    int m,
    int top,
    const Id* ids,
    const Posterior& posterior,
    const Nearest& nearest,
    idx_t* lists) {
    int c = 0;
    if (spill.primary_is_nearest_mean) {
        lists[c++] = nearest();
    }
    for (int t = 0; t < top && c < m; t++) {
        const idx_t j = ids[t];
        const bool primary = t == 0 && c == 0;
        if (!primary && (spill.tau >= 1 || posterior(t) < spill.tau)) {
            break; // posteriors decrease with t
        }
        if (c > 0 && j == lists[0]) {
            continue;
        }
        lists[c++] = j;
    }
}

/**
 * Closure rule for one vector: the nearest mean, then the next nearest
 * while their squared distance is within closure_ratio times the nearest's.
 *
 * @param closure_ratio distance ratio to the nearest mean
 * @param top           candidates, nearest first (at most the lists' m)
 * @param distances     their squared L2 distances
 * @param ids           their ids (-1: none)
 * @param lists         top slots, -1 on entry; filled from the front
 */
template <class Id>
inline void closure_spill_row(
    float closure_ratio,
    int top,
    const float* distances,
    const Id* ids,
    idx_t* lists) {
    lists[0] = ids[0];
    for (int t = 1; t < top; t++) {
        if (ids[t] < 0 || distances[t] > closure_ratio * distances[0]) {
            break;
        }
        lists[t] = ids[t];
    }
}

/**
 * Residual-loss rules for one vector (SOAR, RAIR): the nearest mean, then
 * the candidate j that minimises loss(||r_j||^2, <r, r_j>, ||r||^2), with
 * r = x - mu_primary and r_j = x - mu_j.
 *
 * @param d         dimension
 * @param x         the vector
 * @param means     k x d means
 * @param top       candidates, nearest first
 * @param distances their squared L2 distances
 * @param ids       their ids (-1: none)
 * @param m         lists per vector at most (only 1 or 2 are filled)
 * @param lists     m slots, -1 on entry
 * @param loss      loss(||r_j||^2, <r, r_j>, ||r||^2)
 */
template <class Id, class Loss>
inline void residual_loss_spill_row(
    int d,
    const float* x,
    const float* means,
    int top,
    const float* distances,
    const Id* ids,
    int m,
    idx_t* lists,
    const Loss& loss) {
    lists[0] = ids[0];
    if (m < 2) {
        return;
    }
    const float* mu1 = means + int64_t(ids[0]) * d;
    float best_loss = std::numeric_limits<float>::infinity();
    idx_t best = -1;
    for (int t = 1; t < top; t++) {
        if (ids[t] < 0) {
            break;
        }
        const float* muj = means + int64_t(ids[t]) * d;
        float dot = 0;
        for (int c = 0; c < d; c++) {
            dot += (x[c] - mu1[c]) * (x[c] - muj[c]);
        }
        const float value = loss(distances[t], dot, distances[0]);
        if (value < best_loss) {
            best_loss = value;
            best = ids[t];
        }
    }
    lists[1] = best;
}

/// SOAR's loss: ||r_j||^2 + lambda (<r, r_j> / ||r||)^2.
inline float soar_loss(float lambda, float dist_j, float dot, float dist_1) {
    return dist_j + lambda * (dist_1 > 0 ? dot * dot / dist_1 : 0.0f);
}

/// RAIR's loss (RAIRS, SIGMOD'26): ||r_j||^2 + lambda <r, r_j>.
inline float rair_loss(float lambda, float dist_j, float dot) {
    return dist_j + lambda * dot;
}

} // namespace impl
} // namespace faiss_gmm
