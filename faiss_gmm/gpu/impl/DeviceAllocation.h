/**
 * Scoped CUDA resources shared by faiss_gmm's GPU code: error checks that
 * throw, the current-device scope, device and pinned host allocations,
 * streams and events.
 * Internal (not installed): the GPU sources include it, users do not.
 */

#pragma once

#include <cstddef>

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace faiss_gmm {
namespace gpu {

/// Prefix of the errors of GpuIndexIVFGMM and its lists, the default owner.
constexpr const char* kGpuIndexOwner = "GpuIndexIVFGMM";

/**
 * Throws a FaissException "<owner>: <what> failed: <CUDA error>" when err is
 * an error (and clears a sticky launch error first, so that the next call
 * does not report it again).
 *
 * @param err   result of a CUDA call
 * @param what  what the call was doing, for the message
 * @param owner component named first in the message
 */
void throw_on_cuda_error(
    cudaError_t err, const char* what, const char* owner = kGpuIndexOwner);

/**
 * Throws a FaissException "owner: what failed: cuBLAS status N (name)" when
 * status is not CUBLAS_STATUS_SUCCESS.
 */
void throw_on_cublas_error(
    cublasStatus_t status,
    const char* what,
    const char* owner = kGpuIndexOwner);

/// Makes `device` current for its scope and restores the previous one.
class DeviceScope {
   public:
    /**
     * @param device CUDA device ordinal to make current
     * @param owner  component named first in an error message
     */
    explicit DeviceScope(int device, const char* owner = kGpuIndexOwner);
    ~DeviceScope();
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

   private:
    int previous_ = -1;
};

/// One device allocation owned by its scope (cudaMalloc / cudaFree).
class DeviceAllocation {
   public:
    DeviceAllocation() = default;
    ~DeviceAllocation();
    DeviceAllocation(const DeviceAllocation&) = delete;
    DeviceAllocation& operator=(const DeviceAllocation&) = delete;
    DeviceAllocation(DeviceAllocation&& other) noexcept;
    DeviceAllocation& operator=(DeviceAllocation&& other) noexcept;

    /**
     * Make the allocation hold at least `bytes`: a larger request frees the
     * memory and allocates anew (contents are not kept), a smaller one
     * keeps what is there.
     *
     * @param bytes size wanted
     * @param what  what the memory is for, named when the device is out of
     *              memory
     * @param owner component named first in that error
     */
    void
    reserve(size_t bytes, const char* what, const char* owner = kGpuIndexOwner);
    /**
     * Make the allocation hold exactly `bytes` (0: nothing): frees the
     * memory, then allocates. Parameters as reserve().
     */
    void allocate(
        size_t bytes, const char* what, const char* owner = kGpuIndexOwner);
    /// Free the memory.
    void release();
    /// Hand the memory over to the caller, who frees it with cudaFree.
    void* detach();
    /// the device pointer, typed
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    /// bytes allocated
    size_t bytes() const {
        return bytes_;
    }

   private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

/// A non-blocking CUDA stream owned by its scope.
class ScopedStream {
   public:
    /// @param owner component named first in an error message
    explicit ScopedStream(const char* owner = kGpuIndexOwner);
    ~ScopedStream();
    ScopedStream(const ScopedStream&) = delete;
    ScopedStream& operator=(const ScopedStream&) = delete;

    /// the stream
    cudaStream_t get() const {
        return stream_;
    }

   private:
    cudaStream_t stream_ = nullptr;
};

/// Pinned (page-locked) host memory owned by its scope (cudaMallocHost /
/// cudaFreeHost).
class PinnedAllocation {
   public:
    PinnedAllocation() = default;
    ~PinnedAllocation();
    PinnedAllocation(const PinnedAllocation&) = delete;
    PinnedAllocation& operator=(const PinnedAllocation&) = delete;

    /**
     * Make the allocation hold at least `bytes`: a larger request frees the
     * memory and allocates anew (contents are not kept), a smaller one
     * keeps what is there.
     *
     * @param bytes size wanted
     * @param what  what the memory is for, named when the allocation fails
     * @param owner component named first in that error
     */
    void
    reserve(size_t bytes, const char* what, const char* owner = kGpuIndexOwner);
    /// Free the memory, then allocate `bytes`. Parameters as reserve().
    void allocate(
        size_t bytes, const char* what, const char* owner = kGpuIndexOwner);
    /// Free the memory.
    void release();
    /// the host pointer, typed
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    /// bytes allocated
    size_t bytes() const {
        return bytes_;
    }

   private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

/// A CUDA event owned by its scope.
class ScopedEvent {
   public:
    /**
     * @param timing false: created with cudaEventDisableTiming
     * @param owner  component named first in an error message
     */
    explicit ScopedEvent(
        bool timing = false, const char* owner = kGpuIndexOwner);
    ~ScopedEvent();
    ScopedEvent(const ScopedEvent&) = delete;
    ScopedEvent& operator=(const ScopedEvent&) = delete;

    /// the event
    cudaEvent_t get() const {
        return event_;
    }

   private:
    cudaEvent_t event_ = nullptr;
};

} // namespace gpu
} // namespace faiss_gmm
