// Fused GMM E-step (sm_80 and later, bf16): see gmm_estep.h for the math.
// Design notes:
//
// * The points are converted once per E-step (gmm_estep_prepare_points:
//   x' and x'^2 in bf16, |x'|^2 in fp32), so that both passes stage whole
//   64-row tiles with cp.async, double-buffered, with no per-tile conversion.
// * A CTA is 4 warps. A logits tile is 64 components x 64 points; warp w owns
//   components [16 w, 16 w + 16) of it and all 64 points, so each thread holds
//   the tile in the accumulator layout of mma.sync m16n8k16:
//   acc[n][0..3] = C[g][8n+2t], C[g][8n+2t+1], C[g+8][8n+2t], C[g+8][8n+2t+1]
//   with g = lane / 4, t = lane % 4.
// * The logits product is computed transposed (components x points) so that
//   in pass 2 the probabilities P (components x points, in registers) are
//   directly the A operand of the second product P . X (the flash-attention
//   register trick); X is read transposed from shared memory by ldmatrix.trans.
// * Tiles use the row stride depth + 8 (an odd number of 16-byte units:
//   conflict-free ldmatrix).
//
// ~900 lines, one concept: the point preparation and the two passes share
// the tile layouts, the mma.sync / ldmatrix fragments and the epilogues.
//
// Models these kernels do not take (tf32 / fp32, or logits depth > 256) run
// on the cuBLAS-based path (gmm_estep_gemm.h), faster on every bench_em shape
// than the fused tf32 / fp32 kernels this file used to hold
// (kernels/README.md).

#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_logits.h>

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace faiss_gmm {
namespace kernels {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int BK = kEStepComponentTile;
constexpr int BN = kEStepPointTile;
constexpr int DK = kEStepDepthChunk;
constexpr int OD = kEStepOutputDims;

static_assert(BK == 16 * kWarps, "one 16-row mma tile per warp");
static_assert(BN == 64 && DK == 32, "loaders assume 64 x 32 chunks");

__device__ __forceinline__ void
mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

/// Four 8 x 8 bf16 matrices from shared memory (mma fragment layout); lane l
/// gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/// Four transposed 8 x 8 bf16 matrices from shared memory; lane l gives the
/// address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void
ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 "
                 "{%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/**
 * acc += A . B^T for one 32-deep chunk of bf16 tiles in shared memory: A =
 * the warp's 16 component rows of comp (row stride lda), B = the 64 point
 * rows of pts (row stride ldb).
 */
__device__ __forceinline__ void chunk_product(
    const __nv_bfloat16* __restrict__ comp,
    const __nv_bfloat16* __restrict__ pts,
    float (&acc)[8][4],
    int ldb,
    int lda) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    // ldmatrix.x4: lane l addresses row l % 8 of 8 x 8 matrix l / 8.
    const int mi = lane >> 3;
    const auto* a_src =
        comp + (warp * 16 + (mi & 1) * 8 + (lane & 7)) * lda + (mi >> 1) * 8;
    const auto* b_src = pts + ((mi >> 1) * 8 + (lane & 7)) * ldb + (mi & 1) * 8;
#pragma unroll
    for (int k0 = 0; k0 < DK; k0 += 16) {
        uint32_t a[4];
        ldmatrix_x4(a, a_src + k0);
#pragma unroll
        for (int nt = 0; nt < 8; nt += 2) {
            uint32_t b[4];
            ldmatrix_x4(b, b_src + 8 * nt * ldb + k0);
            mma_bf16(acc[nt], a, b[0], b[1]);
            mma_bf16(acc[nt + 1], a, b[2], b[3]);
        }
    }
}

__device__ __forceinline__ RowTerms
load_row_terms(const EStepModel& m, bool diagonal, int row) {
    RowTerms r;
    r.constant = __ldg(m.row_const + row);
    r.scale = diagonal ? 0.0f : __ldg(m.row_scale + row);
    r.norm = diagonal ? 0.0f : __ldg(m.row_norm + row);
    return r;
}

/// Threads of the one CTA of sum_partials_kernel.
constexpr int kSumThreads = 256;

/// Adds log-likelihood partials to *total in a fixed order (one CTA).
__global__ void __launch_bounds__(kSumThreads) sum_partials_kernel(
    int64_t count,
    const double* __restrict__ partials,
    double* __restrict__ total) {
    __shared__ double part[kSumThreads];
    double s = 0;
    for (int64_t i = threadIdx.x; i < count; i += kSumThreads) {
        s += partials[i];
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = kSumThreads / 2; w > 0; w >>= 1) {
        if (int(threadIdx.x) < w) {
            part[threadIdx.x] += part[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *total += part[0];
    }
}

// ---------------------------------------------------------------------------
// Point preparation and the two passes over prepared points.
// ---------------------------------------------------------------------------

/// Largest logits depth of the fused kernels (three 64-row bf16 tiles fit
/// twice per multiprocessor).
constexpr int kFusedMaxDepth = 256;

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(a), "l"(gmem)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(PENDING) : "memory");
}

/// Asynchronous copy of 64 rows x depth bf16 (global row stride depth) into
/// shared memory with row stride ld.
__device__ __forceinline__ void copy_tile_async(
    const __nv_bfloat16* __restrict__ src,
    int depth,
    __nv_bfloat16* __restrict__ dst,
    int ld) {
    // 16-byte unit i = threadIdx.x + j * kThreads is (row r, unit q);
    // (r, q) advances incrementally (two divisions per call, not per unit).
    const int per_row = depth >> 3;
    int r = int(threadIdx.x) / per_row;
    int q = int(threadIdx.x) - r * per_row;
    const int dr = kThreads / per_row;
    const int dq = kThreads - dr * per_row;
    while (r < BN) {
        cp_async16(dst + r * ld + q * 8, src + int64_t(r) * depth + q * 8);
        r += dr;
        q += dq;
        if (q >= per_row) {
            q -= per_row;
            r++;
        }
    }
}

template <bool DIAG>
__global__ void prepare_points_kernel(
    int64_t n,
    int64_t rows,
    int d,
    int d_pad,
    int depth,
    const float* __restrict__ x,
    const float* __restrict__ center,
    __nv_bfloat16* __restrict__ out,
    float* __restrict__ norms) {
    const int lane = threadIdx.x & 31;
    const int64_t warps_total = int64_t(gridDim.x) * (blockDim.x >> 5);
    const bool vec = (d & 3) == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
    for (int64_t row =
             int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
         row < rows;
         row += warps_total) {
        float norm = 0;
        for (int c0 = lane * 4; c0 < d_pad; c0 += 128) {
            float v[4];
            if (row < n && vec && c0 + 4 <= d) {
                const float4 a =
                    __ldg(reinterpret_cast<const float4*>(x + row * d + c0));
                const float4 c =
                    __ldg(reinterpret_cast<const float4*>(center + c0));
                v[0] = a.x - c.x;
                v[1] = a.y - c.y;
                v[2] = a.z - c.z;
                v[3] = a.w - c.w;
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int col = c0 + j;
                    v[j] = (row < n && col < d)
                               ? __ldg(x + row * d + col) - __ldg(center + col)
                               : 0.0f;
                }
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                norm += v[j] * v[j];
            }
            __nv_bfloat16* o = out + row * depth + c0;
            *reinterpret_cast<uint2*>(o) =
                make_uint2(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]));
            if constexpr (DIAG) {
                *reinterpret_cast<uint2*>(o + d_pad) = make_uint2(
                    pack_bf16(v[0] * v[0], v[1] * v[1]),
                    pack_bf16(v[2] * v[2], v[3] * v[3]));
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            norm += __shfl_xor_sync(0xffffffffu, norm, off);
        }
        if (lane == 0) {
            norms[row] = norm;
        }
    }
}

size_t prepared_smem(int depth) {
    return size_t(BN + 2 * BK) * (depth + 8) * sizeof(__nv_bfloat16) +
           BN * sizeof(float) + kWarps * BN * 2 * sizeof(float);
}

/**
 * Pass 1, prepared points. CTA = 64 points (staged once); the component
 * tiles stream through two shared-memory buffers by cp.async, the next
 * one in flight during the current product and epilogue.
 */
template <bool DIAG>
__global__ void __launch_bounds__(kThreads, 4) log_norm_prepared_kernel(
    const EStepModel m,
    int64_t n,
    const __nv_bfloat16* __restrict__ xs,
    const float* __restrict__ norms,
    float* __restrict__ log2_z,
    double* __restrict__ partials) {
    using T = __nv_bfloat16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int depth = m.depth;
    const int ld = depth + 8;
    T* pts = reinterpret_cast<T*>(smem_raw);
    // two component buffers: comp0 and comp0 + BK * ld
    T* comp0 = pts + BN * ld;
    float* point_norm = reinterpret_cast<float*>(pts + BN * ld + 2 * BK * ld);
    float* merge = point_norm + BN;

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int64_t row0 = int64_t(blockIdx.x) * BN;
    const int nchunks = depth / DK;
    const T* matrix = static_cast<const T*>(m.component_matrix);
    const int ktiles = m.k_pad / BK;

    copy_tile_async(xs + row0 * depth, depth, pts, ld);
    if (!DIAG && threadIdx.x < BN / 4) {
        cp_async16(
            point_norm + 4 * threadIdx.x, norms + row0 + 4 * threadIdx.x);
    }
    copy_tile_async(matrix, depth, comp0, ld);
    cp_async_commit();

    float run_m[16], run_s[16];
#pragma unroll
    for (int i = 0; i < 16; i++) {
        run_m[i] = -INFINITY;
        run_s[i] = 0;
    }
    for (int kt = 0; kt < ktiles; kt++) {
        const T* comp = comp0 + (kt & 1) * BK * ld;
        if (kt + 1 < ktiles) {
            copy_tile_async(
                matrix + int64_t(kt + 1) * BK * depth,
                depth,
                comp0 + ((kt + 1) & 1) * BK * ld,
                ld);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        float acc[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                acc[i][j] = 0;
            }
        }
        for (int c = 0; c < nchunks; c++) {
            chunk_product(comp + c * DK, pts + c * DK, acc, ld, ld);
        }
        // The buffer just read is refilled by the next iteration's copy.
        __syncthreads();
        const int r0 = kt * BK + warp * 16 + g;
        const RowTerms t0 = load_row_terms(m, DIAG, r0);
        const RowTerms t1 = load_row_terms(m, DIAG, r0 + 8);
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int col = 8 * nt + 2 * t + j;
                const float pn = DIAG ? 0.0f : point_norm[col];
                float dist;
                const float l0 = logit2<DIAG>(acc[nt][j], t0, pn, dist);
                const float l1 = logit2<DIAG>(acc[nt][2 + j], t1, pn, dist);
                lse_add(run_m[2 * nt + j], run_s[2 * nt + j], l0, l1);
            }
        }
    }

    // Merge the 8 lanes sharing t (different g), then the 4 warps.
#pragma unroll
    for (int i = 0; i < 16; i++) {
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, run_m[i], off);
            const float s2 = __shfl_xor_sync(0xffffffffu, run_s[i], off);
            lse_merge(run_m[i], run_s[i], m2, s2);
        }
    }
    if (g == 0) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int col = 8 * nt + 2 * t + j;
                merge[(warp * BN + col) * 2] = run_m[2 * nt + j];
                merge[(warp * BN + col) * 2 + 1] = run_s[2 * nt + j];
            }
        }
    }
    __syncthreads();
    __shared__ double ll_warp[2];
    if (threadIdx.x < BN) {
        const int col = threadIdx.x;
        float mm = merge[col * 2], ss = merge[col * 2 + 1];
        for (int w = 1; w < kWarps; w++) {
            lse_merge(
                mm,
                ss,
                merge[(w * BN + col) * 2],
                merge[(w * BN + col) * 2 + 1]);
        }
        const float lz = mm + log2f(ss);
        double ll = 0;
        log2_z[row0 + col] = row0 + col < n ? lz : INFINITY;
        if (row0 + col < n) {
            ll = double(lz) * 0.69314718055994530942;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            ll += __shfl_xor_sync(0xffffffffu, ll, off);
        }
        if (lane == 0) {
            ll_warp[warp] = ll;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = ll_warp[0] + ll_warp[1];
    }
}

size_t statistics_prepared_smem(int depth) {
    return size_t(BK + 2 * BN) * (depth + 8) * sizeof(__nv_bfloat16) +
           2 * 2 * BN * sizeof(float);
}

/**
 * Pass 2, prepared points. CTA = (component tile, slab of point tiles,
 * output-dimension chunk); the component tile stays
 * resident, the point tiles (with their norms and log2 Z) stream through
 * two buffers by cp.async, the next tile in flight during both products.
 */
template <bool DIAG>
__global__ void __launch_bounds__(kThreads, DIAG ? 2 : 3)
    statistics_prepared_kernel(
        const EStepModel m,
        int64_t n,
        const __nv_bfloat16* __restrict__ xs,
        const float* __restrict__ norms,
        const float* __restrict__ log2_z,
        const EStepAccumulators acc_out,
        int64_t tiles_per_slab) {
    using T = __nv_bfloat16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int depth = m.depth;
    const int ld = depth + 8;
    T* comp = reinterpret_cast<T*>(smem_raw);
    // two point buffers pts0 + b * BN * ld, each with its norms and log2 Z
    // at aux0 + b * 2 * BN
    T* pts0 = comp + BK * ld;
    float* aux0 = reinterpret_cast<float*>(comp + BK * ld + 2 * BN * ld);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int kt = blockIdx.x;
    const int d = m.d;
    const int d_pad = (d + DK - 1) / DK * DK;
    const int d0 = blockIdx.z * OD;
    const int out_dims = min(OD, d - d0);
    const int out_cols = (d + OD - 1) / OD * OD;
    const int nchunks = depth / DK;
    const T* matrix = static_cast<const T*>(m.component_matrix);

    const int64_t tile_begin = int64_t(blockIdx.y) * tiles_per_slab;
    const int64_t tile_end =
        min(tile_begin + tiles_per_slab, (n + BN - 1) / int64_t(BN));
    auto issue_tile = [&](int64_t tile, int b) {
        copy_tile_async(xs + tile * BN * depth, depth, pts0 + b * BN * ld, ld);
        float* aux = aux0 + b * 2 * BN;
        if (threadIdx.x < BN / 4) {
            if (!DIAG) {
                cp_async16(
                    aux + 4 * threadIdx.x, norms + tile * BN + 4 * threadIdx.x);
            }
        } else if (threadIdx.x < BN / 2) {
            const int i = threadIdx.x - BN / 4;
            cp_async16(aux + BN + 4 * i, log2_z + tile * BN + 4 * i);
        }
    };
    copy_tile_async(matrix + int64_t(kt) * BK * depth, depth, comp, ld);
    if (tile_begin < tile_end) {
        issue_tile(tile_begin, 0);
    }
    cp_async_commit();

    const int r0 = kt * BK + warp * 16 + g;
    const RowTerms t0 = load_row_terms(m, DIAG, r0);
    const RowTerms t1 = load_row_terms(m, DIAG, r0 + 8);

    float acc1[OD / 8][4], acc2[DIAG ? OD / 8 : 1][4];
#pragma unroll
    for (int i = 0; i < OD / 8; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            acc1[i][j] = 0;
            if constexpr (DIAG) {
                acc2[i][j] = 0;
            }
        }
    }
    float count0 = 0, count1 = 0, dsum0 = 0, dsum1 = 0;

    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
        const int b = int((tile - tile_begin) & 1);
        const T* pts = pts0 + b * BN * ld;
        const float* point_norm = aux0 + b * 2 * BN;
        const float* point_lz = point_norm + BN;
        if (tile + 1 < tile_end) {
            issue_tile(tile + 1, b ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        float acc[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                acc[i][j] = 0;
            }
        }
        for (int c = 0; c < nchunks; c++) {
            chunk_product(comp + c * DK, pts + c * DK, acc, ld, ld);
        }

        // acc -> probabilities (in place), counts and distance sums.
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int col = 8 * nt + 2 * t + j;
                const float pn = DIAG ? 0.0f : point_norm[col];
                const float lz = point_lz[col];
                float dist0, dist1;
                const float l0 = logit2<DIAG>(acc[nt][j], t0, pn, dist0);
                const float l1 = logit2<DIAG>(acc[nt][2 + j], t1, pn, dist1);
                const float p0 = fast_exp2(l0 - lz);
                const float p1 = fast_exp2(l1 - lz);
                acc[nt][j] = p0;
                acc[nt][2 + j] = p1;
                count0 += p0;
                count1 += p1;
                if constexpr (!DIAG) {
                    dsum0 += p0 * dist0;
                    dsum1 += p1 * dist1;
                }
            }
        }

        // Second product: statistics += P (16 x 64 per warp) . X' (64 x OD),
        // B fragments by ldmatrix.trans of (16 points x 8 dims) blocks.
        uint32_t a[4][4];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            a[q][0] = pack_bf16(acc[2 * q][0], acc[2 * q][1]);
            a[q][1] = pack_bf16(acc[2 * q][2], acc[2 * q][3]);
            a[q][2] = pack_bf16(acc[2 * q + 1][0], acc[2 * q + 1][1]);
            a[q][3] = pack_bf16(acc[2 * q + 1][2], acc[2 * q + 1][3]);
        }
        const int mi = lane >> 3;
        const T* rows =
            pts + ((mi & 1) * 8 + (lane & 7)) * ld + d0 + (mi >> 1) * 8;
#pragma unroll
        for (int mp = 0; mp < OD / 16; mp++) {
            if (16 * mp < out_dims) {
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const T* src = rows + 16 * q * ld + 16 * mp;
                    uint32_t bf[4];
                    ldmatrix_x4_trans(bf, src);
                    mma_bf16(acc1[2 * mp], a[q], bf[0], bf[1]);
                    mma_bf16(acc1[2 * mp + 1], a[q], bf[2], bf[3]);
                    if constexpr (DIAG) {
                        ldmatrix_x4_trans(bf, src + d_pad);
                        mma_bf16(acc2[2 * mp], a[q], bf[0], bf[1]);
                        mma_bf16(acc2[2 * mp + 1], a[q], bf[2], bf[3]);
                    }
                }
            }
        }
        // The buffer just read is refilled by the next iteration's copy.
        __syncthreads();
    }
    cp_async_wait<0>();

    // Flush: one double atomic per owned statistic.
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        count0 += __shfl_xor_sync(0xffffffffu, count0, off);
        count1 += __shfl_xor_sync(0xffffffffu, count1, off);
        dsum0 += __shfl_xor_sync(0xffffffffu, dsum0, off);
        dsum1 += __shfl_xor_sync(0xffffffffu, dsum1, off);
    }
    if (blockIdx.z == 0 && t == 0) {
        atomicAdd(acc_out.count + r0, double(count0));
        atomicAdd(acc_out.count + r0 + 8, double(count1));
        if constexpr (!DIAG) {
            atomicAdd(acc_out.sum2 + r0, double(dsum0));
            atomicAdd(acc_out.sum2 + r0 + 8, double(dsum1));
        }
    }
#pragma unroll
    for (int mt = 0; mt < OD / 8; mt++) {
        if (8 * mt < out_dims) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int col = d0 + 8 * mt + 2 * t + e;
                double* s1 = acc_out.sum1 + int64_t(r0) * out_cols + col;
                atomicAdd(s1, double(acc1[mt][e]));
                atomicAdd(s1 + 8 * out_cols, double(acc1[mt][2 + e]));
                if constexpr (DIAG) {
                    double* s2 = acc_out.sum2 + int64_t(r0) * out_cols + col;
                    atomicAdd(s2, double(acc2[mt][e]));
                    atomicAdd(s2 + 8 * out_cols, double(acc2[mt][2 + e]));
                }
            }
        }
    }
}

__global__ void convert_to_bf16_kernel(
    int64_t n, const float* __restrict__ src, __nv_bfloat16* __restrict__ dst) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        dst[i] = __float2bfloat16_rn(src[i]);
    }
}

__global__ void gather_rows_kernel(
    int64_t m,
    const int64_t* __restrict__ rows,
    int d,
    const float* __restrict__ src,
    float* __restrict__ dst) {
    for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
        const float* s = src + rows[i] * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            dst[i * d + j] = s[j];
        }
    }
}

cudaError_t check_model(const EStepModel& m) {
    if (m.d < 1 || m.d > 4096 || m.k < 1 || m.k > (1 << 24) ||
        m.k_pad != estep_padded_components(m.k) ||
        m.depth != estep_depth(m.d, m.diagonal) || !m.component_matrix ||
        !m.center || !m.row_const ||
        (!m.diagonal && (!m.row_scale || !m.row_norm))) {
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

template <bool DIAG>
cudaError_t launch_log_norm_prepared(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    cudaStream_t stream) {
    const size_t smem = prepared_smem(m.depth);
    auto kernel = log_norm_prepared_kernel<DIAG>;
    cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (err != cudaSuccess) {
        return err;
    }
    const int64_t blocks = (n + BN - 1) / BN;
    kernel<<<unsigned(blocks), kThreads, smem, stream>>>(
        m,
        n,
        static_cast<const __nv_bfloat16*>(prepared),
        norms,
        log2_z,
        scratch);
    return cudaGetLastError();
}

template <bool DIAG>
cudaError_t launch_statistics_prepared(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    const float* log2_z,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream) {
    const size_t smem = statistics_prepared_smem(m.depth);
    auto kernel = statistics_prepared_kernel<DIAG>;
    cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (err != cudaSuccess) {
        return err;
    }
    const int64_t tiles = (n + BN - 1) / BN;
    const int ktiles = m.k_pad / BK;
    const int dchunks = (m.d + OD - 1) / OD;
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, kernel, kThreads, smem);
    if (err != cudaSuccess) {
        return err;
    }
    const int64_t capacity = int64_t(per_sm < 1 ? 1 : per_sm) * num_sms;
    const int64_t want = capacity / (int64_t(ktiles) * dchunks);
    const int64_t slabs_wanted = want < 1 ? 1 : (want > tiles ? tiles : want);
    const int64_t tiles_per_slab = (tiles + slabs_wanted - 1) / slabs_wanted;
    const int64_t slabs = (tiles + tiles_per_slab - 1) / tiles_per_slab;
    const dim3 grid{unsigned(ktiles), unsigned(slabs), unsigned(dchunks)};
    kernel<<<grid, kThreads, smem, stream>>>(
        m,
        n,
        static_cast<const __nv_bfloat16*>(prepared),
        norms,
        log2_z,
        acc,
        tiles_per_slab);
    return cudaGetLastError();
}

} // namespace

int64_t estep_padded_rows(int64_t n) {
    return (n + BN - 1) / BN * BN;
}

bool estep_fused_supports(const EStepModel& m) {
    return m.math == EStepMath::BF16 && m.depth <= kFusedMaxDepth;
}

cudaError_t gmm_estep_prepare_points(
    const EStepModel& m,
    int64_t n,
    const float* x,
    void* prepared,
    float* norms,
    cudaStream_t stream) {
    cudaError_t err = check_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (n < 0 || !estep_fused_supports(m) ||
        (n > 0 && (!x || !prepared || !norms))) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    const int64_t rows = estep_padded_rows(n);
    const int d_pad = estep_depth(m.d, false);
    constexpr int kRowsPerBlock = 8; // one warp per row
    const int64_t blocks =
        std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, 8192);
    auto* out = static_cast<__nv_bfloat16*>(prepared);
    if (m.diagonal) {
        prepare_points_kernel<true>
            <<<unsigned(blocks), 32 * kRowsPerBlock, 0, stream>>>(
                n, rows, m.d, d_pad, m.depth, x, m.center, out, norms);
    } else {
        prepare_points_kernel<false>
            <<<unsigned(blocks), 32 * kRowsPerBlock, 0, stream>>>(
                n, rows, m.d, d_pad, m.depth, x, m.center, out, norms);
    }
    return cudaGetLastError();
}

int estep_padded_components(int k) {
    return (k + BK - 1) / BK * BK;
}

int estep_depth(int d, bool diagonal) {
    const int d_pad = (d + DK - 1) / DK * DK;
    return diagonal ? 2 * d_pad : d_pad;
}

int estep_output_columns(int d) {
    return (d + OD - 1) / OD * OD;
}

int64_t estep_log_norm_scratch(int64_t n) {
    return (n + BN - 1) / BN;
}

cudaError_t gmm_estep_log_norm(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    const EStepAccumulators& acc,
    cudaStream_t stream) {
    cudaError_t err = check_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (n < 0 || !estep_fused_supports(m) ||
        (n > 0 && (!prepared || !norms || !log2_z || !scratch)) ||
        !acc.log_likelihood || (n + BN - 1) / BN > 0x7fffffffLL) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    err = m.diagonal ? launch_log_norm_prepared<true>(
                           m, n, prepared, norms, log2_z, scratch, stream)
                     : launch_log_norm_prepared<false>(
                           m, n, prepared, norms, log2_z, scratch, stream);
    if (err != cudaSuccess) {
        return err;
    }
    return gmm_estep_sum_partials(
        estep_log_norm_scratch(n), scratch, acc.log_likelihood, stream);
}

cudaError_t gmm_estep_sum_partials(
    int64_t count, const double* partials, double* total, cudaStream_t stream) {
    if (count < 0 || !total || (count > 0 && !partials)) {
        return cudaErrorInvalidValue;
    }
    sum_partials_kernel<<<1, kSumThreads, 0, stream>>>(count, partials, total);
    return cudaGetLastError();
}

cudaError_t gmm_estep_statistics(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    const float* log2_z,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream) {
    cudaError_t err = check_model(m);
    if (err != cudaSuccess) {
        return err;
    }
    if (n < 0 || !estep_fused_supports(m) ||
        (n > 0 && (!prepared || !norms || !log2_z)) || !acc.count ||
        !acc.sum1 || !acc.sum2 || num_sms < 1 || m.k_pad / BK > 0x7fffffff) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    return m.diagonal
               ? launch_statistics_prepared<true>(
                     m, n, prepared, norms, log2_z, acc, num_sms, stream)
               : launch_statistics_prepared<false>(
                     m, n, prepared, norms, log2_z, acc, num_sms, stream);
}

cudaError_t
convert_to_bf16(int64_t n, const float* src, void* dst, cudaStream_t stream) {
    if (n < 0 || (n > 0 && (!src || !dst))) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, 4096);
    convert_to_bf16_kernel<<<unsigned(blocks), 256, 0, stream>>>(
        n, src, static_cast<__nv_bfloat16*>(dst));
    return cudaGetLastError();
}

cudaError_t gather_rows(
    int64_t m,
    const int64_t* rows,
    int d,
    const float* src,
    float* dst,
    cudaStream_t stream) {
    if (m < 0 || d < 1 || (m > 0 && (!rows || !src || !dst))) {
        return cudaErrorInvalidValue;
    }
    if (m == 0) {
        return cudaSuccess;
    }
    const int64_t blocks = std::min<int64_t>(m, 65535);
    gather_rows_kernel<<<unsigned(blocks), 128, 0, stream>>>(
        m, rows, d, src, dst);
    return cudaGetLastError();
}

} // namespace kernels
} // namespace faiss_gmm
