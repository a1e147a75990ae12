/**
 * The logit formula and log-sum-exp helpers shared by every fused E-step
 * kernel (gmm_estep.cu's sm_80 kernels and the Hopper kernels of
 * gmm_estep_sm90.h), so that all passes compute bit-identical logits from
 * the same product (the responsibilities of a statistics pass then sum to
 * 1 against its log-normaliser pass). Device code only.
 */

#pragma once

#include <cmath>

namespace faiss_gmm {
namespace kernels {

__device__ __forceinline__ float fast_exp2(float v) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}

/// Per-component terms of one accumulator row (EStepModel's row_const,
/// row_scale, row_norm); padding rows have constant -inf (probability 0).
struct RowTerms {
    float constant = -INFINITY;
    float scale = 0;
    float norm = 0;
};

/// Logit in log2 units from the product (x' . mu' spherical, the depth-2d
/// product diagonal); dist receives the clamped squared distance
/// (spherical only).
template <bool DIAG>
__device__ __forceinline__ float
logit2(float product, const RowTerms& row, float point_norm, float& dist) {
    if constexpr (DIAG) {
        dist = 0;
        return row.constant + product;
    } else {
        dist = fmaxf(point_norm + row.norm - 2.0f * product, 0.0f);
        return row.constant - row.scale * dist;
    }
}

/// (m, s) <- log-sum-exp merge with (m2, s2), in log2 units.
__device__ __forceinline__ void
lse_merge(float& m, float& s, float m2, float s2) {
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) {
        return;
    }
    s = s * fast_exp2(m - mn) + s2 * fast_exp2(m2 - mn);
    m = mn;
}

/// Log-sum-exp slack (log2 units): a running maximum moves only when a
/// logit exceeds it by more than this (terms stay <= 2^8, fp32 sums are
/// unaffected), which skips the rescaling exp2 of almost every tile.
constexpr float kLseSlack = 8.0f;

/// Adds two logits of one point column (accumulator rows g and g + 8) to
/// the column's running (max, sum of exp2).
__device__ __forceinline__ void
lse_add(float& m, float& s, float l0, float l1) {
    const float mx = fmaxf(l0, l1);
    if (mx > m + kLseSlack) {
        s *= fast_exp2(m - mx);
        m = mx;
    }
    if (m != -INFINITY) {
        s += fast_exp2(l0 - m) + fast_exp2(l1 - m);
    }
}

} // namespace kernels
} // namespace faiss_gmm
