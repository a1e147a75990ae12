#include <faiss_gmm/gpu/impl/GpuSearchTile.h>

#include <algorithm>

#include <kernels/ivf_lists.h>
#include <kernels/select_k.h>

namespace faiss_gmm {
namespace gpu {

void plan_search_tile(
    Carver& c, const SearchTileShape& s, idx_t nq, SearchTile* t) {
    const size_t q = size_t(nq);
    const size_t np = size_t(s.nprobe);
    t->queries = c.take<float>(q * s.d);
    t->operand = c.take<float>(q * s.gemm_dim);
    t->query_norms = c.take<float>(q);
    t->l2_scores = s.need_l2 ? c.take<float>(q * s.nlist) : nullptr;
    t->joint_scores = s.need_joint ? c.take<float>(q * s.nlist) : nullptr;
    t->probe_keys = c.take<float>(q * np);
    t->probe_pos = c.take<int64_t>(q * np);
    t->probes = c.take<int32_t>(q * np);
    t->probe_offsets = c.take<int64_t>(q * np);
    t->segment_lengths = c.take<int64_t>(q);
    t->segment_offsets = c.take<int64_t>(q + 1);
    t->lists_visited = c.take<int32_t>(q);
    t->duplicates = c.take<int64_t>(q);
    t->first_lengths = s.prune ? c.take<int64_t>(q) : nullptr;
    t->pruned = s.prune ? c.take<int32_t>(q) : nullptr;
    t->bound_evaluations = s.prune ? c.take<int32_t>(q) : nullptr;
    t->out_keys = c.take<float>(q * size_t(s.k));
    t->out_ids = c.take<int64_t>(q * size_t(s.k));
    t->scan_workspace_bytes = kernels::segment_offsets_workspace_bytes(nq);
    t->scan_workspace = c.take<char>(t->scan_workspace_bytes);
    // sized for the longest candidate segment (offsets are device data)
    kernels::Segments probe_rows, candidate_rows;
    probe_rows.count = candidate_rows.count = nq;
    probe_rows.length = int64_t(s.nlist);
    candidate_rows.length = s.candidate_bound;
    t->select_workspace_bytes = std::max(
        kernels::select_k_workspace_bytes(probe_rows, s.nprobe),
        kernels::select_k_workspace_bytes(candidate_rows, s.k));
    t->select_workspace = c.take<char>(t->select_workspace_bytes);
}

} // namespace gpu
} // namespace faiss_gmm
