/**
 * FAISS_GMM_HOST_DEVICE: marks a function that host code and CUDA kernels
 * both call (__host__ __device__ under nvcc, nothing for the host
 * compiler), so that one definition serves the CPU and the GPU.
 */

#pragma once

#if defined(__CUDACC__)
#define FAISS_GMM_HOST_DEVICE __host__ __device__
#else
#define FAISS_GMM_HOST_DEVICE
#endif
