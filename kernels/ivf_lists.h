/**
 * Kernels of the GPU inverted-list storage (faiss_gmm/gpu/GpuIvfLists) and
 * small helpers of the GPU IVF search (GpuIndexIVFGMM::search):
 *  - ivf_lists_scatter: appends a batch of entries (float vector or a code
 *    the host encoded, id, spill record) to their lists, at positions the
 *    host chose (input order);
 *  - fill_int32, narrow_int64_to_int32: buffer initialisation and the
 *    conversion of selected probe positions to list ids;
 *  - segment_offsets_from_lengths: exclusive prefix sums (CUB).
 *
 * Plain pointers, sizes and streams only (see kernels/README.md).
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace faiss_gmm {
namespace kernels {

/// Writable device view of the lists, for appends (all pointers device).
struct IvfListsWriteView {
    int d = 0;            ///< dimension
    int record_width = 0; ///< int32 per entry in records (0: none)
    /// per list: capacity x code_size bytes
    int code_size = 0;
    uint8_t* const* codes = nullptr;
    int64_t* const* ids = nullptr; ///< per list: capacity ids
    /// per list: capacity x record_width int32 (unused when width is 0)
    int32_t* const* records = nullptr;
};

/// A batch of entries to append (all pointers device memory).
struct IvfAppendBatch {
    int64_t n_entries = 0; ///< entries to write
    /// per entry: its code, n_entries x code_size bytes (SQ codes, encoded
    /// by the host); null: the code is the float vector of source
    const uint8_t* codes = nullptr;
    const float* source = nullptr;       ///< batch vectors, rows x d
    const int64_t* source_row = nullptr; ///< per entry: row in source
    const int32_t* list = nullptr;       ///< per entry: destination list
    const int64_t* position = nullptr;   ///< per entry: slot in that list
    const int64_t* id = nullptr;         ///< per entry: id to store
    /// per entry: record_width int32 (other lists, -1 padded); may be null
    /// when record_width is 0
    const int32_t* record = nullptr;
};

/**
 * For every entry e of batch: its code (batch.codes + e * code_size, or
 * the d floats source[source_row[e] * d ...] when batch.codes is null, then
 * code_size must be 4 d) goes to slot position[e] of lists.codes[list[e]],
 * the id and record to the same slot. Destination slots must be distinct
 * and within capacity (the host guarantees it). Returns
 * cudaErrorInvalidValue on bad sizes or null required pointers.
 */
cudaError_t ivf_lists_scatter(
    const IvfListsWriteView& lists,
    const IvfAppendBatch& batch,
    cudaStream_t stream);

/// out[i] = value for i < n.
cudaError_t
fill_int32(int32_t* out, int64_t n, int32_t value, cudaStream_t stream);

/// out[i] = int32(in[i]) for i < n (values must fit; -1 stays -1).
cudaError_t narrow_int64_to_int32(
    const int64_t* in, int64_t n, int32_t* out, cudaStream_t stream);

/// Bytes of device workspace segment_offsets_from_lengths needs for n.
size_t segment_offsets_workspace_bytes(int64_t n);

/**
 * offsets[0] = 0, offsets[i + 1] = lengths[0] + ... + lengths[i] for
 * i < n (n + 1 values). workspace: segment_offsets_workspace_bytes(n)
 * bytes of device memory.
 */
cudaError_t segment_offsets_from_lengths(
    const int64_t* lengths,
    int64_t n,
    int64_t* offsets,
    void* workspace,
    size_t workspace_bytes,
    cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
