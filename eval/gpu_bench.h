/**
 * Measurement helpers shared by the GPU bench programs (bench_em,
 * bench_search, bench_multi_gpu): CUDA error checks, medians, the device
 * line and the copy bandwidths that kernel rates are compared with.
 */

#pragma once

#include <vector>

#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/impl/DeviceAllocation.h>

/// Throws a FaissException "bench: <call> failed: <CUDA error>" when call
/// fails (faiss_gmm's one CUDA error check).
#define CUDA_OK(call)                                                          \
    ::faiss_gmm::gpu::throw_on_cuda_error((call), #call, "bench")

namespace faiss_gmm {
namespace eval {

/// The middle value of v (the upper one of an even count; 0 when empty).
double median(std::vector<double> v);

/**
 * Make `device` current and print "device N: name, SMs, memory"; throws
 * naming the device when it is not usable.
 *
 * @param device CUDA device ordinal
 */
void use_device(int device);

/**
 * Device-to-device copy bandwidth of the current device: a 1 GiB
 * cudaMemcpy, (bytes read + bytes written) / time, GB/s, median of 5 after
 * one warm-up copy.
 */
double device_copy_bandwidth();

/// Pinned host -> device copy rate of a 1 GiB buffer, GB/s, median of 5
/// after one warm-up copy.
double pinned_copy_peak();

} // namespace eval
} // namespace faiss_gmm
