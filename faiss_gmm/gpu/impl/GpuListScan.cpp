#include <faiss_gmm/gpu/impl/GpuListScan.h>

#include <algorithm>

#include <kernels/ivf_lists.h>
#include <kernels/select_k.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

namespace {

/// Probe ranks, offsets and segment lengths of the kept probes.
void prepare_probes(
    const GpuIndexContext& ctx,
    const kn::IvfListsView& lists,
    const SearchTileShape& shape,
    idx_t nq,
    int32_t* probe_rank,
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
}

void scan_probes(
    const GpuIndexContext& ctx,
    const kn::IvfListsView& lists,
    const SearchTileShape& shape,
    idx_t nq,
    int probe_begin,
    int probe_end,
    const int32_t* probe_rank,
    SearchTile& tile) {
    throw_on_cuda_error(
        kn::ivf_scan_lists(
            lists,
            nq,
            tile.queries,
            shape.nprobe,
            probe_begin,
            probe_end,
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

/**
 * After the first `first` probes are scanned: their top-k (the k-th
 * distance of each query), the pruning of the other probes against it,
 * and the probe offsets and segment lengths of what is left (the first
 * probes' part of each segment does not move).
 */
void prune_probes(
    const GpuIndexContext& ctx,
    const kn::IvfListsView& lists,
    const SearchTileShape& shape,
    const kn::ProbePruning& rules,
    idx_t nq,
    int first,
    int32_t* probe_rank,
    SearchTile& tile) {
    const cudaStream_t stream = ctx.stream();
    // entries of the first probes: the offset of probe `first` (a dropped
    // probe has the offset of the next kept one)
    throw_on_cuda_error(
        cudaMemcpy2DAsync(
            tile.first_lengths,
            sizeof(int64_t),
            tile.probe_offsets + first,
            size_t(shape.nprobe) * sizeof(int64_t),
            sizeof(int64_t),
            size_t(nq),
            cudaMemcpyDeviceToDevice,
            stream),
        "copying the first probes' lengths");
    kn::Segments first_part;
    first_part.count = nq;
    first_part.offsets = tile.segment_offsets;
    first_part.lengths = tile.first_lengths;
    throw_on_cuda_error(
        kn::select_k_segments(
            first_part,
            tile.candidate_keys,
            tile.candidate_ids,
            shape.k,
            tile.out_keys,
            tile.out_ids,
            tile.select_workspace,
            tile.select_workspace_bytes,
            stream),
        "launching the top-k of the first probes");
    throw_on_cuda_error(
        kn::ivf_prune_probes(
            lists,
            rules,
            nq,
            shape.nprobe,
            first,
            tile.probe_keys,
            tile.out_keys + (shape.k - 1),
            shape.k,
            tile.probes,
            probe_rank,
            tile.pruned,
            tile.bound_evaluations,
            stream),
        "launching the list pruning");
    prepare_probes(ctx, lists, shape, nq, probe_rank, tile);
}

} // namespace

void gpu_list_scan(
    const GpuIndexContext& ctx,
    const kn::IvfListsView& lists,
    const SearchTileShape& shape,
    const GpuSearchSettings& settings,
    const kn::ProbePruning& rules,
    idx_t nq,
    int32_t* probe_rank,
    DeviceAllocation& candidates,
    SearchTile& tile) {
    prepare_probes(ctx, lists, shape, nq, probe_rank, tile);
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
    if (shape.prune) {
        for (int32_t* counter : {tile.pruned, tile.bound_evaluations}) {
            throw_on_cuda_error(
                cudaMemsetAsync(
                    counter, 0, size_t(nq) * sizeof(int32_t), ctx.stream()),
                "clearing the pruning counters");
        }
    }
    const int first = std::min(settings.prune_first_probes, shape.nprobe);
    if (!settings.prunes() || first >= shape.nprobe) {
        scan_probes(ctx, lists, shape, nq, 0, shape.nprobe, probe_rank, tile);
        return;
    }
    scan_probes(ctx, lists, shape, nq, 0, first, probe_rank, tile);
    prune_probes(ctx, lists, shape, rules, nq, first, probe_rank, tile);
    scan_probes(ctx, lists, shape, nq, first, shape.nprobe, probe_rank, tile);
}

} // namespace gpu
} // namespace faiss_gmm
