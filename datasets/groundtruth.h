/**
 * Exact k-nearest-neighbour ground truth under squared L2.
 *
 * Candidates come from blocked float BLAS dot products (|x|^2 + |y|^2 - 2 x.y);
 * they are re-ranked with distances summed in double, ties broken by ascending
 * id. A rigorous bound on the float error decides whether the candidate list
 * provably holds the true top k; queries where it does not are recomputed
 * by a full double-precision scan. The result therefore equals a brute-force
 * double computation with the (distance, id) order.
 *
 * Device: when the project is built with CUDA and a device is usable, the
 * float dot products of the candidate pass run on the current CUDA device
 * (cuBLAS SGEMM in plain fp32: pedantic math, never TF32, so the error bound
 * above holds); candidate selection, the double re-ranking and the rescan
 * stay on the CPU, so the result is the same on either device. The
 * environment variable FAISS_GMM_GT_DEVICE picks the device when the call
 * leaves it to GroundTruthDevice::automatic: "cpu", "gpu" (throws when no GPU
 * is usable) or "auto" (the default: the GPU when usable, else the CPU).
 */

#pragma once

#include <cstdint>
#include <string>

#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

/// Where the float dot products of the candidate pass run.
enum class GroundTruthDevice {
    /// From FAISS_GMM_GT_DEVICE (cpu, gpu or auto); when unset or "auto",
    /// the GPU when groundtruth_gpu_available(), else the CPU.
    automatic,
    /// Blocked BLAS on the CPU, whatever the build and the environment say.
    cpu,
    /// cuBLAS on the current CUDA device; throws when none is usable.
    gpu,
};

/// True when this build has CUDA support and a CUDA device is usable
/// (cudaGetDeviceCount > 0). Never throws.
bool groundtruth_gpu_available();

/// Exact top-k by squared L2 of every query among the base rows.
/// Distances in the result are the double-precision values rounded to float.
/// @param base   the database vectors (n >= k)
/// @param query  the queries (same d)
/// @param k      neighbours per query, 1 <= k <= base.n
/// @param verbose print progress, timing and the device used to stdout
/// @param device  where the candidate pass runs (see GroundTruthDevice)
GroundTruth compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    bool verbose = false,
    GroundTruthDevice device = GroundTruthDevice::automatic);

/// Same as compute_groundtruth for a base file streamed in chunks (for files
/// larger than RAM): rows [0, max_base_rows) of base_path, -1 for all.
/// @param device where the candidate pass runs (see GroundTruthDevice)
GroundTruth compute_groundtruth_from_file(
    const std::string& base_path,
    const FloatMatrix& query,
    int k,
    int64_t max_base_rows = -1,
    bool verbose = false,
    GroundTruthDevice device = GroundTruthDevice::automatic);

/// Returns the ground truth cached at cache_path (big-ann-benchmarks .bin
/// layout) when it was computed for the same base, queries and at least k
/// neighbours; otherwise computes it and writes the cache. The cache key
/// (sizes and a 64-bit hash of base and query) is kept in
/// cache_path + ".key". A cache that cannot be written is reported on stderr
/// and otherwise ignored. The device follows FAISS_GMM_GT_DEVICE.
GroundTruth load_or_compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    const std::string& cache_path,
    bool verbose = false);

} // namespace datasets
} // namespace faiss_gmm
