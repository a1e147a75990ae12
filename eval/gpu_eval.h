/**
 * What the evaluation needs from a GPU, behind one interface, so that the
 * runner has no CUDA-specific code: gpu_eval.cpp implements it with
 * gpu::GpuIndexIVFGMM (CUDA builds), gpu_eval_none.cpp says clearly that
 * the build has no GPU.
 */

#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>

#include <faiss_gmm/GaussianMixture.h>

#include <eval/results.h>

namespace faiss_gmm {
namespace eval {

/// Whether this build can evaluate on a GPU at all.
bool gpu_eval_built();

/**
 * Throws faiss::FaissException unless indexes can be evaluated on CUDA
 * device `device`: the build has the GPU index and the device is usable.
 * Returns a description of the device ("device 0: NVIDIA H100 ...").
 */
std::string check_gpu_usable(int device);

/// Largest k and nprobe a GPU search accepts (0 without a GPU build).
int64_t gpu_max_search_k();

/**
 * The index k-means assigns points with: a GPU flat L2 index on `device`
 * when use_gpu, else a CPU IndexFlatL2.
 */
std::unique_ptr<faiss::Index>
make_kmeans_assigner(int d, bool use_gpu, int device);

/** An evaluated index resident on a GPU. */
class GpuEvalIndex {
   public:
    virtual ~GpuEvalIndex() = default;
    /// the index that is trained, filled and searched (wrappers included)
    virtual faiss::Index* index() = 0;
    /// search settings of the next searches
    virtual void set_search(int64_t nprobe, float posterior_mass) = 0;
    /// entries, replication, imbalance and list bytes, counted as for a CPU
    /// IndexIVFGMM (float codes, int64 ids, int32 spill records)
    virtual void fill_storage_figures(IndexResult* result) const = 0;
    /// the model (after training)
    virtual const GaussianMixture& gmm() const = 0;
};

/**
 * A GPU copy of a chain (wrappers kept) whose bottom is an IndexIVFGMM,
 * trained or not.
 *
 * @param cpu_chain the CPU index made by the factory
 * @param device    CUDA device
 * @param verbose   verbose GPU index
 */
std::unique_ptr<GpuEvalIndex>
gpu_copy_of_chain(const faiss::Index& cpu_chain, int device, bool verbose);

/**
 * The lists of a trained k-means IVF on the GPU: its centroids as the given
 * spherical GMM, one list per vector (the nearest centroid, as
 * IndexIVFFlat::add chooses it), probed by L2 as IndexIVFFlat probes.
 */
std::unique_ptr<GpuEvalIndex> gpu_kmeans_lists(
    const faiss::IndexIVF& ivf,
    const GaussianMixture& centroids_as_gmm,
    int device,
    bool verbose);

} // namespace eval
} // namespace faiss_gmm
