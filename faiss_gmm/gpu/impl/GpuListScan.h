/**
 * Internal (not installed): stage 2 of GpuIndexIVFGMM::search, the list
 * scan with deduplication. The contract of the CPU's DedupScan
 * (impl/DedupScan.h): lists visited in probe order; an entry whose vector
 * sits in a list the query probed earlier is skipped (its spill record
 * names a list of smaller probe rank), so every vector is compared once;
 * every other entry's squared L2 distance is computed once. One CTA group
 * per (query, probed list); candidates land in per-query segments.
 */

#pragma once

#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuSearchTile.h>
#include <kernels/ivf_search.h>

namespace faiss_gmm {
namespace gpu {

/**
 * Scans the lists of tile.probes for nq queries: probe ranks, candidate
 * offsets (one download: the tile's candidate count, which sizes
 * `candidates`), then the distances into tile.candidate_keys / ids and the
 * duplicate counts into tile.duplicates.
 *
 * @param probe_rank nq x nlist int32, all kListNotProbed on entry (the
 *                   top-k stage restores it)
 * @param candidates grown to hold the tile's candidates
 */
void gpu_list_scan(
    const GpuIndexContext& ctx,
    const kernels::IvfListsView& lists,
    const SearchTileShape& shape,
    idx_t nq,
    int32_t* probe_rank,
    DeviceAllocation& candidates,
    SearchTile& tile);

} // namespace gpu
} // namespace faiss_gmm
