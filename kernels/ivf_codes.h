/**
 * Codes of the GPU inverted lists: how a stored entry holds its vector, as
 * the scan kernel decodes it on the fly. The encodings are FAISS's, byte
 * for byte, so lists copy between IndexIVFGMM and GpuIndexIVFGMM unchanged
 * (the host encodes SQ codes with FAISS itself, whose fp16 rounding of
 * ties depends on how FAISS was built):
 *  - Float32: the vector's d floats (IndexIVFFlat);
 *  - Float16: d IEEE halves (ScalarQuantizer QT_fp16, round to nearest
 *    even);
 *  - SQ8: d bytes, c_i = int(255 clamp((r_i - vmin_i) / vdiff_i, 0, 1))
 *    (c_i = 0 where vdiff_i = 0), decoded as vmin_i + (c_i + 0.5) / 255
 *    vdiff_i (ScalarQuantizer QT_8bit, per-dimension ranges).
 * r is the vector, or with residual_means its residual x - mu_l to the
 * mean of the list it is stored in (FAISS's by_residual).
 *
 * Plain pointers and sizes only (see kernels/README.md).
 */

#pragma once

#include <cstdint>

#include <kernels/host_device.h>

namespace faiss_gmm {
namespace kernels {

/// What a list entry stores.
enum class IvfCodeKind : int32_t {
    Float32 = 0, ///< d floats
    Float16 = 1, ///< d halves
    SQ8 = 2,     ///< d bytes, per-dimension ranges
};

/// The encoding of the entries of every list (device pointers).
struct IvfCodec {
    IvfCodeKind kind = IvfCodeKind::Float32;
    /// nlist x d list means: entries encode x - mu_l (null: x itself;
    /// always null for Float32)
    const float* residual_means = nullptr;
    /// SQ8 decoding as one multiply-add, value_i = c_i scale_i + bias_i:
    /// scale_i = vdiff_i / 255, bias_i = vmin_i + 0.5 scale_i (d floats)
    const float* scale = nullptr;
    const float* bias = nullptr;
};

/// Bytes of one entry's code for dimension d.
FAISS_GMM_HOST_DEVICE inline int ivf_code_size(IvfCodeKind kind, int d) {
    switch (kind) {
    case IvfCodeKind::Float16:
        return 2 * d;
    case IvfCodeKind::SQ8:
        return d;
    case IvfCodeKind::Float32:
    default:
        return 4 * d;
    }
}

/// Whether the codec's device pointers are those its kind needs.
inline bool ivf_codec_complete(const IvfCodec& c) {
    switch (c.kind) {
    case IvfCodeKind::Float32:
        return c.residual_means == nullptr;
    case IvfCodeKind::Float16:
        return true;
    case IvfCodeKind::SQ8:
        return c.scale && c.bias;
    }
    return false;
}

} // namespace kernels
} // namespace faiss_gmm
