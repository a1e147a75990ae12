/**
 * Internal (not installed): stage 1 of GpuIndexIVFGMM::search, the coarse
 * probe. The same rules as the CPU's coarse_probe (CoarseProbe.h): the
 * nprobe nearest means by L2 (one cuBLAS GEMM of the centred queries
 * against the centred means, turned into distances) or the nprobe largest
 * log-joints, then the adaptive cuts (distance ratio, posterior mass).
 */

#pragma once

#include <vector>

#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuModel.h>
#include <faiss_gmm/gpu/impl/GpuSearchTile.h>

namespace faiss_gmm {
namespace gpu {

/**
 * Uploads nq queries (host) into the tile and leaves in tile.probes (nq x
 * nprobe, -1 where a cut dropped a probe) the lists each query probes, in
 * probe order, and in tile.probe_keys their scores.
 *
 * @param operand_host scratch of at least nq x shape.gemm_dim floats
 * @param norms_host   scratch of at least nq floats
 */
void gpu_coarse_probe(
    const GpuIndexContext& ctx,
    const GpuModel& model,
    const SearchTileShape& shape,
    const GpuSearchSettings& settings,
    idx_t nq,
    const float* queries,
    std::vector<float>& operand_host,
    std::vector<float>& norms_host,
    const SearchTile& tile);

} // namespace gpu
} // namespace faiss_gmm
