#include <faiss_gmm/gpu/impl/DeviceAllocation.h>

#include <utility>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace gpu {

namespace {

/**
 * alloc(&ptr, bytes)'s pointer, or a FaissException "<owner>: allocating
 * <bytes> bytes of <kind> for <what> failed: <CUDA error>".
 */
void* allocate_or_throw(
    cudaError_t (*alloc)(void**, size_t),
    size_t bytes,
    const char* kind,
    const char* what,
    const char* owner) {
    void* ptr = nullptr;
    const cudaError_t err = alloc(&ptr, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        FAISS_THROW_FMT(
            "%s: allocating %zu bytes of %s for %s failed: %s",
            owner,
            bytes,
            kind,
            what,
            cudaGetErrorString(err));
    }
    return ptr;
}

} // namespace

void throw_on_cuda_error(cudaError_t err, const char* what, const char* owner) {
    if (err != cudaSuccess) {
        cudaGetLastError(); // clear a sticky launch error for the next call
        FAISS_THROW_FMT(
            "%s: %s failed: %s (%s)",
            owner,
            what,
            cudaGetErrorName(err),
            cudaGetErrorString(err));
    }
}

void throw_on_cublas_error(
    cublasStatus_t status, const char* what, const char* owner) {
    FAISS_THROW_IF_NOT_FMT(
        status == CUBLAS_STATUS_SUCCESS,
        "%s: %s failed: cuBLAS status %d (%s)",
        owner,
        what,
        int(status),
        cublasGetStatusString(status));
}

DeviceScope::DeviceScope(int device, const char* owner) {
    throw_on_cuda_error(
        cudaGetDevice(&previous_), "querying the current CUDA device", owner);
    if (previous_ != device) {
        throw_on_cuda_error(
            cudaSetDevice(device), "selecting the CUDA device", owner);
    }
}

DeviceScope::~DeviceScope() {
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) {
        cudaSetDevice(previous_);
    }
}

DeviceAllocation::~DeviceAllocation() {
    release();
}

DeviceAllocation::DeviceAllocation(DeviceAllocation&& other) noexcept
    : ptr_(other.ptr_), bytes_(other.bytes_) {
    other.ptr_ = nullptr;
    other.bytes_ = 0;
}

DeviceAllocation&
DeviceAllocation::operator=(DeviceAllocation&& other) noexcept {
    if (this != &other) {
        release();
        std::swap(ptr_, other.ptr_);
        std::swap(bytes_, other.bytes_);
    }
    return *this;
}

void DeviceAllocation::reserve(
    size_t bytes, const char* what, const char* owner) {
    if (bytes > bytes_) {
        allocate(bytes, what, owner);
    }
}

void DeviceAllocation::allocate(
    size_t bytes, const char* what, const char* owner) {
    release();
    if (bytes == 0) {
        return;
    }
    ptr_ = allocate_or_throw(cudaMalloc, bytes, "device memory", what, owner);
    bytes_ = bytes;
}

void DeviceAllocation::release() {
    if (ptr_) {
        cudaFree(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
}

void* DeviceAllocation::detach() {
    void* ptr = ptr_;
    ptr_ = nullptr;
    bytes_ = 0;
    return ptr;
}

ScopedStream::ScopedStream(const char* owner) {
    throw_on_cuda_error(
        cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
        "creating a stream",
        owner);
}

ScopedStream::~ScopedStream() {
    cudaStreamDestroy(stream_);
}

PinnedAllocation::~PinnedAllocation() {
    release();
}

void PinnedAllocation::reserve(
    size_t bytes, const char* what, const char* owner) {
    if (bytes > bytes_) {
        allocate(bytes, what, owner);
    }
}

void PinnedAllocation::allocate(
    size_t bytes, const char* what, const char* owner) {
    release();
    ptr_ = allocate_or_throw(
        cudaMallocHost, bytes, "pinned host memory", what, owner);
    bytes_ = bytes;
}

void PinnedAllocation::release() {
    if (ptr_) {
        cudaFreeHost(ptr_);
    }
    ptr_ = nullptr;
    bytes_ = 0;
}

ScopedEvent::ScopedEvent(bool timing, const char* owner) {
    throw_on_cuda_error(
        cudaEventCreateWithFlags(
            &event_, timing ? cudaEventDefault : cudaEventDisableTiming),
        "creating an event",
        owner);
}

ScopedEvent::~ScopedEvent() {
    cudaEventDestroy(event_);
}

} // namespace gpu
} // namespace faiss_gmm
