/**
 * Exact per-search counters of IVF-GMM indexes (CPU and GPU), beside
 * FAISS's faiss::indexIVF_stats, and the lock under which every search adds
 * its totals to both, so that concurrent searches never race on them.
 */

#pragma once

#include <cstddef>

#include <faiss/IndexIVF.h>

namespace faiss_gmm {

/**
 * Counters of one or more searches. faiss::indexIVF_stats is filled as
 * IndexIVF fills it (nq, nlist = non-empty lists probed, ndis = fine
 * distances, nheap_updates).
 */
struct IndexIVFGMMStats {
    size_t nq = 0;                  ///< queries searched
    size_t ncoarse_distances = 0;   ///< query-to-mean distances (nlist / query)
    size_t nfine_distances = 0;     ///< unique stored vectors compared
    size_t nentries_scanned = 0;    ///< list entries visited, duplicates incl.
    size_t nduplicates_skipped = 0; ///< entries skipped as already compared
    size_t nlists_probed = 0; ///< non-empty lists visited (adaptive varies)
    /// mean-to-mean distances computed by bisector pruning (included in
    /// ncoarse_distances)
    size_t nbound_distances = 0;
    /// lists skipped by bisector or model-based pruning
    size_t nlists_pruned = 0;
    /// set every counter to 0
    void reset();
    /// add other's counters to these
    void add(const IndexIVFGMMStats& other);
};

/// Global counters, like faiss::indexIVF_stats. Searches add to them
/// through add_to_global_stats only; read them when no search runs.
extern IndexIVFGMMStats indexIVFGMM_stats;

/**
 * Adds one search's totals to indexIVFGMM_stats and (when ivf is not null)
 * to faiss::indexIVF_stats, under one process-wide lock.
 *
 * @param local the search's IVF-GMM counters
 * @param ivf   its FAISS counters (nq, nlist, ndis, nheap_updates, times),
 *              or nullptr
 */
void add_to_global_stats(
    const IndexIVFGMMStats& local, const faiss::IndexIVFStats* ivf);

} // namespace faiss_gmm
