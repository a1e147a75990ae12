/**
 * Internal (not installed): stage 3 of GpuIndexIVFGMM::search, the top-k
 * merge: the k smallest candidates of each query's segment (the first
 * segment_lengths[q] entries of its slot; each vector
 * appears at most once there: the scan dropped duplicates), downloaded with
 * the per-query counters; slots a query cannot fill are (FLT_MAX, -1), as
 * the CPU's heaps leave them. Also restores the probe ranks.
 */

#pragma once

#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuSearchTile.h>

namespace faiss_gmm {
namespace gpu {

/// Per-query counters of a tile (host), summed by the caller.
struct TileCounters {
    size_t scanned = 0;    ///< list entries visited, duplicates included
    size_t duplicates = 0; ///< entries skipped as already compared
    size_t lists = 0;      ///< non-empty lists visited
    size_t pruned = 0;     ///< lists skipped by a pruning rule
    size_t bound = 0;      ///< mean-to-mean distances of the bisector bound
};

/**
 * Selects, downloads (distances: nq x k, labels: nq x k host arrays) and
 * adds the tile's counters to *counters. Records ctx event 3 after the
 * selection.
 */
void gpu_top_k(
    const GpuIndexContext& ctx,
    const SearchTileShape& shape,
    idx_t nq,
    int32_t* probe_rank,
    const SearchTile& tile,
    float* distances,
    idx_t* labels,
    TileCounters* counters);

} // namespace gpu
} // namespace faiss_gmm
