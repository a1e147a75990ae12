/**
 * Inline-PTX building blocks of the Hopper E-step (sm_90a only): shared
 * memory matrix descriptors, mbarriers, TMA (bulk tensor and bulk 1D
 * copies), named barriers, warpgroup fences and register reallocation.
 * Device code only; included by the sm_90a translation unit.
 */

#pragma once

#include <cstdint>

#include <cuda.h>

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

/// Shared-memory address (32 bits) of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/**
 * wgmma descriptor of a bf16 tile stored as the TMA writes it with
 * CU_TENSOR_MAP_SWIZZLE_128B: rows of 128 bytes (64 elements), 8-row
 * swizzle atoms of 1024 bytes, atoms of one 64-column box contiguous.
 * - K-major operand (rows = M or N, the 64 columns = K): stride between
 *   8-row groups (SBO) 1024 bytes, LBO unused (1); successive K steps of
 *   16 elements advance the start address by 32 bytes within the row.
 * - N-major B operand (rows = K, the 64 columns = N): SBO = 1024 bytes
 *   between 8-row groups along K, LBO = byte distance between the boxes
 *   that hold successive 64-column blocks of N.
 * The tile must start on a 1024-byte boundary (base offset 0).
 */
__device__ __forceinline__ uint64_t
make_desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    uint64_t desc = (addr & 0x3FFFFu) >> 4;
    desc |= uint64_t((lbo_bytes & 0x3FFFFu) >> 4) << 16;
    desc |= uint64_t((sbo_bytes & 0x3FFFFu) >> 4) << 32;
    desc |= uint64_t(1) << 62; // 128-byte swizzle
    return desc;
}

/// desc moved by `bytes` (a multiple of 16; the start address field of a
/// shared-memory descriptor cannot overflow: shared memory is < 256 KB).
__device__ __forceinline__ uint64_t
desc_advance(uint64_t desc, uint32_t bytes) {
    return desc + (bytes >> 4);
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int PENDING>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING)
                 : "memory");
}

/// Keeps the compiler from moving accumulator accesses across wgmma calls.
template <int N>
__device__ __forceinline__ void fence_registers(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

/// Same for A-fragment registers: their last writes happen before this.
template <int M, int N>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[M][N]) {
#pragma unroll
    for (int i = 0; i < M; i++) {
#pragma unroll
        for (int j = 0; j < N; j++) {
            asm volatile("" : "+r"(r[i][j])::"memory");
        }
    }
}

template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

/// Named barrier `id` (1..15) over `count` threads: wait for all.
__device__ __forceinline__ void named_sync(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/// Named barrier `id` over `count` threads: arrive without waiting.
__device__ __forceinline__ void named_arrive(int id, int count) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
    asm volatile(
        "mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)),
        "r"(count)
        : "memory");
}

/// Makes mbarrier initialisation visible to the async proxy (TMA).
__device__ __forceinline__ void fence_barrier_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/// Orders this thread's generic-proxy shared-memory accesses before later
/// async-proxy (TMA, wgmma) accesses.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile(
        "mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar))
        : "memory");
}

/// Arrives and adds `bytes` to the transaction count of this phase.
__device__ __forceinline__ void
mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile(
        "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
            smem_addr(bar)),
        "r"(bytes)
        : "memory");
}

/// Waits until the phase of parity `parity` of the barrier has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    const uint32_t addr = smem_addr(bar);
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT_%=;\n"
                 "}\n" ::"r"(addr),
                 "r"(parity)
                 : "memory");
}

__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
    asm volatile(
        "prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map))
        : "memory");
}

/// TMA: box of a 2D tensor at (c0 = column, c1 = row) into dst,
/// completing on bar.
__device__ __forceinline__ void
tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_"
        "tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(map)),
        "r"(c0),
        "r"(c1),
        "r"(smem_addr(bar))
        : "memory");
}

/// Bulk copy of `bytes` (multiple of 16, both addresses 16-byte aligned)
/// from global to shared memory, completing on bar.
__device__ __forceinline__ void
bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
        "[%0], [%1], %2, [%3];\n" ::"r"(smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(src)),
        "r"(bytes),
        "r"(smem_addr(bar))
        : "memory");
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    uint32_t r;
    // cvt packs its first source into the upper half.
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/**
 * Barriers of a producer / consumer ring, by thread 0, then a CTA barrier:
 * bars[0] (the resident operand, one arrival + bytes), bars[1 .. stages]
 * ("full": one arrival + bytes), bars[1 + stages .. 2 stages] ("empty":
 * one arrival per consumer warpgroup).
 */
__device__ __forceinline__ void
init_ring_barriers(uint64_t* bars, int stages, int consumers) {
    if (threadIdx.x == 0) {
        mbar_init(bars, 1);
        for (int s = 0; s < stages; s++) {
            mbar_init(bars + 1 + s, 1);
            mbar_init(bars + 1 + stages + s, consumers);
        }
        fence_barrier_init();
    }
    __syncthreads();
}

/// Dynamic shared memory rounded up to the 1024-byte swizzle-atom boundary
/// (layouts reserve 1024 bytes of slack).
__device__ __forceinline__ unsigned char* align_smem(unsigned char* raw) {
    return reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
}

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm
