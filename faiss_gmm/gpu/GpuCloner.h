/**
 * Moving indexes between the host and a GPU, FAISS style
 * (faiss::gpu::index_cpu_to_gpu / index_gpu_to_cpu), for the faiss-gmm
 * classes.
 *
 * Our classes come first: IndexIVFGMM <-> GpuIndexIVFGMM (through the
 * GpuIndexIVFGMM constructor and copyTo, exact both ways: same model,
 * parameters, lists, ids and spill records). The wrappers IndexPreTransform,
 * IndexIDMap and IndexIDMap2 are recursed: the wrapper is cloned (its
 * transforms, id map and header), the index inside is converted, and the new
 * wrapper owns both. No FAISS GPU library is available here (see DESIGN.md),
 * so every other index cannot go to a GPU: index_cpu_to_gpu throws naming its
 * class, and index_gpu_to_cpu returns faiss::clone_index of it.
 *
 * Saving a GPU index: write_index_gpu below, which is index_gpu_to_cpu
 * followed by faiss_gmm::write_index (index_io.h); the file is the CPU
 * index's file, so faiss_gmm::read_index reads it back as a CPU index and
 * index_cpu_to_gpu puts that on a device again.
 */

#pragma once

#include <faiss/Index.h>
#include <faiss/impl/io.h>

#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

namespace faiss_gmm {
namespace gpu {

/**
 * A GPU copy of a CPU index.
 *
 * @param index  an IndexIVFGMM (trained or not, filled or not), a
 *               GpuIndexIVFGMM (copied, through the host, to config.device)
 *               or an IndexPreTransform / IndexIDMap / IndexIDMap2 chain
 *               ending in one of them. Anything else throws a
 *               faiss::FaissException naming its class: it is not a
 *               faiss-gmm plugin class, and no FAISS GPU library is
 *               available to take it.
 * @param config device and memory settings of the GpuIndexIVFGMM made
 * @return a new index owned by the caller; a wrapper owns what it wraps
 */
faiss::Index* index_cpu_to_gpu(
    const faiss::Index* index,
    const GpuIndexIVFGMMConfig& config = GpuIndexIVFGMMConfig());

/**
 * A CPU copy of an index.
 *
 * @param index a GpuIndexIVFGMM (copied into a new IndexIVFGMM by copyTo),
 *              an IndexPreTransform / IndexIDMap / IndexIDMap2 chain around
 *              one (the chain cloned, the index inside converted), an
 *              IndexIVFGMM (deep copy through faiss_gmm's serialisation:
 *              faiss::clone_index would slice it to an IndexIVFFlat), or any
 *              other CPU index (faiss::clone_index). An index that holds a
 *              faiss-gmm index anywhere else (e.g. inside an IndexRefine)
 *              throws, as FAISS's cloner would lose its class.
 * @return a new index owned by the caller; a wrapper owns what it wraps
 */
faiss::Index* index_gpu_to_cpu(const faiss::Index* index);

/**
 * Write any index that index_gpu_to_cpu accepts (a GPU one included) in
 * the format of faiss_gmm::write_index: index_gpu_to_cpu, then write_index.
 * Read it back with faiss_gmm::read_index (a CPU index) and, for a GPU
 * index, index_cpu_to_gpu.
 *
 * @param index index to write (not nullptr)
 * @param fname output file name (created or truncated)
 */
void write_index_gpu(const faiss::Index* index, const char* fname);

/**
 * The same, to a FAISS writer.
 *
 * @param index  index to write (not nullptr)
 * @param writer destination, e.g. a faiss::VectorIOWriter
 */
void write_index_gpu(const faiss::Index* index, faiss::IOWriter* writer);

/**
 * The GpuIndexIVFGMM at the bottom of a chain of IndexPreTransform /
 * IndexIDMap / IndexIDMap2 wrappers, or nullptr when there is none (the GPU
 * counterpart of faiss_gmm::try_extract_index_ivfgmm).
 *
 * @param index any index (may be nullptr)
 */
GpuIndexIVFGMM* try_extract_gpu_index_ivfgmm(faiss::Index* index);
/// const overload of try_extract_gpu_index_ivfgmm
const GpuIndexIVFGMM* try_extract_gpu_index_ivfgmm(const faiss::Index* index);

} // namespace gpu
} // namespace faiss_gmm
