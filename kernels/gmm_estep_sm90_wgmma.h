/**
 * wgmma.mma_async wrappers of the Hopper E-step (sm_90a only): bf16 inputs,
 * fp32 accumulators, M = 64 rows per warpgroup, K = 16 per instruction.
 * Written out per N because the accumulator list is part of the PTX
 * instruction (one specialisation per N used; the operand lists come from
 * the FAISS_GMM_WGMMA_D* macros, the register numbers are spelled out).
 *
 * - WgmmaSS<N>::mma: A and B from shared memory, both K-major (descriptors).
 * - WgmmaRS<N>::mma: A from registers (4 x bf16x2 per thread, the layout of
 *   mma.sync m16n8k16's A per warp), B from shared memory, N-major.
 * scale_d = 0 overwrites the accumulators, 1 adds to them.
 * Callers issue wgmma_fence() before the first instruction of a batch and
 * wgmma_commit() / wgmma_wait<N>() after (gmm_estep_sm90_ptx.h).
 */

#pragma once

#include <cstdint>

/// The "+f" (read-write fp32) asm operands d[i], ..., d[i + 7] (and 16, 32
/// of them): the accumulator list of a wgmma instruction, in order.
#define FAISS_GMM_WGMMA_D8(i)                                                  \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]),                \
        "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define FAISS_GMM_WGMMA_D16(i) FAISS_GMM_WGMMA_D8(i), FAISS_GMM_WGMMA_D8(i + 8)
#define FAISS_GMM_WGMMA_D32(i)                                                 \
    FAISS_GMM_WGMMA_D16(i), FAISS_GMM_WGMMA_D16(i + 16)

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

template <int N>
struct WgmmaSS;
template <int N>
struct WgmmaRS;

template <>
struct WgmmaSS<64> {
    static __device__ __forceinline__ void
    mma(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, "
                     "%13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
                     "%24, %25, %26, %27, %28, %29, %30, %31}, "
                     "%32, %33, p, 1, 1, 0, 0;\n}\n"
                     : FAISS_GMM_WGMMA_D32(0)
                     : "l"(desc_a), "l"(desc_b), "r"(scale_d));
    }
};

template <>
struct WgmmaSS<128> {
    static __device__ __forceinline__ void
    mma(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "
            "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "
            "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "
            "%41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, "
            "%54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
            "%64, %65, p, 1, 1, 0, 0;\n}\n"
            : FAISS_GMM_WGMMA_D32(0), FAISS_GMM_WGMMA_D32(32)
            : "l"(desc_a), "l"(desc_b), "r"(scale_d));
    }
};

template <>
struct WgmmaRS<32> {
    static __device__ __forceinline__ void
    mma(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, "
                     "%13, %14, %15}, "
                     "{%16, %17, %18, %19}, %20, p, 1, 1, 1;\n}\n"
                     : FAISS_GMM_WGMMA_D16(0)
                     : "r"(a[0]),
                       "r"(a[1]),
                       "r"(a[2]),
                       "r"(a[3]),
                       "l"(desc_b),
                       "r"(scale_d));
    }
};

template <>
struct WgmmaRS<64> {
    static __device__ __forceinline__ void
    mma(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, "
                     "%13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
                     "%24, %25, %26, %27, %28, %29, %30, %31}, "
                     "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                     : FAISS_GMM_WGMMA_D32(0)
                     : "r"(a[0]),
                       "r"(a[1]),
                       "r"(a[2]),
                       "r"(a[3]),
                       "l"(desc_b),
                       "r"(scale_d));
    }
};

template <>
struct WgmmaRS<96> {
    static __device__ __forceinline__ void
    mma(float (&d)[48], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %53, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "
            "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "
            "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "
            "%41, %42, %43, %44, %45, %46, %47}, "
            "{%48, %49, %50, %51}, %52, p, 1, 1, 1;\n}\n"
            : FAISS_GMM_WGMMA_D32(0), FAISS_GMM_WGMMA_D16(32)
            : "r"(a[0]),
              "r"(a[1]),
              "r"(a[2]),
              "r"(a[3]),
              "l"(desc_b),
              "r"(scale_d));
    }
};

template <>
struct WgmmaRS<128> {
    static __device__ __forceinline__ void
    mma(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "
            "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "
            "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "
            "%41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, "
            "%54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
            "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
            : FAISS_GMM_WGMMA_D32(0), FAISS_GMM_WGMMA_D32(32)
            : "r"(a[0]),
              "r"(a[1]),
              "r"(a[2]),
              "r"(a[3]),
              "l"(desc_b),
              "r"(scale_d));
    }
};

template <>
struct WgmmaRS<192> {
    static __device__ __forceinline__ void
    mma(float (&d)[96], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %101, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "
            "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "
            "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "
            "%41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, "
            "%54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, "
            "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, "
            "%93, %94, %95}, "
            "{%96, %97, %98, %99}, %100, p, 1, 1, 1;\n}\n"
            : FAISS_GMM_WGMMA_D32(0),
              FAISS_GMM_WGMMA_D32(32),
              FAISS_GMM_WGMMA_D32(64)
            : "r"(a[0]),
              "r"(a[1]),
              "r"(a[2]),
              "r"(a[3]),
              "l"(desc_b),
              "r"(scale_d));
    }
};

template <>
struct WgmmaRS<256> {
    static __device__ __forceinline__ void
    mma(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "
            "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "
            "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "
            "%41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, "
            "%54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, "
            "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, "
            "%93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, "
            "%105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, "
            "%116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, "
            "%127}, "
            "{%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"
            : FAISS_GMM_WGMMA_D32(0),
              FAISS_GMM_WGMMA_D32(32),
              FAISS_GMM_WGMMA_D32(64),
              FAISS_GMM_WGMMA_D32(96)
            : "r"(a[0]),
              "r"(a[1]),
              "r"(a[2]),
              "r"(a[3]),
              "l"(desc_b),
              "r"(scale_d));
    }
};

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm

#undef FAISS_GMM_WGMMA_D32
#undef FAISS_GMM_WGMMA_D16
#undef FAISS_GMM_WGMMA_D8
