/**
 * Device encoding and decoding of the list codes of ivf_codes.h, one
 * component at a time: what the append kernel writes and the scan kernel
 * reads. CUDA translation units only.
 */

#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include <kernels/ivf_codes.h>

namespace faiss_gmm {
namespace kernels {

/// Writes component i of r (the vector or its residual) into code, as
/// FAISS encodes it (IndexIVFFlat, ScalarQuantizer QT_fp16 / QT_8bit).
__device__ __forceinline__ void
encode_component(const IvfCodec& codec, float r, int i, uint8_t* code) {
    switch (codec.kind) {
    case IvfCodeKind::Float32:
        reinterpret_cast<float*>(code)[i] = r;
        break;
    case IvfCodeKind::Float16:
        reinterpret_cast<__half*>(code)[i] = __float2half_rn(r);
        break;
    case IvfCodeKind::SQ8: {
        // FAISS: xi = (x - vmin) / vdiff clamped to [0, 1], code (int)(255
        // xi); the division and the product are rounded as on the host
        const float vdiff = codec.vdiff[i];
        float xi = 0;
        if (vdiff != 0) {
            xi = __fdiv_rn(r - codec.vmin[i], vdiff);
            xi = xi < 0 ? 0.0f : (xi > 1.0f ? 1.0f : xi);
        }
        code[i] = uint8_t(int(__fmul_rn(255.0f, xi)));
        break;
    }
    }
}

} // namespace kernels
} // namespace faiss_gmm
