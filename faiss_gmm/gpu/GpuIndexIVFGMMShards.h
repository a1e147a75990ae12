/**
 * A GMM IVF index searched on several GPUs of one host, sharded by
 * vectors: every device holds a full GpuIndexIVFGMM with the same model,
 * spill rule and search settings, and a disjoint slice of the vectors (all
 * copies of a spilled vector stay on the device that holds the vector).
 * One search runs on all devices at once and merges their top-k.
 *
 * Why by vectors and not by lists: every device then scans about 1/G of
 * every probed list, whatever the query, so the work is balanced (sharding
 * by lists sends a query's whole scan to the devices that own its nearest
 * lists); and the dedup guarantee holds as on one device (a vector's
 * copies live in one shard's lists, where the spill records already skip
 * them; shards hold distinct ids, so the merged top-k has each id once).
 * The coarse step (query against the K means) is repeated on every device,
 * which is cheap next to the scan.
 *
 * The container is FAISS's own faiss::IndexShards (threaded: one host
 * thread per device for add and search; per-query merge of the shards'
 * sorted results). The global counters faiss::indexIVF_stats /
 * indexIVFGMM_stats get every shard's work (each shard counts the queries
 * and its own coarse step; GpuIndexIVFGMM adds to them under a lock, so the
 * shards' threads do not race); faiss::IndexShards (1.7.3) rejects
 * per-call SearchParameters, so runtime settings are set on the shards.
 */

#pragma once

#include <vector>

#include <faiss/IndexShards.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

namespace faiss_gmm {
namespace gpu {

/**
 * A faiss::IndexShards (threaded, owning its shards, ids kept as given)
 * with one GpuIndexIVFGMM per device, built from a trained CPU index: same
 * model, spill parameters, nprobe, max_codes, probe order and adaptive
 * probing settings. The CPU index's vectors (each once, with its id) are
 * split into contiguous slices over the devices and added there (the GPU
 * add recomputes their lists with the same model and rule). Later add() /
 * add_with_ids() calls split their rows the same way (ids ntotal, ntotal +
 * 1, ... when none are given). Runtime settings (nprobe, ...) belong to
 * the shards: set them on every dynamic_cast<GpuIndexIVFGMM*>(at(i)).
 *
 * @param cpu_index trained IndexIVFGMM (its lists may be empty); its
 *                  max_codes must be 0 (the GPU search does not support
 *                  it). List pruning runs in each shard against the shard's
 *                  own k-th distance, a looser bound than the whole
 *                  index's, so shards prune no list the CPU would keep.
 * @param devices   distinct CUDA ordinals, at least one
 * @param config    per-shard settings (config.device is replaced by each
 *                  ordinal)
 * @return a new index, owned by the caller
 */
faiss::IndexShards* index_ivfgmm_cpu_to_gpu_shards(
    const IndexIVFGMM* cpu_index,
    const std::vector<int>& devices,
    const GpuIndexIVFGMMConfig& config = GpuIndexIVFGMMConfig());

} // namespace gpu
} // namespace faiss_gmm
