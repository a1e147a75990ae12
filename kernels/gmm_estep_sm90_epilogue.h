/**
 * Element-wise epilogues of the Hopper E-step, shared by both passes so
 * that they compute bit-identical logits (the responsibilities of pass 2
 * then sum to 1 against pass 1's normaliser).
 *
 * Accumulator layout of wgmma m64nNk16 (fp32), per warpgroup: thread
 * (warp w, lane = 4 g + t) holds d[4 j + e] = C[16 w + g + 8 (e >> 1)]
 * [8 j + 2 t + (e & 1)], j = 0 .. N/8 - 1. In both passes the rows are
 * components and the columns points ("transposed" logits), so the
 * per-component terms of a thread are two rows (registers) and the
 * probabilities are directly the A operand of the statistics product:
 * k-block q of that product takes d[8 q .. 8 q + 7] packed pairwise.
 */

#pragma once

#include <cmath>
#include <cstdint>

#include <kernels/gmm_estep_logits.h>
#include <kernels/gmm_estep_sm90_ptx.h>

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

template <bool DIAG>
__device__ __forceinline__ RowTerms load_row_terms(
    const float* __restrict__ row_const,
    const float* __restrict__ row_scale,
    const float* __restrict__ row_norm,
    int row,
    int k_pad) {
    RowTerms r;
    if (row < k_pad) {
        r.constant = __ldg(row_const + row);
        if constexpr (!DIAG) {
            r.scale = __ldg(row_scale + row);
            r.norm = __ldg(row_norm + row);
        }
    }
    return r;
}

/// Adds v to *dst (double atomics, one per statistic and CTA).
__device__ __forceinline__ void add_double(double* dst, float v) {
    atomicAdd(dst, double(v));
}

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm
