#include <faiss_gmm/gpu/GpuIndexIVFGMMShards.h>

#include <cinttypes>
#include <memory>
#include <set>
#include <unordered_set>

#include <faiss/impl/FaissAssert.h>
#include <faiss/invlists/InvertedLists.h>

#include <faiss_gmm/gpu/GpuEmTrainer.h>

namespace faiss_gmm {
namespace gpu {

faiss::IndexShards* index_ivfgmm_cpu_to_gpu_shards(
    const IndexIVFGMM* cpu_index,
    const std::vector<int>& devices,
    const GpuIndexIVFGMMConfig& config) {
    FAISS_THROW_IF_NOT_MSG(
        cpu_index, "index_ivfgmm_cpu_to_gpu_shards: cpu_index is null");
    FAISS_THROW_IF_NOT_MSG(
        cpu_index->is_trained,
        "index_ivfgmm_cpu_to_gpu_shards: the CPU index is not trained");
    FAISS_THROW_IF_NOT_MSG(
        !devices.empty(), "index_ivfgmm_cpu_to_gpu_shards: no device");
    FAISS_THROW_IF_NOT_FMT(
        std::set<int>(devices.begin(), devices.end()).size() == devices.size(),
        "index_ivfgmm_cpu_to_gpu_shards: a device is listed twice among %d",
        int(devices.size()));
    FAISS_THROW_IF_NOT_FMT(
        cpu_index->max_codes == 0,
        "index_ivfgmm_cpu_to_gpu_shards: max_codes = %zu must be 0 (not "
        "supported by the GPU search)",
        cpu_index->max_codes);
    for (int device : devices) {
        FAISS_THROW_IF_NOT_FMT(
            gpu_is_available(device),
            "index_ivfgmm_cpu_to_gpu_shards: CUDA device %d is not usable",
            device);
    }
    const int d = cpu_index->d;
    std::unique_ptr<faiss::IndexShards> shards(
        new faiss::IndexShards(d, /*threaded=*/true, /*successive_ids=*/false));
    set_owns_sub_indexes(*shards, true);
    for (int device : devices) {
        GpuIndexIVFGMMConfig cfg = config;
        cfg.device = device;
        std::unique_ptr<GpuIndexIVFGMM> shard(new GpuIndexIVFGMM(
            d, cpu_index->nlist, cpu_index->build_params, cfg));
        shard->set_gmm(cpu_index->gmm);
        shard->nprobe = cpu_index->nprobe;
        shard->search_options = cpu_index->search_options;
        shards->add_shard(shard.release());
    }
    shards->syncWithSubIndexes();

    if (cpu_index->ntotal > 0) {
        // Each stored vector once (spilled copies share the id), in list
        // order, with its id.
        const faiss::InvertedLists* lists = cpu_index->invlists;
        FAISS_THROW_IF_NOT_FMT(
            lists->code_size == size_t(d) * sizeof(float),
            "index_ivfgmm_cpu_to_gpu_shards: list code size %zu, expected "
            "%zu (float vectors)",
            lists->code_size,
            size_t(d) * sizeof(float));
        std::unordered_set<idx_t> seen;
        seen.reserve(size_t(cpu_index->ntotal) * 2);
        std::vector<idx_t> ids;
        std::vector<float> vectors;
        ids.reserve(cpu_index->ntotal);
        vectors.reserve(size_t(cpu_index->ntotal) * d);
        for (size_t l = 0; l < lists->nlist; l++) {
            const size_t size = lists->list_size(l);
            if (size == 0) {
                continue;
            }
            faiss::InvertedLists::ScopedIds list_ids(lists, l);
            faiss::InvertedLists::ScopedCodes codes(lists, l);
            const float* v = reinterpret_cast<const float*>(codes.get());
            for (size_t j = 0; j < size; j++) {
                if (seen.insert(list_ids[j]).second) {
                    ids.push_back(list_ids[j]);
                    vectors.insert(vectors.end(), v + j * d, v + (j + 1) * d);
                }
            }
        }
        FAISS_THROW_IF_NOT_FMT(
            idx_t(ids.size()) == cpu_index->ntotal,
            "index_ivfgmm_cpu_to_gpu_shards: found %zu distinct ids in the "
            "lists, ntotal is %" PRId64,
            ids.size(),
            int64_t(cpu_index->ntotal));
        shards->add_with_ids(idx_t(ids.size()), vectors.data(), ids.data());
    }
    return shards.release();
}

} // namespace gpu
} // namespace faiss_gmm
