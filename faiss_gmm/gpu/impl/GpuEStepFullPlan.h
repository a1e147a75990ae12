/**
 * Internal (not installed): the host policy of the full-covariance GPU
 * E-step (kernels/gmm_estep_full.h): its arithmetic, the rows of a chunk
 * and when the fp32 statistics product is folded into the double
 * accumulators. Pure functions, no device: tests check them without one.
 */

#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/impl/Blas.h>

namespace faiss_gmm {
namespace gpu {
namespace detail {

/**
 * Largest chunk buffers of the full-covariance E-step, bytes (and at most
 * half of the budget left after the model): the whitened points Z (rows x
 * K x d floats) dominate. 1 GiB gives 1984 rows at d = 128, K = 1024 (the
 * Z product then has 1984 x 131072 outputs, depth 128) and 8064 rows at
 * K = 256.
 */
constexpr size_t kFullChunkBytes = size_t(1) << 30;

/**
 * The statistics product S += R^T F sums in fp32 over at most this many
 * rows before it is added into the double accumulators (and restarted):
 * as many as the GEMM path's single product sums (kernels/README.md), so
 * that the fp32 error stays that path's; the fold (K x (d^2 + d + 1)
 * doubles, kernels::estep_full_statistics_values) then runs about every
 * 64k rows, not after every chunk.
 */
constexpr idx_t kFullFoldRows = 65536;

/// Chunk rows are a multiple of this when there are at least this many.
constexpr idx_t kFullRowAlign = 64;

/**
 * Rows per chunk of the full-covariance E-step: as many rows of row_bytes
 * (kernels::estep_full_row_bytes) as budget_bytes holds, a multiple of
 * kFullRowAlign when that is at least kFullRowAlign, at least 1 (a row
 * larger than the budget still runs, one at a time, if the device has the
 * memory), at most pass_rows (the rows of one pass, at least 1) and at most
 * kFullFoldRows (one statistics product never sums more rows in fp32).
 */
inline idx_t
full_estep_chunk_rows(int64_t row_bytes, size_t budget_bytes, idx_t pass_rows) {
    const idx_t pass = std::min(std::max<idx_t>(pass_rows, 1), kFullFoldRows);
    if (row_bytes <= 0) {
        return pass;
    }
    idx_t fit = idx_t(budget_bytes / size_t(row_bytes));
    if (fit >= kFullRowAlign) {
        fit = fit / kFullRowAlign * kFullRowAlign;
    }
    return std::min(std::max<idx_t>(fit, 1), pass);
}

/**
 * Budget of the chunk buffers: kFullChunkBytes, and at most half of what
 * the device budget leaves (left_bytes: after the data and the model).
 */
inline size_t full_estep_chunk_budget(size_t left_bytes) {
    return std::min(kFullChunkBytes, left_bytes / 2);
}

/**
 * Whether the statistics product must be folded into the double
 * accumulators before a chunk of next_rows rows is added to it, given the
 * rows it has summed since the last fold: when it holds some and the chunk
 * would take it past kFullFoldRows (chunks hold at most kFullFoldRows
 * rows, so one product never sums more rows in fp32).
 */
inline bool full_estep_must_fold(idx_t pending_rows, idx_t next_rows) {
    return pending_rows > 0 && pending_rows + next_rows > kFullFoldRows;
}

/**
 * The arithmetic of the full-covariance products for a configured
 * precision: FP32 stays FP32; TF32 and BF16 run in TF32 (bf16 inputs would
 * round the whitened coordinates z = x'^T U to 8 bits before z - o cancels;
 * kernels/gmm_estep_full.h).
 */
inline EStepPrecision full_estep_precision(EStepPrecision configured) {
    return configured == EStepPrecision::FP32 ? EStepPrecision::FP32
                                              : EStepPrecision::TF32;
}

/**
 * A precision Cholesky value as the whitening product multiplies by it:
 * unchanged for FP32, the nearest tf32 value (ties away from zero) for
 * TF32, exactly as kernels/gmm_estep_full.cu rounds the product matrix.
 */
inline float full_estep_factor_value(float u, EStepPrecision p) {
    if (full_estep_precision(p) != EStepPrecision::TF32 || !std::isfinite(u)) {
        return u;
    }
    uint32_t bits;
    std::memcpy(&bits, &u, 4);
    bits = (bits + 0x1000u) & 0xffffe000u;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
}

/**
 * Second moments about a component's mean from their whitened form: with u
 * the component's factor as the product used it (d x d row-major, upper
 * triangular, double) and m = sum r U^T (x - mu)(x - mu)^T U (d x d,
 * symmetric), adds U^-T m U^-1 to out (d x d, both triangles, symmetrised).
 * m is overwritten. Two triangular solves in double (LAPACK's dtrsm): read
 * column-major, u is L = U^T (lower), and U^-T m U^-1 = L^-1 m L^-T.
 */
inline void
add_unwhitened_moments(int d, const double* u, double* m, double* out) {
    const double one = 1.0;
    dtrsm_(
        "Left",
        "Lower",
        "No transpose",
        "Non-unit",
        &d,
        &d,
        &one,
        u,
        &d,
        m,
        &d);
    dtrsm_(
        "Right", "Lower", "Transpose", "Non-unit", &d, &d, &one, u, &d, m, &d);
    for (int a = 0; a < d; a++) {
        for (int b = 0; b < d; b++) {
            out[size_t(a) * d + b] +=
                0.5 * (m[size_t(a) * d + b] + m[size_t(b) * d + a]);
        }
    }
}

} // namespace detail
} // namespace gpu
} // namespace faiss_gmm
