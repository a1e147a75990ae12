#include <faiss_gmm/gpu/impl/GpuIndexContext.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>

namespace faiss_gmm {
namespace gpu {

GpuIndexContext::GpuIndexContext(int device) : device_(device) {
    FAISS_THROW_IF_NOT_FMT(
        gpu_is_available(device),
        "GpuIndexIVFGMM: CUDA device %d is not usable",
        device);
    DeviceScope scope(device);
    try {
        throw_on_cuda_error(
            cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
            "creating the index's CUDA stream");
        for (cudaEvent_t& e : events_) {
            throw_on_cuda_error(cudaEventCreate(&e), "creating a timing event");
        }
        throw_on_cublas_error(
            cublasCreate(&cublas_), "creating a cuBLAS handle");
        throw_on_cublas_error(
            cublasSetStream(cublas_, stream_), "binding cuBLAS to the stream");
        throw_on_cublas_error(
            cublasSetMathMode(cublas_, CUBLAS_PEDANTIC_MATH),
            "setting cuBLAS math mode");
    } catch (...) {
        destroy();
        throw;
    }
}

GpuIndexContext::~GpuIndexContext() {
    destroy();
}

void GpuIndexContext::destroy() noexcept {
    int previous = -1;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess &&
                          previous != device_ &&
                          cudaSetDevice(device_) == cudaSuccess;
    if (cublas_) {
        cublasDestroy(cublas_);
        cublas_ = nullptr;
    }
    for (cudaEvent_t& e : events_) {
        if (e) {
            cudaEventDestroy(e);
            e = nullptr;
        }
    }
    if (stream_) {
        cudaStreamDestroy(stream_);
        stream_ = nullptr;
    }
    if (switched) {
        cudaSetDevice(previous);
    }
}

void GpuIndexContext::upload(
    void* dst, const void* src, size_t bytes, const char* what) const {
    throw_on_cuda_error(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
        what);
}

void GpuIndexContext::download(
    void* dst, const void* src, size_t bytes, const char* what) const {
    throw_on_cuda_error(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
        what);
}

void GpuIndexContext::synchronize(const char* what) const {
    throw_on_cuda_error(cudaStreamSynchronize(stream_), what);
}

void GpuIndexContext::record(int i) const {
    throw_on_cuda_error(
        cudaEventRecord(events_[i], stream_), "recording events");
}

float GpuIndexContext::elapsed_ms(int a, int b) const {
    float ms = 0;
    throw_on_cuda_error(
        cudaEventElapsedTime(&ms, events_[a], events_[b]),
        "reading the timing events");
    return ms;
}

} // namespace gpu
} // namespace faiss_gmm
