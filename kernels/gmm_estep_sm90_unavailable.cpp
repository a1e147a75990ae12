// The Hopper E-step in builds without sm_90 code (CMAKE_CUDA_ARCHITECTURES
// without 90): never supported, so the host keeps the sm_80 kernels.

#include <kernels/gmm_estep_sm90.h>

namespace faiss_gmm {
namespace kernels {

bool estep_sm90_built() {
    return false;
}

bool estep_sm90_supports(const EStepModel&, int, int) {
    return false;
}

cudaError_t gmm_estep_sm90(
    const EStepModel&,
    int64_t,
    const void*,
    const float*,
    float*,
    double*,
    const EStepAccumulators&,
    int,
    cudaStream_t) {
    return cudaErrorNotSupported;
}

} // namespace kernels
} // namespace faiss_gmm
