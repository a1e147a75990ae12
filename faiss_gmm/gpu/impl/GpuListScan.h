/**
 * Internal (not installed): stage 2 of GpuIndexIVFGMM::search, the list
 * scan with deduplication. The contract of the CPU's DedupScan
 * (impl/DedupScan.h): lists visited in probe order; an entry whose vector
 * sits in a list the query probed earlier is skipped (its spill record
 * names a list of smaller probe rank), so every vector is compared once;
 * every other entry's squared L2 distance is computed once. One CTA group
 * per (query, probed list); candidates land in per-query segments.
 *
 * List pruning (the CPU's rules, kernels/list_pruning.h) needs the k-th
 * neighbour distance, which the CPU tightens list by list. The GPU scans
 * all lists of a query at once, so it scans in two parts: the first
 * settings.prune_first_probes probes, a top-k selection over their
 * candidates (each query's k-th distance so far), the pruning of the other
 * probes against it in one pass, then the kept others. The bound is the
 * CPU's after that many lists, never tighter, so the GPU prunes a subset
 * of what the CPU would: no id the CPU search returns is lost to pruning.
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
 * duplicate counts into tile.duplicates. Each query's candidates are the
 * first tile.segment_lengths[q] entries of its slot, which starts at
 * tile.segment_offsets[q]. With pruning (settings.prunes()), also
 * tile.pruned and tile.bound_evaluations.
 *
 * @param rules      the pruning rules' device data (used when
 *                   settings.prunes(); probe order L2)
 * @param probe_rank nq x nlist int32, all kListNotProbed on entry (the
 *                   top-k stage restores it)
 * @param candidates grown to hold the tile's candidates
 */
void gpu_list_scan(
    const GpuIndexContext& ctx,
    const kernels::IvfListsView& lists,
    const SearchTileShape& shape,
    const GpuSearchSettings& settings,
    const kernels::ProbePruning& rules,
    idx_t nq,
    int32_t* probe_rank,
    DeviceAllocation& candidates,
    SearchTile& tile);

} // namespace gpu
} // namespace faiss_gmm
