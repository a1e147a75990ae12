#include <kernels/ivf_lists.h>

#include <cub/device/device_scan.cuh>

namespace faiss_gmm {
namespace kernels {

namespace {

/// Threads per block of the element-wise kernels.
constexpr int kElementwiseThreads = 256;
/// Warps per block of the scatter kernel: one warp copies one entry.
constexpr int kScatterWarps = 8;
/// Most blocks an element-wise grid launches (grid-stride loops beyond).
constexpr int64_t kMaxBlocks = 65535;

int elementwise_blocks(int64_t n) {
    const int64_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
    return int(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

/// Copies one entry per warp (its code, or its float vector, coalesced
/// across the warp), its id and its spill record into the entry's list
/// slot: the whole append of a batch in one launch, whatever the number of
/// lists.
__global__ void __launch_bounds__(kScatterWarps * 32)
    ivf_lists_scatter_kernel(IvfListsWriteView lists, IvfAppendBatch batch) {
    const int lane = threadIdx.x % 32;
    const int64_t warps_total = int64_t(gridDim.x) * kScatterWarps;
    for (int64_t e = int64_t(blockIdx.x) * kScatterWarps + threadIdx.x / 32;
         e < batch.n_entries;
         e += warps_total) {
        const int32_t l = batch.list[e];
        const int64_t pos = batch.position[e];
        uint8_t* dst = lists.codes[l] + pos * lists.code_size;
        if (batch.codes) {
            const uint8_t* src = batch.codes + e * lists.code_size;
            for (int c = lane; c < lists.code_size; c += 32) {
                dst[c] = src[c];
            }
        } else {
            const float* src = batch.source + batch.source_row[e] * lists.d;
            for (int c = lane; c < lists.d; c += 32) {
                reinterpret_cast<float*>(dst)[c] = src[c];
            }
        }
        if (lane == 0) {
            lists.ids[l][pos] = batch.id[e];
        }
        const int w = lists.record_width;
        for (int c = lane; c < w; c += 32) {
            lists.records[l][pos * w + c] = batch.record[e * w + c];
        }
    }
}

/// out[i] = value (grid-stride).
__global__ void fill_int32_kernel(int32_t* out, int64_t n, int32_t value) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        out[i] = value;
    }
}

/// out[i] = int32(in[i]) (grid-stride).
__global__ void
narrow_int64_to_int32_kernel(const int64_t* in, int64_t n, int32_t* out) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        out[i] = int32_t(in[i]);
    }
}

} // namespace

cudaError_t ivf_lists_scatter(
    const IvfListsWriteView& lists,
    const IvfAppendBatch& batch,
    cudaStream_t stream) {
    if (batch.n_entries < 0 || lists.d < 1 || lists.record_width < 0) {
        return cudaErrorInvalidValue;
    }
    if (batch.n_entries == 0) {
        return cudaSuccess;
    }
    const bool floats = !batch.codes;
    if (!lists.codes || !lists.ids || lists.code_size < 1 ||
        (floats && (lists.code_size != 4 * lists.d || !batch.source ||
                    !batch.source_row)) ||
        !batch.list || !batch.position || !batch.id ||
        (lists.record_width > 0 && (!lists.records || !batch.record))) {
        return cudaErrorInvalidValue;
    }
    const int64_t blocks =
        (batch.n_entries + kScatterWarps - 1) / kScatterWarps;
    ivf_lists_scatter_kernel<<<
        unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks),
        kScatterWarps * 32,
        0,
        stream>>>(lists, batch);
    return cudaGetLastError();
}

cudaError_t
fill_int32(int32_t* out, int64_t n, int32_t value, cudaStream_t stream) {
    if (n < 0 || (n > 0 && !out)) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    fill_int32_kernel<<<
        elementwise_blocks(n),
        kElementwiseThreads,
        0,
        stream>>>(out, n, value);
    return cudaGetLastError();
}

cudaError_t narrow_int64_to_int32(
    const int64_t* in, int64_t n, int32_t* out, cudaStream_t stream) {
    if (n < 0 || (n > 0 && (!in || !out))) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    narrow_int64_to_int32_kernel<<<
        elementwise_blocks(n),
        kElementwiseThreads,
        0,
        stream>>>(in, n, out);
    return cudaGetLastError();
}

size_t segment_offsets_workspace_bytes(int64_t n) {
    size_t bytes = 0;
    if (n <= 0) {
        return 0;
    }
    cub::DeviceScan::InclusiveSum(
        nullptr,
        bytes,
        static_cast<const int64_t*>(nullptr),
        static_cast<int64_t*>(nullptr),
        n);
    return bytes;
}

cudaError_t segment_offsets_from_lengths(
    const int64_t* lengths,
    int64_t n,
    int64_t* offsets,
    void* workspace,
    size_t workspace_bytes,
    cudaStream_t stream) {
    if (n < 0 || !offsets || (n > 0 && !lengths) ||
        workspace_bytes < segment_offsets_workspace_bytes(n) ||
        (workspace_bytes > 0 && !workspace)) {
        return cudaErrorInvalidValue;
    }
    cudaError_t err = cudaMemsetAsync(offsets, 0, sizeof(int64_t), stream);
    if (err != cudaSuccess || n == 0) {
        return err;
    }
    size_t bytes = workspace_bytes;
    return cub::DeviceScan::InclusiveSum(
        workspace, bytes, lengths, offsets + 1, n, stream);
}

} // namespace kernels
} // namespace faiss_gmm
