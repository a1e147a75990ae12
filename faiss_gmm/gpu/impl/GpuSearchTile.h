/**
 * Internal (not installed): the device buffers of one query tile of
 * GpuIndexIVFGMM::search, shared by its stages (GpuCoarseProbe,
 * GpuListScan, GpuTopK), and how they are sized.
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/GpuWorkspace.h>

namespace faiss_gmm {
namespace gpu {

/// What decides the tile's buffer sizes (besides the number of queries).
struct SearchTileShape {
    int d = 0;           ///< dimension
    size_t nlist = 0;    ///< lists
    int nprobe = 0;      ///< probes per query (<= nlist)
    int k = 0;           ///< results per query
    bool need_l2 = true; ///< L2 coarse scores (probe order L2)
    /// log-joint coarse scores (posterior order or posterior mass)
    bool need_joint = false;
    /// columns of the coarse GEMM operand: d, or 2d for a diagonal
    /// log-joint ([q | q^2])
    int gemm_dim = 0;
    /// candidate entries of one query at most (segment length bound)
    int64_t candidate_bound = 0;
    /// list pruning on (prune_margin or min_expected_hits): the tile gets
    /// the pruning buffers
    bool prune = false;
};

/// Resolved settings of one search call (see IVFGMMSearchOptions).
struct GpuSearchSettings {
    size_t nprobe = 1;
    ProbeOrder order = ProbeOrder::L2;
    float mass = 0;
    float mass_temperature = 1;
    float distance_ratio = 0;
    float prune_margin = 0;      ///< bisector pruning (0: off)
    float min_expected_hits = 0; ///< hit-model pruning (0: off)
    /// probes scanned before the others are pruned against the k-th
    /// distance they gave (GpuIndexIVFGMMConfig::prune_first_probes)
    int prune_first_probes = 1;

    /// whether a pruning rule is on
    bool prunes() const {
        return prune_margin > 0 || min_expected_hits > 0;
    }
};

/// The device buffers of one search tile.
struct SearchTile {
    float* queries = nullptr;           ///< nq x d, raw (fine scan)
    float* operand = nullptr;           ///< nq x gemm_dim, centred (coarse)
    float* query_norms = nullptr;       ///< nq, |q - c|^2
    float* l2_scores = nullptr;         ///< nq x nlist, or null
    float* joint_scores = nullptr;      ///< nq x nlist, or null
    float* probe_keys = nullptr;        ///< nq x nprobe
    int64_t* probe_pos = nullptr;       ///< nq x nprobe
    int32_t* probes = nullptr;          ///< nq x nprobe
    int64_t* probe_offsets = nullptr;   ///< nq x nprobe
    int64_t* segment_lengths = nullptr; ///< nq
    int64_t* segment_offsets = nullptr; ///< nq + 1
    int32_t* lists_visited = nullptr;   ///< nq
    int64_t* duplicates = nullptr;      ///< nq
    /// pruning only: entries of the first probes' part of each segment (nq)
    int64_t* first_lengths = nullptr;
    int32_t* pruned = nullptr;            ///< pruning only: nq lists pruned
    int32_t* bound_evaluations = nullptr; ///< pruning only: nq
    float* candidate_keys = nullptr;      ///< the tile's candidates
    int64_t* candidate_ids = nullptr;     ///< the tile's candidates
    float* out_keys = nullptr;            ///< nq x k
    int64_t* out_ids = nullptr;           ///< nq x k
    void* scan_workspace = nullptr;
    size_t scan_workspace_bytes = 0;
    void* select_workspace = nullptr; ///< both top-k selections
    size_t select_workspace_bytes = 0;
};

/**
 * Lays out (or, with a measuring Carver, sizes) the buffers of a tile of
 * nq queries; the candidates are sized separately by the scan stage.
 */
void plan_search_tile(
    Carver& carver, const SearchTileShape& shape, idx_t nq, SearchTile* tile);

} // namespace gpu
} // namespace faiss_gmm
