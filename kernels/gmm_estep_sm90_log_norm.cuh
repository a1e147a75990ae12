/**
 * Pass 1 of the Hopper E-step: log2 Z_i = log2 sum_k exp2(l2_ik) per point
 * and the CTA's sum of ln Z_i (sm_90a only; included by
 * gmm_estep_sm90_launch.cu).
 */

#pragma once

#include <cuda.h>

#include <kernels/gmm_estep_sm90_epilogue.h>
#include <kernels/gmm_estep_sm90_ptx.h>
#include <kernels/gmm_estep_sm90_tile.h>
#include <kernels/gmm_estep_sm90_wgmma.h>

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

/// Arguments of the pass-1 kernel besides its tensor maps.
struct LnParams {
    const float* norms;     ///< rows floats, |x'|^2 (spherical)
    const float* row_const; ///< k_pad floats
    const float* row_scale; ///< k_pad floats (spherical)
    const float* row_norm;  ///< k_pad floats (spherical)
    float* log2_z;          ///< rows floats out (+inf for rows >= n)
    double* partials;       ///< gridDim.x doubles out, sum ln Z per CTA
    int64_t n;              ///< points
    int64_t rows;           ///< padded rows (multiple of 64)
    int k_pad;              ///< components, multiple of 64
};

/**
 * CTA = 256 points (consumer warpgroup w owns points [128 w, 128 w + 128)),
 * resident in shared memory; the component matrix streams through
 * kLnStages boxes of 64 components x 64 columns, loaded by TMA from the
 * producer thread and shared by both consumers. Per 64-component tile a
 * consumer computes the transposed logits (64 components x 128 points,
 * wgmma m64n128k16, A = components, B = points, both K-major) and folds
 * them into a running (max, sum of exp2) per point column held by each
 * thread; the two consumers alternate their products (named barriers) so
 * one's epilogue overlaps the other's tensor-core work. At the end the
 * per-thread states are merged across lanes and warps (once per CTA):
 * log2 Z per point and the CTA's sum of ln Z in a fixed order.
 */
template <bool DIAG, int DEPTH>
__global__ void __launch_bounds__(kThreads, 1) log_norm_sm90_kernel(
    const __grid_constant__ CUtensorMap tm_points,
    const __grid_constant__ CUtensorMap tm_comps,
    const LnParams p) {
    constexpr LnLayout L = ln_layout(DEPTH);
    constexpr int kSteps = DEPTH / 16; // k16 steps over the depth
    constexpr uint32_t kPointBytes = uint32_t(L.nbox) * kLnPointBoxBytes;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = align_smem(smem_raw);
    unsigned char* points = smem + L.points;
    unsigned char* stages = smem + L.stages;
    float* point_norm = reinterpret_cast<float*>(smem + L.norms);
    float* merge = reinterpret_cast<float*>(smem + L.merge);
    double* ll_warp = reinterpret_cast<double*>(smem + L.ll);
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L.bars);
    uint64_t* points_full = bars;
    uint64_t* full = bars + 1;
    uint64_t* empty = bars + 1 + kLnStages;

    const int warpgroup = threadIdx.x / kWarpgroup;
    const int64_t row0 = int64_t(blockIdx.x) * kLnPoints;
    const int k_tiles = p.k_pad / kLnComponents;
    const int total_boxes = k_tiles * L.nbox;

    init_ring_barriers(bars, kLnStages, 2);

    if (warpgroup == 0) {
        // Producer: the CTA's points once, then every component box.
        setmaxnreg_dec<kProducerRegisters>();
        if (threadIdx.x == 0) {
            prefetch_tensor_map(&tm_points);
            prefetch_tensor_map(&tm_comps);
            mbar_arrive_expect_tx(points_full, kPointBytes);
            for (int b = 0; b < L.nbox; b++) {
                tma_load_2d(
                    points + b * kLnPointBoxBytes,
                    &tm_points,
                    b * kBoxColumns,
                    int(row0),
                    points_full);
            }
            for (int c = 0; c < total_boxes; c++) {
                const int s = c % kLnStages;
                const uint32_t phase = uint32_t(c / kLnStages) & 1u;
                mbar_wait(empty + s, phase ^ 1u);
                mbar_arrive_expect_tx(full + s, uint32_t(kLnStageBytes));
                tma_load_2d(
                    stages + s * kLnStageBytes,
                    &tm_comps,
                    (c % L.nbox) * kBoxColumns,
                    (c / L.nbox) * kLnComponents,
                    full + s);
            }
        }
        return;
    }

    // Consumers.
    setmaxnreg_inc<kConsumerRegisters>();
    const int cw = warpgroup - 1; // consumer index 0 / 1
    const int tid = threadIdx.x - warpgroup * kWarpgroup;
    const int warp = tid >> 5; // warp in the warpgroup
    const int lane = tid & 31;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int col_base = cw * kLnPointsPerWarpgroup; // my points in the CTA

    if constexpr (!DIAG) {
        const int64_t r = row0 + col_base + tid;
        point_norm[col_base + tid] = r < p.rows ? __ldg(p.norms + r) : 0.0f;
        named_sync(kBarWarpgroup0 + cw, kWarpgroup);
    }

    float run_m[kLnPointsPerWarpgroup / 4], run_s[kLnPointsPerWarpgroup / 4];
#pragma unroll
    for (int i = 0; i < kLnPointsPerWarpgroup / 4; i++) {
        run_m[i] = -INFINITY;
        run_s[i] = 0;
    }
    float acc[kLnPointsPerWarpgroup / 2];

    // Descriptors (K-major): this warpgroup's 128 points and the stage
    // ring; offsets are added in 16-byte units.
    const uint64_t points_desc =
        make_desc(smem_addr(points) + uint32_t(col_base) * kRowBytes, 16, 1024);
    const uint64_t stages_desc = make_desc(smem_addr(stages), 16, 1024);
#pragma unroll
    for (int i = 0; i < kLnPointsPerWarpgroup / 2; i++) {
        acc[i] = 0;
    }
    mbar_wait(points_full, 0);
    if (cw == 1 && k_tiles > 0) {
        named_arrive(kBarTurn0, 2 * kWarpgroup); // consumer 0 goes first
    }

    for (int j = 0; j < k_tiles; j++) {
        const int c0 = j * L.nbox;
#pragma unroll
        for (int b = 0; b < L.nbox; b++) {
            const int c = c0 + b;
            mbar_wait(full + c % kLnStages, uint32_t(c / kLnStages) & 1u);
        }
        named_sync(kBarTurn0 + cw, 2 * kWarpgroup);
        wgmma_fence();
#pragma unroll
        for (int b = 0; b < L.nbox; b++) {
            const uint64_t comp_desc = desc_advance(
                stages_desc, uint32_t((c0 + b) % kLnStages) * kLnStageBytes);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (4 * b + kk < kSteps) {
                    WgmmaSS<kLnPointsPerWarpgroup>::mma(
                        acc,
                        desc_advance(comp_desc, kk * 32),
                        desc_advance(
                            points_desc, b * kLnPointBoxBytes + kk * 32),
                        b > 0 || kk > 0);
                }
            }
        }
        wgmma_commit();
        if (cw == 0 || j + 1 < k_tiles) {
            named_arrive(kBarTurn0 + (1 - cw), 2 * kWarpgroup);
        }
        wgmma_wait<0>();
        fence_registers(acc);
        if (tid == 0) {
#pragma unroll
            for (int b = 0; b < L.nbox; b++) {
                mbar_arrive(empty + (c0 + b) % kLnStages);
            }
        }

        // Epilogue: logits of components (rows) g and g + 8 of this warp.
        const int r0 = j * kLnComponents + warp * 16 + g;
        const RowTerms t0 = load_row_terms<DIAG>(
            p.row_const, p.row_scale, p.row_norm, r0, p.k_pad);
        const RowTerms t1 = load_row_terms<DIAG>(
            p.row_const, p.row_scale, p.row_norm, r0 + 8, p.k_pad);
#pragma unroll
        for (int jj = 0; jj < kLnPointsPerWarpgroup / 8; jj++) {
            const int col = 8 * jj + 2 * t;
            float2 pn = make_float2(0.0f, 0.0f);
            if constexpr (!DIAG) {
                pn = *reinterpret_cast<const float2*>(
                    point_norm + col_base + col);
            }
            float dist;
            const float l00 = logit2<DIAG>(acc[4 * jj], t0, pn.x, dist);
            const float l01 = logit2<DIAG>(acc[4 * jj + 1], t0, pn.y, dist);
            const float l10 = logit2<DIAG>(acc[4 * jj + 2], t1, pn.x, dist);
            const float l11 = logit2<DIAG>(acc[4 * jj + 3], t1, pn.y, dist);
            lse_add(run_m[2 * jj], run_s[2 * jj], l00, l10);
            lse_add(run_m[2 * jj + 1], run_s[2 * jj + 1], l01, l11);
        }
    }

    // Merge the 8 lanes of equal t (different g), then the 4 warps.
#pragma unroll
    for (int i = 0; i < kLnPointsPerWarpgroup / 4; i++) {
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, run_m[i], off);
            const float s2 = __shfl_xor_sync(0xffffffffu, run_s[i], off);
            lse_merge(run_m[i], run_s[i], m2, s2);
        }
    }
    float* my_merge = merge + cw * 4 * kLnPointsPerWarpgroup * 2;
    if (g == 0) {
#pragma unroll
        for (int jj = 0; jj < kLnPointsPerWarpgroup / 8; jj++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int col = 8 * jj + 2 * t + e;
                float* dst =
                    my_merge + (warp * kLnPointsPerWarpgroup + col) * 2;
                dst[0] = run_m[2 * jj + e];
                dst[1] = run_s[2 * jj + e];
            }
        }
    }
    named_sync(kBarWarpgroup0 + cw, kWarpgroup);
    {
        const int col = tid; // one point per thread
        float mm = my_merge[col * 2], ss = my_merge[col * 2 + 1];
        for (int w = 1; w < 4; w++) {
            lse_merge(
                mm,
                ss,
                my_merge[(w * kLnPointsPerWarpgroup + col) * 2],
                my_merge[(w * kLnPointsPerWarpgroup + col) * 2 + 1]);
        }
        const float lz = mm + log2f(ss);
        const int64_t row = row0 + col_base + col;
        double ll = 0;
        if (row < p.rows) {
            p.log2_z[row] = row < p.n ? lz : INFINITY;
        }
        if (row < p.n) {
            ll = double(lz) * 0.69314718055994530942;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            ll += __shfl_xor_sync(0xffffffffu, ll, off);
        }
        if (lane == 0) {
            ll_warp[cw * 4 + warp] = ll;
        }
    }
    named_sync(kBarConsumers, 2 * kWarpgroup);
    if (cw == 0 && tid == 0) {
        double sum = 0;
        for (int i = 0; i < 8; i++) {
            sum += ll_warp[i];
        }
        p.partials[blockIdx.x] = sum;
    }
}

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm
