/**
 * A brute-force L2 index whose vectors live on one GPU: the assignment
 * index of the GPU k-means initialisation (faiss::Clustering calls reset,
 * add and search(k = 1) on it every iteration), as FAISS GPU k-means works.
 * Search runs the fused top-m kernel of kernels/ivf_assign.h (fp32, direct
 * differences, no n x ntotal distance matrix).
 */

#pragma once

#include <cstddef>

#include <faiss/Index.h>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {
namespace gpu {

/**
 * Flat (exhaustive) L2 index on one CUDA device. Vectors are appended by
 * add() and kept in device memory; queries come from host memory and are
 * processed in batches, so the extra device memory of a search is bounded
 * by search_batch_bytes. Distances are squared L2 from direct differences
 * in fp32 (they agree with faiss::IndexFlatL2 except at near-ties); equal
 * distances keep the smaller label first. Queries must be finite.
 * Not thread-safe for concurrent add/reset; concurrent searches are fine.
 */
class GpuIndexFlatL2 : public faiss::Index {
   public:
    /// Device memory one search batch may use for its queries and results
    /// (bytes); default 256 MiB.
    size_t search_batch_bytes = size_t(256) << 20;

    /**
     * @param d      dimension of the vectors (>= 1)
     * @param device CUDA device ordinal that holds the vectors
     */
    GpuIndexFlatL2(int d, int device = 0);
    /// Frees the device storage.
    ~GpuIndexFlatL2() override;

    GpuIndexFlatL2(const GpuIndexFlatL2&) = delete;
    GpuIndexFlatL2& operator=(const GpuIndexFlatL2&) = delete;

    /**
     * Append n vectors (host memory, n x d) to the device storage; they get
     * labels ntotal .. ntotal + n - 1.
     * @param n number of vectors
     * @param x n x d row-major floats on the host
     */
    void add(idx_t n, const float* x) override;

    /// Drop every stored vector (the device storage is kept for reuse).
    void reset() override;

    /**
     * The k nearest stored vectors of each query, nearest first; labels -1
     * and distances FLT_MAX pad the rows when k > ntotal.
     * @param n         number of queries
     * @param x         n x d row-major query floats on the host
     * @param k         neighbours per query, 1 .. kernels::kAssignMaxTop
     * @param distances n x k squared L2 distances (host)
     * @param labels    n x k labels (host)
     * @param params    must be null (no search parameters apply)
     */
    void search(
        idx_t n,
        const float* x,
        idx_t k,
        float* distances,
        idx_t* labels,
        const faiss::SearchParameters* params = nullptr) const override;

    /// Not supported (the index serves assignment only): throws.
    void reconstruct(idx_t key, float* recons) const override;

    /// CUDA device that holds the vectors.
    int device() const {
        return device_;
    }

   private:
    int device_;
    float* vectors_ = nullptr; ///< device, capacity_ x d floats
    idx_t capacity_ = 0;       ///< rows allocated at vectors_
};

} // namespace gpu
} // namespace faiss_gmm
