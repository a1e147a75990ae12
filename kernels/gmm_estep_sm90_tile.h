/**
 * Tile shapes and shared-memory layouts of the Hopper E-step
 * (gmm_estep_sm90.h). Plain constexpr, usable from host and device code.
 *
 * Both kernels are 3 warpgroups: warpgroup 0 is the producer (one thread
 * issues every TMA load), warpgroups 1 and 2 are consumers (wgmma and the
 * epilogues), which alternate their tensor-core work (ping-pong) so that one
 * warpgroup's exp2 epilogue overlaps the other's products.
 *
 * Operands are bf16 tiles in the TMA's 128-byte swizzle: a "box" is 64
 * columns (kBoxColumns, 128 bytes) by some rows; a logits depth of D
 * columns is ceil(D / 64) boxes (the last one zero-filled past D).
 */

#pragma once

#include <cstddef>

namespace faiss_gmm {
namespace kernels {
namespace sm90 {

/// Threads per CTA: producer warpgroup + two consumer warpgroups.
constexpr int kThreads = 384;
/// Threads of one warpgroup.
constexpr int kWarpgroup = 128;
/// Registers per thread after setmaxnreg: producer / consumers
/// (128 x 40 + 256 x 232 <= 65536).
constexpr int kProducerRegisters = 40;
constexpr int kConsumerRegisters = 232;
/// bf16 columns of one swizzled box row (128 bytes).
constexpr int kBoxColumns = 64;
/// Bytes of one box row.
constexpr int kRowBytes = 128;
/// Named barriers (0 is __syncthreads): "consumer w may issue" (1, 2),
/// per-consumer-warpgroup sync (3, 4), both consumer warpgroups (5).
constexpr int kBarTurn0 = 1;
constexpr int kBarWarpgroup0 = 3;
constexpr int kBarConsumers = 5;

/// Boxes of a logits depth.
constexpr int boxes(int depth) {
    return (depth + kBoxColumns - 1) / kBoxColumns;
}

/// Rounds up to a multiple of 1024 bytes (swizzle-atom alignment).
constexpr size_t align1k(size_t bytes) {
    return (bytes + 1023) / 1024 * 1024;
}

// ---- pass 1: log-normaliser (gmm_estep_sm90_log_norm.cuh) ----------------

/// Points per CTA; each consumer warpgroup owns half of them (the N of its
/// m64n128k16 products).
constexpr int kLnPoints = 256;
constexpr int kLnPointsPerWarpgroup = kLnPoints / 2;
/// Components per streamed tile (the M of one wgmma).
constexpr int kLnComponents = 64;
/// Shared-memory stages of the component stream, one box each.
constexpr int kLnStages = 10;

/// Shared-memory layout of pass 1 for a logits depth (byte offsets from a
/// 1024-aligned base).
struct LnLayout {
    int nbox;
    size_t points; ///< nbox boxes of kLnPoints rows
    size_t stages; ///< kLnStages boxes of kLnComponents rows
    size_t norms;  ///< kLnPoints floats, |x'|^2
    size_t merge;  ///< 2 x 4 warps x 128 columns x (max, sum) floats
    size_t ll;     ///< 2 x 4 doubles, log-likelihood per warp
    size_t bars;   ///< 1 + 2 kLnStages mbarriers
    size_t bytes;  ///< total, including 1024 bytes of alignment slack
};

constexpr size_t kLnStageBytes = size_t(kLnComponents) * kRowBytes;
constexpr size_t kLnPointBoxBytes = size_t(kLnPoints) * kRowBytes;

constexpr LnLayout ln_layout(int depth) {
    LnLayout l{};
    l.nbox = boxes(depth);
    l.points = 0;
    l.stages = l.points + size_t(l.nbox) * kLnPointBoxBytes;
    l.norms = l.stages + kLnStages * kLnStageBytes;
    l.merge = l.norms + kLnPoints * sizeof(float);
    l.ll = l.merge + 2 * 4 * kLnPointsPerWarpgroup * 2 * sizeof(float);
    l.bars = l.ll + 2 * 4 * sizeof(double);
    l.bytes = l.bars + (1 + 2 * kLnStages) * 8 + 1024;
    return l;
}

// ---- pass 2: statistics (gmm_estep_sm90_statistics.cuh) ------------------

/// Components per CTA (resident); each consumer warpgroup owns 64 of them
/// (the M of its products).
constexpr int kStatComponents = 128;
/// Points per streamed tile (N of the logits product, K of the statistics
/// product).
constexpr int kStatPoints = 64;
/// Shared-memory stages of the point stream.
constexpr int kStatStages = 4;

struct StatLayout {
    int nbox;
    size_t comps;  ///< nbox boxes of kStatComponents rows
    size_t stages; ///< kStatStages x nbox boxes of kStatPoints rows
    size_t aux;    ///< kStatStages x (norms, log2 Z) x kStatPoints floats
    size_t bars;   ///< 1 + 2 kStatStages mbarriers
    size_t bytes;
};

constexpr size_t kStatPointBoxBytes = size_t(kStatPoints) * kRowBytes;
constexpr size_t kStatCompBoxBytes = size_t(kStatComponents) * kRowBytes;

constexpr StatLayout stat_layout(int depth) {
    StatLayout l{};
    l.nbox = boxes(depth);
    l.comps = 0;
    l.stages = l.comps + size_t(l.nbox) * kStatCompBoxBytes;
    l.aux = l.stages + size_t(kStatStages) * l.nbox * kStatPointBoxBytes;
    l.bars = l.aux + size_t(kStatStages) * 2 * kStatPoints * sizeof(float);
    l.bytes = l.bars + (1 + 2 * kStatStages) * 8 + 1024;
    return l;
}

/// Largest dynamic shared memory of a CTA on sm_90 (227 KB).
constexpr size_t kMaxSharedBytes = 227 * 1024;
static_assert(ln_layout(256).bytes <= kMaxSharedBytes, "pass 1 smem");
static_assert(stat_layout(256).bytes <= kMaxSharedBytes, "pass 2 smem");

} // namespace sm90
} // namespace kernels
} // namespace faiss_gmm
