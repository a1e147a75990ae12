#include <faiss_gmm/gpu/impl/GpuTopK.h>

#include <limits>
#include <vector>

#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <kernels/ivf_search.h>
#include <kernels/select_k.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

void gpu_top_k(
    const GpuIndexContext& ctx,
    const SearchTileShape& shape,
    idx_t nq,
    int32_t* probe_rank,
    const SearchTile& tile,
    float* distances,
    idx_t* labels,
    TileCounters* counters) {
    const int k = shape.k;
    kn::Segments candidates;
    candidates.count = nq;
    candidates.offsets = tile.segment_offsets;
    candidates.lengths = tile.segment_lengths;
    throw_on_cuda_error(
        kn::select_k_segments(
            candidates,
            tile.candidate_keys,
            tile.candidate_ids,
            k,
            tile.out_keys,
            tile.out_ids,
            tile.select_workspace,
            tile.select_workspace_bytes,
            ctx.stream()),
        "launching the top-k selection");
    ctx.record(3);
    throw_on_cuda_error(
        kn::ivf_clear_probe_ranks(
            nq,
            shape.nprobe,
            int(shape.nlist),
            tile.probes,
            probe_rank,
            ctx.stream()),
        "launching the probe rank reset");
    static_assert(sizeof(idx_t) == sizeof(int64_t), "ids are int64");
    std::vector<int64_t> seg_lengths(nq), dups(nq);
    std::vector<int32_t> visited(nq);
    ctx.download(
        distances, tile.out_keys, size_t(nq) * k * 4, "downloading distances");
    ctx.download(
        labels, tile.out_ids, size_t(nq) * k * 8, "downloading labels");
    ctx.download(
        seg_lengths.data(),
        tile.segment_lengths,
        nq * 8,
        "downloading counters");
    ctx.download(dups.data(), tile.duplicates, nq * 8, "downloading counters");
    ctx.download(
        visited.data(), tile.lists_visited, nq * 4, "downloading counters");
    std::vector<int32_t> pruned(shape.prune ? nq : 0), bound(pruned.size());
    if (shape.prune) {
        ctx.download(
            pruned.data(), tile.pruned, nq * 4, "downloading counters");
        ctx.download(
            bound.data(),
            tile.bound_evaluations,
            nq * 4,
            "downloading counters");
    }
    ctx.synchronize("searching a query tile");
    for (idx_t i = 0; i < nq; i++) {
        counters->scanned += size_t(seg_lengths[i]);
        counters->duplicates += size_t(dups[i]);
        counters->lists += size_t(visited[i]);
    }
    for (size_t i = 0; i < pruned.size(); i++) {
        counters->pruned += size_t(pruned[i]);
        counters->bound += size_t(bound[i]);
    }
    for (size_t j = 0; j < size_t(nq) * k; j++) {
        if (labels[j] < 0) {
            distances[j] = std::numeric_limits<float>::max();
        }
    }
}

} // namespace gpu
} // namespace faiss_gmm
