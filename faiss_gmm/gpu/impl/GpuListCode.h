/**
 * The code of a GpuIndexIVFGMM's lists on the host side: which of the GPU
 * codes (kernels/ivf_codes.h: flat floats, FAISS's SQfp16 or SQ8), whether
 * entries are residuals to their list's mean, and FAISS's ScalarQuantizer
 * that holds the trained ranges. It maps the CPU index's codes onto the
 * GPU ones and back, trains the code as the CPU index does, and decodes
 * single entries (reconstruct, list downloads). Internal to faiss_gmm's GPU
 * code.
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/ScalarQuantizer.h>

#include <faiss_gmm/faiss_compat.h>
#include <kernels/ivf_codes.h>

namespace faiss_gmm {
namespace gpu {

/// The code of GPU lists (see the file comment).
struct GpuListCode {
    /// what an entry stores
    kernels::IvfCodeKind kind = kernels::IvfCodeKind::Float32;
    /// entries encode x - mu_l (FAISS's by_residual; never for Float32)
    bool by_residual = false;
    /// Float16 / SQ8: FAISS's quantizer (QT_fp16 / QT_8bit) and, for SQ8,
    /// its trained per-dimension ranges (vmin then vdiff, 2 d floats)
    faiss::ScalarQuantizer sq;

    /**
     * The code named as in factory strings: "Flat", "SQfp16" or "SQ8"
     * (FAISS's defaults for IVF: residual SQ codes). Throws naming the
     * code otherwise.
     */
    static GpuListCode from_name(const std::string& name, int d);

    /**
     * The GPU code of a CPU index's codes: IndexIVFFlat, or an
     * IndexIVFScalarQuantizer of QT_fp16 / QT_8bit (trained or not). Throws
     * (prefixed by who) naming any other code, which stays CPU-only.
     */
    static GpuListCode
    from_codes_index(const faiss::IndexIVF& codes, const char* who);

    /// "Flat", "SQfp16" or "SQ8".
    const char* name() const;
    /// bytes per entry
    size_t code_size(int d) const;
    /// whether the code has parameters to train (SQ8)
    bool needs_training() const;
    /// whether those are trained (always for Flat and SQfp16)
    bool is_trained() const;

    /**
     * Train the code as IndexIVFGMM::train_codes does: FAISS trains an IVF
     * index of this code whose quantizer is `means` (the model's means) on
     * the n vectors x (residuals to their nearest mean). No-op when the
     * code needs no training.
     */
    void train(const faiss::IndexFlatL2& means, idx_t n, const float* x);

    /**
     * A new, trained FAISS IVF index of this code for nlist lists over its
     * own empty IndexFlatL2 quantizer (own_fields set): the codes_index of
     * the CPU copy of a GPU index.
     */
    faiss::IndexIVF* make_codes_index(int d, size_t nlist) const;

    /**
     * FAISS's codes of n entries (out: n x code_size(d) bytes): entry e
     * encodes row rows[e] of x (n_rows x d, host), or its residual to the
     * mean of list lists[e] (means: nlist x d) when by_residual. For SQ
     * codes only (Flat lists take the float rows as they are).
     */
    void encode(
        int d,
        const float* x,
        const float* means,
        int64_t n,
        const int64_t* rows,
        const int32_t* lists,
        uint8_t* out) const;

    /// Decode one entry's code into d floats (mean: its list's mean, used
    /// when by_residual).
    void
    decode(const uint8_t* code, const float* mean, int d, float* out) const;
};

} // namespace gpu
} // namespace faiss_gmm
