/**
 * Internal (not installed): the CUDA and cuBLAS resources the GPU E-step
 * owns (events, pinned and counted device buffers, a cuBLAS handle), with
 * errors that name the E-step and what it was doing.
 */

#pragma once

#include <cstddef>
#include <initializer_list>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <kernels/gmm_estep.h>

namespace faiss_gmm {
namespace gpu {
namespace detail {

/// Names the E-step in its CUDA errors.
constexpr const char* kEStepOwner = "GPU E-step";

/// Throws a FaissException naming what was being done when err is an error.
inline void check_cuda(cudaError_t err, const char* what) {
    throw_on_cuda_error(err, what, kEStepOwner);
}

/// Throws a FaissException naming what was being done when a cuBLAS call
/// failed.
inline void check_cublas(cublasStatus_t status, const char* what) {
    throw_on_cublas_error(status, what, kEStepOwner);
}

/// A cuBLAS handle owned by its scope (created on first use).
class CublasHandle {
   public:
    CublasHandle() = default;
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    ~CublasHandle() {
        if (handle_) {
            cublasDestroy(handle_);
        }
    }
    /// Creates the handle (once) on the current device, bound to stream.
    void create(cudaStream_t stream) {
        if (handle_) {
            return;
        }
        check_cublas(cublasCreate(&handle_), "creating a cuBLAS handle");
        check_cublas(
            cublasSetStream(handle_, stream), "binding cuBLAS to the stream");
    }
    cublasHandle_t get() const {
        return handle_;
    }

   private:
    cublasHandle_t handle_ = nullptr;
};

/// A device allocation whose allocations count into a byte total.
class DeviceBuffer : public DeviceAllocation {
   public:
    /// DeviceAllocation::allocate, then bytes added to *total.
    void allocate(size_t bytes, const char* what, size_t* total) {
        DeviceAllocation::allocate(bytes, what, kEStepOwner);
        *total += bytes;
    }
};

/// A host array of floats and the device buffer it is copied to, named
/// for errors.
struct FloatUpload {
    DeviceBuffer* dst;
    const std::vector<float>* src;
    const char* what;
};

/// Queues on stream s the copy of each host array (all of it) to its
/// device buffer.
inline void
upload_floats(std::initializer_list<FloatUpload> copies, cudaStream_t s) {
    for (const FloatUpload& c : copies) {
        check_cuda(
            cudaMemcpyAsync(
                c.dst->as<void>(),
                c.src->data(),
                c.src->size() * 4,
                cudaMemcpyHostToDevice,
                s),
            c.what);
    }
}

/// Queues on stream s the zeroing of each accumulator (all its bytes).
inline void zero_accumulators(
    std::initializer_list<DeviceBuffer*> accumulators, cudaStream_t s) {
    for (DeviceBuffer* acc : accumulators) {
        check_cuda(
            cudaMemsetAsync(acc->as<void>(), 0, acc->bytes(), s),
            "zeroing the accumulators");
    }
}

/// A pinned host allocation that names the E-step in its errors.
class PinnedBuffer : public PinnedAllocation {
   public:
    /// PinnedAllocation::allocate, the E-step named as the owner.
    void allocate(size_t bytes, const char* what) {
        PinnedAllocation::allocate(bytes, what, kEStepOwner);
    }
    float* data() const {
        return as<float>();
    }
    double* doubles() const {
        return as<double>();
    }
};

/// A CUDA event (timing or not) that names the E-step in its errors.
class Event : public ScopedEvent {
   public:
    explicit Event(bool timing = false) : ScopedEvent(timing, kEStepOwner) {}
};

/// The kernels' name of an E-step precision.
inline kernels::EStepMath to_kernel_math(EStepPrecision p) {
    switch (p) {
    case EStepPrecision::FP32:
        return kernels::EStepMath::FP32;
    case EStepPrecision::TF32:
        return kernels::EStepMath::TF32;
    case EStepPrecision::BF16:
        return kernels::EStepMath::BF16;
    }
    FAISS_THROW_FMT("unknown EStepPrecision %d", int(p));
}

/// The cuBLAS compute type of the E-step's GEMMs at a precision: tf32
/// tensor cores for TF32, fp32 otherwise (bf16 inputs accumulate in fp32).
inline cublasComputeType_t cublas_compute_type(kernels::EStepMath math) {
    return math == kernels::EStepMath::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                            : CUBLAS_COMPUTE_32F;
}

} // namespace detail
} // namespace gpu
} // namespace faiss_gmm
