/**
 * Internal (not installed): the per-index CUDA resources of GpuIndexIVFGMM
 * (device, stream, cuBLAS handle, timing events) and the copies every stage
 * of its add and search makes, with errors that name what failed.
 */

#pragma once

#include <cstddef>

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace faiss_gmm {
namespace gpu {

/** Stream, cuBLAS handle and events of one GPU index. */
class GpuIndexContext {
   public:
    /// Number of timing events (coarse, scan, select boundaries).
    static constexpr int kNumEvents = 4;

    /// Creates the resources on `device` (which must be usable); cuBLAS
    /// products in strict fp32 (TF32 would move coarse scores off the
    /// CPU's).
    explicit GpuIndexContext(int device);
    ~GpuIndexContext();
    GpuIndexContext(const GpuIndexContext&) = delete;
    GpuIndexContext& operator=(const GpuIndexContext&) = delete;

    int device() const {
        return device_;
    }
    cudaStream_t stream() const {
        return stream_;
    }
    cublasHandle_t cublas() const {
        return cublas_;
    }
    cudaEvent_t event(int i) const {
        return events_[i];
    }

    /// Asynchronous host -> device copy on the stream.
    void
    upload(void* dst, const void* src, size_t bytes, const char* what) const;
    /// Asynchronous device -> host copy on the stream.
    void
    download(void* dst, const void* src, size_t bytes, const char* what) const;
    /// Waits for the stream.
    void synchronize(const char* what) const;
    /// Records event i on the stream.
    void record(int i) const;
    /// Milliseconds between events a and b (both recorded and completed).
    float elapsed_ms(int a, int b) const;

   private:
    /// Frees everything; never throws (runs in the destructor).
    void destroy() noexcept;

    int device_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    cudaEvent_t events_[kNumEvents] = {nullptr, nullptr, nullptr, nullptr};
};

} // namespace gpu
} // namespace faiss_gmm
