#include <eval/gpu_bench.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <faiss_gmm/gpu/GpuEmTrainer.h>

namespace faiss_gmm {
namespace eval {

namespace {

/// Median rate of 5 copies of `bytes` after one warm-up, CUDA events on the
/// default stream, GB/s of `bytes_per_byte` bytes moved per byte copied.
double timed_copy_rate(
    void* dst,
    const void* src,
    size_t bytes,
    cudaMemcpyKind kind,
    double bytes_per_byte) {
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    std::vector<double> rates;
    for (int r = 0; r < 6; r++) {
        CUDA_OK(cudaEventRecord(e0));
        CUDA_OK(cudaMemcpyAsync(dst, src, bytes, kind));
        CUDA_OK(cudaEventRecord(e1));
        CUDA_OK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0) {
            rates.push_back(bytes_per_byte * bytes / (ms * 1e6));
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return median(rates);
}

/// Bytes of the copies that measure bandwidth.
constexpr size_t kCopyBytes = size_t(1) << 30;

} // namespace

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void use_device(int device) {
    FAISS_THROW_IF_NOT_FMT(
        gpu::gpu_is_available(device), "CUDA device %d is not usable", device);
    CUDA_OK(cudaSetDevice(device));
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, device));
    printf(
        "device %d: %s, %d SMs, %.1f GB\n",
        device,
        prop.name,
        prop.multiProcessorCount,
        prop.totalGlobalMem / 1e9);
}

double device_copy_bandwidth() {
    void *src = nullptr, *dst = nullptr;
    CUDA_OK(cudaMalloc(&src, kCopyBytes));
    CUDA_OK(cudaMalloc(&dst, kCopyBytes));
    CUDA_OK(cudaMemset(src, 1, kCopyBytes));
    const double rate =
        timed_copy_rate(dst, src, kCopyBytes, cudaMemcpyDeviceToDevice, 2.0);
    cudaFree(src);
    cudaFree(dst);
    return rate;
}

double pinned_copy_peak() {
    void *host = nullptr, *dev = nullptr;
    CUDA_OK(cudaMallocHost(&host, kCopyBytes));
    CUDA_OK(cudaMalloc(&dev, kCopyBytes));
    std::memset(host, 1, kCopyBytes);
    const double rate =
        timed_copy_rate(dev, host, kCopyBytes, cudaMemcpyHostToDevice, 1.0);
    cudaFreeHost(host);
    cudaFree(dev);
    return rate;
}

} // namespace eval
} // namespace faiss_gmm
