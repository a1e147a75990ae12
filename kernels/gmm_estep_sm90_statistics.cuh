/**
 * Pass 2 of the Hopper E-step: N_k, sum_i r_ik x'_i and the second moments
 * (sm_90a only; included by gmm_estep_sm90_launch.cu).
 */

#pragma once

#include <cuda.h>

#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_sm90_epilogue.h>
#include <kernels/gmm_estep_sm90_ptx.h>
#include <kernels/gmm_estep_sm90_tile.h>
#include <kernels/gmm_estep_sm90_wgmma.h>

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

/// Arguments of the pass-2 kernel besides its tensor maps.
struct StatParams {
    const float* norms;     ///< rows floats, |x'|^2 (spherical)
    const float* log2_z;    ///< rows floats (pass 1; +inf beyond n)
    const float* row_const; ///< k_pad floats
    const float* row_scale; ///< k_pad floats (spherical)
    const float* row_norm;  ///< k_pad floats (spherical)
    EStepAccumulators acc;  ///< count, sum1, sum2 (gmm_estep.h layout)
    int k_pad;              ///< components, multiple of 64
    int d;                  ///< dimension
    int d_pad;              ///< round_up(d, 32): diagonal x'^2 offset
    int out_cols;           ///< columns of sum1 / sum2
    int64_t point_tiles;    ///< rows / kStatPoints
    int64_t tiles_per_slab; ///< point tiles per CTA
};

/**
 * CTA = 128 components (consumer warpgroup w owns [64 w, 64 w + 64)),
 * resident in shared memory, x a slab of 64-point tiles streamed through
 * kStatStages stages by TMA (the prepared rows [x' | x'^2] plus the
 * points' norms and log2 Z), shared by both consumers. Per tile a
 * consumer computes the transposed logits S = M X^T (64 x 64, wgmma
 * m64n64k16, both operands K-major from shared memory), forms
 * P = exp2(l2 - log2 Z) in registers with N_k and the spherical
 * sum p * clamped distance, and feeds P (bf16, the accumulator layout is
 * wgmma's A-register layout) straight into the statistics product
 * acc += P X (wgmma m64nDk16, A from registers, B = the same point tile
 * read N-major), whose D = depth output columns are sum r x' and, diagonal,
 * sum r x'^2. The statistics product of tile i is issued together with the
 * logits product of tile i + 1, and the two consumers alternate those
 * batches (named barriers), so one's epilogue overlaps the other's
 * products. The accumulators stay in registers over the slab: one double
 * atomic per statistic and CTA at the end.
 */
template <bool DIAG, int DEPTH>
__global__ void __launch_bounds__(kThreads, 1) statistics_sm90_kernel(
    const __grid_constant__ CUtensorMap tm_points,
    const __grid_constant__ CUtensorMap tm_comps,
    const StatParams p) {
    constexpr StatLayout L = stat_layout(DEPTH);
    constexpr int kSteps = DEPTH / 16;
    constexpr uint32_t kStageBytes = uint32_t(L.nbox) * kStatPointBoxBytes;
    constexpr uint32_t kAuxBytes = (DIAG ? 1 : 2) * kStatPoints * 4;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = align_smem(smem_raw);
    unsigned char* comps = smem + L.comps;
    unsigned char* stages = smem + L.stages;
    float* aux = reinterpret_cast<float*>(smem + L.aux);
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L.bars);
    uint64_t* comps_full = bars;
    uint64_t* full = bars + 1;
    uint64_t* empty = bars + 1 + kStatStages;

    const int warpgroup = threadIdx.x / kWarpgroup;
    const int comp0 = blockIdx.x * kStatComponents;
    const int64_t tile_begin = int64_t(blockIdx.y) * p.tiles_per_slab;
    const int64_t tile_end = min(tile_begin + p.tiles_per_slab, p.point_tiles);
    const int ntiles = int(max(tile_end - tile_begin, int64_t(0)));

    init_ring_barriers(bars, kStatStages, 2);

    if (warpgroup == 0) {
        // Producer: the CTA's components once, then the point tiles.
        setmaxnreg_dec<kProducerRegisters>();
        if (threadIdx.x == 0) {
            prefetch_tensor_map(&tm_points);
            prefetch_tensor_map(&tm_comps);
            mbar_arrive_expect_tx(
                comps_full, uint32_t(L.nbox) * uint32_t(kStatCompBoxBytes));
            for (int b = 0; b < L.nbox; b++) {
                tma_load_2d(
                    comps + b * kStatCompBoxBytes,
                    &tm_comps,
                    b * kBoxColumns,
                    comp0,
                    comps_full);
            }
            for (int i = 0; i < ntiles; i++) {
                const int s = i % kStatStages;
                const uint32_t phase = uint32_t(i / kStatStages) & 1u;
                const int64_t tile = tile_begin + i;
                mbar_wait(empty + s, phase ^ 1u);
                mbar_arrive_expect_tx(full + s, kStageBytes + kAuxBytes);
                for (int b = 0; b < L.nbox; b++) {
                    tma_load_2d(
                        stages + size_t(s) * kStageBytes +
                            b * kStatPointBoxBytes,
                        &tm_points,
                        b * kBoxColumns,
                        int(tile * kStatPoints),
                        full + s);
                }
                float* a = aux + s * 2 * kStatPoints;
                bulk_load(
                    a + kStatPoints,
                    p.log2_z + tile * kStatPoints,
                    kStatPoints * 4,
                    full + s);
                if constexpr (!DIAG) {
                    bulk_load(
                        a,
                        p.norms + tile * kStatPoints,
                        kStatPoints * 4,
                        full + s);
                }
            }
        }
        return;
    }

    // Consumers.
    setmaxnreg_inc<kConsumerRegisters>();
    const int cw = warpgroup - 1;
    const int tid = threadIdx.x - warpgroup * kWarpgroup;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int r0 = comp0 + cw * 64 + warp * 16 + g; // my rows r0, r0 + 8
    const RowTerms t0 =
        load_row_terms<DIAG>(p.row_const, p.row_scale, p.row_norm, r0, p.k_pad);
    const RowTerms t1 = load_row_terms<DIAG>(
        p.row_const, p.row_scale, p.row_norm, r0 + 8, p.k_pad);

    float stat[DEPTH / 2]; // statistics product, 64 components x DEPTH
    float logits[kStatPoints / 2];
#pragma unroll
    for (int i = 0; i < DEPTH / 2; i++) {
        stat[i] = 0;
    }
#pragma unroll
    for (int i = 0; i < kStatPoints / 2; i++) {
        logits[i] = 0;
    }
    // P of the previous tile (bf16x2); zero before the first tile, whose
    // iteration then adds 0 . X: every iteration issues the same batch, so
    // no wgmma sits on a conditional path (which serialises them).
    uint32_t prob[kStatPoints / 16][4];
#pragma unroll
    for (int q = 0; q < kStatPoints / 16; q++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            prob[q][r] = 0;
        }
    }
    float count0 = 0, count1 = 0, dsum0 = 0, dsum1 = 0;
    if (ntiles == 0) {
        return; // the launcher gives every slab at least one tile
    }

    // Descriptors: this warpgroup's 64 components (K-major), the stage
    // ring read K-major (logits) and N-major (statistics); offsets are
    // added in 16-byte units.
    const uint64_t comps_desc =
        make_desc(smem_addr(comps) + uint32_t(cw * 64) * kRowBytes, 16, 1024);
    const uint64_t stage_desc_k = make_desc(smem_addr(stages), 16, 1024);
    const uint64_t stage_desc_n =
        make_desc(smem_addr(stages), uint32_t(kStatPointBoxBytes), 1024);
    mbar_wait(comps_full, 0);
    if (cw == 1) {
        named_arrive(kBarTurn0, 2 * kWarpgroup); // consumer 0 goes first
    }

    // Iteration i issues the statistics product of tile i - 1 and the
    // logits product of tile i; iteration ntiles repeats the last tile's
    // logits (discarded) so that its statistics product has a batch too.
    const int iters = ntiles + 1;
    int prev_stage = 0;
    for (int i = 0; i < iters; i++) {
        const bool has_tile = i < ntiles;
        const int s = has_tile ? i % kStatStages : prev_stage;
        if (has_tile) {
            mbar_wait(full + s, uint32_t(i / kStatStages) & 1u);
        }
        if (i == 0) {
            prev_stage = s; // 0 . X over a full stage
        }
        named_sync(kBarTurn0 + cw, 2 * kWarpgroup);
        fence_registers(prob);
        wgmma_fence();
        {
            const uint64_t prev_desc =
                desc_advance(stage_desc_n, uint32_t(prev_stage) * kStageBytes);
#pragma unroll
            for (int q = 0; q < kStatPoints / 16; q++) {
                WgmmaRS<DEPTH>::mma(
                    stat,
                    prob[q],
                    desc_advance(prev_desc, q * 16 * kRowBytes),
                    1);
            }
        }
        const uint64_t points_desc =
            desc_advance(stage_desc_k, uint32_t(s) * kStageBytes);
#pragma unroll
        for (int k = 0; k < kSteps; k++) {
            const int b = k / 4;
            WgmmaSS<kStatPoints>::mma(
                logits,
                desc_advance(comps_desc, b * kStatCompBoxBytes + (k % 4) * 32),
                desc_advance(
                    points_desc, b * kStatPointBoxBytes + (k % 4) * 32),
                k > 0);
        }
        wgmma_commit();
        if (cw == 0 || i + 1 < iters) {
            named_arrive(kBarTurn0 + (1 - cw), 2 * kWarpgroup);
        }
        wgmma_wait<0>();
        fence_registers(logits);
        fence_registers(stat);
        if (i > 0 && tid == 0) {
            mbar_arrive(empty + prev_stage); // both products of it are done
        }
        if (!has_tile) {
            break;
        }

        // logits -> probabilities, counts and distance sums.
        const float* point_norm = aux + s * 2 * kStatPoints;
        const float* point_lz = point_norm + kStatPoints;
#pragma unroll
        for (int jj = 0; jj < kStatPoints / 8; jj++) {
            const int col = 8 * jj + 2 * t;
            float2 pn = make_float2(0.0f, 0.0f);
            if constexpr (!DIAG) {
                pn = *reinterpret_cast<const float2*>(point_norm + col);
            }
            const float2 lz = *reinterpret_cast<const float2*>(point_lz + col);
            float d00, d01, d10, d11;
            const float p00 =
                fast_exp2(logit2<DIAG>(logits[4 * jj], t0, pn.x, d00) - lz.x);
            const float p01 = fast_exp2(
                logit2<DIAG>(logits[4 * jj + 1], t0, pn.y, d01) - lz.y);
            const float p10 = fast_exp2(
                logit2<DIAG>(logits[4 * jj + 2], t1, pn.x, d10) - lz.x);
            const float p11 = fast_exp2(
                logit2<DIAG>(logits[4 * jj + 3], t1, pn.y, d11) - lz.y);
            count0 += p00 + p01;
            count1 += p10 + p11;
            if constexpr (!DIAG) {
                dsum0 += p00 * d00 + p01 * d01;
                dsum1 += p10 * d10 + p11 * d11;
            }
            // k-block jj / 2 of the statistics product: registers
            // (row g, k 2t), (row g + 8, k 2t), then k + 8 for odd jj.
            prob[jj / 2][2 * (jj & 1)] = pack_bf16x2(p00, p01);
            prob[jj / 2][2 * (jj & 1) + 1] = pack_bf16x2(p10, p11);
        }
        prev_stage = s;
    }

    // Flush: one double atomic per statistic of this CTA.
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        count0 += __shfl_xor_sync(0xffffffffu, count0, off);
        count1 += __shfl_xor_sync(0xffffffffu, count1, off);
        dsum0 += __shfl_xor_sync(0xffffffffu, dsum0, off);
        dsum1 += __shfl_xor_sync(0xffffffffu, dsum1, off);
    }
    const bool live0 = r0 < p.k_pad, live1 = r0 + 8 < p.k_pad;
    if (t == 0) {
        if (live0) {
            add_double(p.acc.count + r0, count0);
            if constexpr (!DIAG) {
                add_double(p.acc.sum2 + r0, dsum0);
            }
        }
        if (live1) {
            add_double(p.acc.count + r0 + 8, count1);
            if constexpr (!DIAG) {
                add_double(p.acc.sum2 + r0 + 8, dsum1);
            }
        }
    }
#pragma unroll
    for (int jj = 0; jj < DEPTH / 8; jj++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int col = 8 * jj + 2 * t + e;
            double* base = p.acc.sum1;
            if (DIAG && col >= p.d_pad) {
                col -= p.d_pad;
                base = p.acc.sum2;
            }
            if (col < p.d) {
                if (live0) {
                    add_double(
                        base + int64_t(r0) * p.out_cols + col,
                        stat[4 * jj + e]);
                }
                if (live1) {
                    add_double(
                        base + int64_t(r0 + 8) * p.out_cols + col,
                        stat[4 * jj + 2 + e]);
                }
            }
        }
    }
}

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm
