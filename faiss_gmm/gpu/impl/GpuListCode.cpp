#include <faiss_gmm/gpu/impl/GpuListCode.h>

#include <algorithm>
#include <cinttypes>
#include <typeinfo>
#include <vector>

#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/impl/ClassName.h>

namespace faiss_gmm {
namespace gpu {

namespace {

using kernels::IvfCodeKind;

GpuListCode scalar_code(
    IvfCodeKind kind,
    faiss::ScalarQuantizer::QuantizerType qtype,
    int d,
    bool by_residual) {
    GpuListCode code;
    code.kind = kind;
    code.by_residual = by_residual;
    code.sq = faiss::ScalarQuantizer(size_t(d), qtype);
    return code;
}

} // namespace

GpuListCode GpuListCode::from_name(const std::string& name, int d) {
    if (name == "Flat") {
        return GpuListCode();
    }
    if (name == "SQfp16") {
        return scalar_code(
            IvfCodeKind::Float16, faiss::ScalarQuantizer::QT_fp16, d, true);
    }
    if (name == "SQ8") {
        return scalar_code(
            IvfCodeKind::SQ8, faiss::ScalarQuantizer::QT_8bit, d, true);
    }
    FAISS_THROW_FMT(
        "GpuIndexIVFGMM: codes \"%s\" are not stored on the GPU (Flat, "
        "SQfp16 or SQ8; other codes stay on the CPU IndexIVFGMM)",
        name.c_str());
}

GpuListCode
GpuListCode::from_codes_index(const faiss::IndexIVF& codes, const char* who) {
    if (typeid(codes) == typeid(faiss::IndexIVFFlat)) {
        return GpuListCode();
    }
    const auto* sq =
        dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(&codes);
    FAISS_THROW_IF_NOT_FMT(
        sq && typeid(codes) == typeid(faiss::IndexIVFScalarQuantizer) &&
            (sq->sq.qtype == faiss::ScalarQuantizer::QT_8bit ||
             sq->sq.qtype == faiss::ScalarQuantizer::QT_fp16),
        "%s: the GPU index stores Flat, SQfp16 and SQ8 codes; this index's "
        "codes are a %s%s (keep it on the CPU)",
        who,
        impl::class_name(codes).c_str(),
        sq ? " of another quantizer type" : "");
    GpuListCode code;
    code.kind = sq->sq.qtype == faiss::ScalarQuantizer::QT_8bit
                    ? IvfCodeKind::SQ8
                    : IvfCodeKind::Float16;
    code.by_residual = sq->by_residual;
    code.sq = sq->sq;
    return code;
}

const char* GpuListCode::name() const {
    switch (kind) {
    case IvfCodeKind::Float16:
        return "SQfp16";
    case IvfCodeKind::SQ8:
        return "SQ8";
    case IvfCodeKind::Float32:
    default:
        return "Flat";
    }
}

size_t GpuListCode::code_size(int d) const {
    return size_t(kernels::ivf_code_size(kind, d));
}

bool GpuListCode::needs_training() const {
    return kind == IvfCodeKind::SQ8;
}

bool GpuListCode::is_trained() const {
    return !needs_training() || sq.trained.size() == 2 * sq.d;
}

void GpuListCode::train(
    const faiss::IndexFlatL2& means, idx_t n, const float* x) {
    if (!needs_training()) {
        return;
    }
    FAISS_THROW_IF_NOT_FMT(
        n >= 1 && x,
        "GpuIndexIVFGMM: the %s code needs training vectors (n=%" PRId64 ")",
        name(),
        int64_t(n));
    // FAISS's own IVF training of the code, on the model's means (the
    // quantizer is trained and full, so only the code is trained)
    faiss::IndexIVFScalarQuantizer ivf(
        const_cast<faiss::IndexFlatL2*>(&means),
        size_t(means.d),
        size_t(means.ntotal),
        sq.qtype,
        faiss::METRIC_L2,
        by_residual);
    ivf.own_fields = false;
    ivf.train(n, x);
    sq = ivf.sq;
}

faiss::IndexIVF* GpuListCode::make_codes_index(int d, size_t nlist) const {
    faiss::IndexIVF* out = nullptr;
    if (kind == IvfCodeKind::Float32) {
        out = new faiss::IndexIVFFlat(
            new faiss::IndexFlatL2(d), size_t(d), nlist, faiss::METRIC_L2);
    } else {
        auto* ivf = new faiss::IndexIVFScalarQuantizer(
            new faiss::IndexFlatL2(d),
            size_t(d),
            nlist,
            sq.qtype,
            faiss::METRIC_L2,
            by_residual);
        ivf->sq = sq;
        ivf->is_trained = is_trained();
        out = ivf;
    }
    out->own_fields = true;
    return out;
}

void GpuListCode::encode(
    int d,
    const float* x,
    const float* means,
    int64_t n,
    const int64_t* rows,
    const int32_t* lists,
    uint8_t* out) const {
    FAISS_THROW_IF_NOT_MSG(
        kind != IvfCodeKind::Float32 && is_trained(),
        "GpuListCode::encode: not a trained SQ code");
    std::vector<float> residuals(size_t(n) * d);
#pragma omp parallel for if (n > 1000)
    for (int64_t e = 0; e < n; e++) {
        const float* row = x + size_t(rows[e]) * d;
        const float* mean = means + size_t(lists[e]) * d;
        float* r = residuals.data() + size_t(e) * d;
        for (int i = 0; i < d; i++) {
            // the subtraction of faiss::Index::compute_residual
            r[i] = by_residual ? row[i] - mean[i] : row[i];
        }
    }
    sq.compute_codes(residuals.data(), out, size_t(n));
}

void GpuListCode::decode(
    const uint8_t* code, const float* mean, int d, float* out) const {
    if (kind == IvfCodeKind::Float32) {
        std::copy_n(reinterpret_cast<const float*>(code), d, out);
        return;
    }
    sq.decode(code, out, 1);
    if (by_residual) {
        for (int i = 0; i < d; i++) {
            out[i] += mean[i];
        }
    }
}

} // namespace gpu
} // namespace faiss_gmm
