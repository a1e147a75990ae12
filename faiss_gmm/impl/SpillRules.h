/**
 * Internal (not installed): the per-vector posterior and closure spill rules,
 * shared by IndexIVFGMM::assign_lists (candidates from the CPU quantizer and
 * GaussianMixture::top_posteriors) and GpuIndexIVFGMM (the assignment
 * kernel's top lists), so that both build the very same lists.
 */

#pragma once

#include <faiss_gmm/IndexIVFGMM.h>

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

} // namespace impl
} // namespace faiss_gmm
