#include <faiss_gmm/gpu/impl/GpuListScan.h>

#include <algorithm>

#include <kernels/ivf_lists.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

void gpu_list_scan(
    const GpuIndexContext& ctx,
    const kn::IvfListsView& lists,
    const SearchTileShape& shape,
    idx_t nq,
    int32_t* probe_rank,
    DeviceAllocation& candidates,
    SearchTile& tile) {
    // max_codes counts unique vectors, which the GPU cannot bound before
    // the scan: the index refuses max_codes > 0 (see GpuIndexIVFGMM)
    throw_on_cuda_error(
        kn::ivf_prepare_probes(
            lists,
            nq,
            shape.nprobe,
            0,
            tile.probes,
            probe_rank,
            tile.probe_offsets,
            tile.segment_lengths,
            tile.lists_visited,
            ctx.stream()),
        "launching the probe preparation");
    throw_on_cuda_error(
        kn::segment_offsets_from_lengths(
            tile.segment_lengths,
            nq,
            tile.segment_offsets,
            tile.scan_workspace,
            tile.scan_workspace_bytes,
            ctx.stream()),
        "launching the candidate offsets scan");
    int64_t tile_candidates = 0;
    ctx.download(
        &tile_candidates,
        tile.segment_offsets + nq,
        sizeof(int64_t),
        "downloading the candidate count");
    ctx.synchronize("counting the tile's candidates");
    candidates.reserve(
        size_t(std::max<int64_t>(tile_candidates, 1)) *
            (sizeof(float) + sizeof(int64_t)),
        "the candidate buffers");
    tile.candidate_ids = candidates.as<int64_t>();
    tile.candidate_keys =
        reinterpret_cast<float*>(tile.candidate_ids + tile_candidates);
    throw_on_cuda_error(
        cudaMemsetAsync(tile.duplicates, 0, size_t(nq) * 8, ctx.stream()),
        "clearing the duplicate counters");
    throw_on_cuda_error(
        kn::ivf_scan_lists(
            lists,
            nq,
            tile.queries,
            shape.nprobe,
            tile.probes,
            probe_rank,
            tile.probe_offsets,
            tile.segment_offsets,
            tile.candidate_keys,
            tile.candidate_ids,
            tile.duplicates,
            ctx.stream()),
        "launching the list scan");
}

} // namespace gpu
} // namespace faiss_gmm
