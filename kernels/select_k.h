/**
 * k smallest keys of each segment of a float array (the top-k selection of
 * the GPU IVF search: coarse step, nprobe of nlist; fine step, k of the
 * candidates of each query).
 *
 * Order: ascending key, equal keys by position in the segment (so the
 * result equals a sequential scan that keeps the first of equal keys, as
 * FAISS's CPU heaps do when fed in segment order; -0 and +0 are equal).
 * NaN and +inf keys are never selected (a CPU heap starting at +inf never
 * takes them either). Segments with fewer than k selectable keys are padded
 * with (+inf, -1). Each segment must be shorter than 2^31 keys.
 *
 * Plain pointers, sizes and streams only (see kernels/README.md).
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace faiss_gmm {
namespace kernels {

/// Largest k select_k_segments supports.
constexpr int kSelectMaxK = 2048;

/**
 * Segments of keys: segment s is keys[offsets[s] .. offsets[s + 1]) when
 * offsets is given (nseg + 1 int64 on the device), or
 * keys[offsets[s] .. offsets[s] + lengths[s]) when lengths is given too
 * (the front of each slot of a fixed layout: the pruned GPU search selects
 * from the part of each query's slot its scan has filled); else
 * keys[s * length .. (s + 1) * length).
 */
struct Segments {
    int64_t count = 0;                ///< number of segments
    const int64_t* offsets = nullptr; ///< device, count + 1 values, or null
    /// device, count values (<= offsets[s + 1] - offsets[s]), or null;
    /// only with offsets
    const int64_t* lengths = nullptr;
    int64_t length = 0; ///< segment length when offsets is null
};

/// Bytes of device workspace select_k_segments needs (at most).
size_t select_k_workspace_bytes(const Segments& segments, int k);

/**
 * For each segment s: out_keys[s * k + j] and out_values[s * k + j] for
 * j < k, the j-th smallest key and its value: values[i] (values is
 * parallel to keys, i the key's index in keys) when values is given, else
 * the position within the segment (int64). 1 <= k <=
 * kSelectMaxK. workspace: select_k_workspace_bytes(segments, k) bytes of
 * device memory. Returns cudaErrorInvalidValue on bad arguments.
 */
cudaError_t select_k_segments(
    const Segments& segments,
    const float* keys,
    const int64_t* values,
    int k,
    float* out_keys,
    int64_t* out_values,
    void* workspace,
    size_t workspace_bytes,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
