#include <eval/memory.h>

#include <cmath>
#include <limits>

#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>

#include <faiss_gmm/IndexIVFGMM.h>

#include <eval/index_chain.h>

namespace faiss_gmm {
namespace eval {

namespace {

int64_t float_bytes(size_t n) {
    return int64_t(n * sizeof(float));
}

/**
 * The trained parameters of a code class into *bytes; false for a class
 * this file does not know (its parameters are then not counted).
 */
bool code_parameter_bytes(const faiss::Index& code, int64_t* bytes) {
    if (auto* sq = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(&code)) {
        *bytes = float_bytes(sq->sq.trained.size());
    } else if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&code)) {
        *bytes = float_bytes(pq->pq.centroids.size()) +
                 float_bytes(pq->precomputed_table.size());
    } else if (
        auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&code)) {
        *bytes = float_bytes(fs->pq.centroids.size()) +
                 float_bytes(fs->precomputed_table.size());
    } else if (
        auto* fsq = dynamic_cast<const faiss::IndexScalarQuantizer*>(&code)) {
        *bytes = float_bytes(fsq->sq.trained.size());
    } else if (auto* fpq = dynamic_cast<const faiss::IndexPQ*>(&code)) {
        *bytes = float_bytes(fpq->pq.centroids.size());
    } else if (
        dynamic_cast<const faiss::IndexIVFFlat*>(&code) ||
        dynamic_cast<const faiss::IndexFlat*>(&code)) {
        *bytes = 0;
    } else {
        *bytes = 0;
        return false;
    }
    return true;
}

IndexMemory ivf_memory(const faiss::IndexIVF& ivf) {
    IndexMemory m;
    int64_t entries = 0;
    for (size_t l = 0; l < ivf.nlist; l++) {
        entries += int64_t(ivf.invlists->list_size(l));
    }
    m.codes = entries * int64_t(ivf.code_size);
    m.ids = entries * int64_t(sizeof(idx_t));
    const IndexMemory quantizer = index_memory(*ivf.quantizer);
    m.coarse = quantizer.total();
    m.complete = quantizer.complete;
    const faiss::Index* code = &ivf;
    if (auto* gmm = dynamic_cast<const IndexIVFGMM*>(&ivf)) {
        for (const auto& records : gmm->spill_records.records) {
            m.spill_records += int64_t(records.size() * sizeof(int32_t));
        }
        m.coarse += float_bytes(
            gmm->gmm.weights.size() + gmm->gmm.means.size() +
            gmm->gmm.variances.size() + gmm->gmm.covariances.size() +
            gmm->gmm.precision_cholesky.size() +
            gmm->gmm.log_det_cholesky.size());
        // its code index shares the quantizer and keeps no entries
        code = gmm->codes_index;
    }
    m.complete = code_parameter_bytes(*code, &m.code_params) && m.complete;
    return m;
}

} // namespace

void IndexMemory::add(const IndexMemory& o) {
    codes += o.codes;
    ids += o.ids;
    spill_records += o.spill_records;
    coarse += o.coarse;
    code_params += o.code_params;
    refine += o.refine;
    transforms += o.transforms;
    complete = complete && o.complete;
}

IndexMemory index_memory(const faiss::Index& index) {
    IndexMemory m;
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index)) {
        return ivf_memory(*ivf);
    } else if (
        auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(&index)) {
        for (const faiss::VectorTransform* vt : pt->chain) {
            auto* lt = dynamic_cast<const faiss::LinearTransform*>(vt);
            m.transforms += lt ? float_bytes(lt->A.size() + lt->b.size()) : 0;
            m.complete = m.complete && lt;
        }
        m.add(index_memory(*pt->index));
    } else if (auto* map = dynamic_cast<const faiss::IndexIDMap*>(&index)) {
        m.ids = int64_t(map->id_map.size() * sizeof(idx_t));
        m.add(index_memory(*map->index));
    } else if (auto* refine = dynamic_cast<const faiss::IndexRefine*>(&index)) {
        const IndexMemory r = index_memory(*refine->refine_index);
        m.refine = r.total();
        m.complete = r.complete;
        m.add(index_memory(*refine->base_index));
    } else if (
        auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(&index)) {
        m.codes = index.ntotal * int64_t(flat->code_size);
        m.complete = code_parameter_bytes(index, &m.code_params);
    } else {
        m.complete = false;
    }
    return m;
}

ScanBytes scan_bytes(const faiss::Index& index) {
    // the walk only reads the chain
    const IndexChain chain = walk_chain(const_cast<faiss::Index*>(&index));
    ScanBytes bytes;
    const double kNaN = std::numeric_limits<double>::quiet_NaN();
    if (chain.ivf) {
        bytes.per_entry = double(chain.ivf->code_size);
        if (chain.gmm) {
            bytes.per_entry +=
                double(chain.gmm->spill_records.width) * sizeof(int32_t);
        }
    } else if (
        auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(&index)) {
        bytes.per_entry = double(flat->code_size);
    } else {
        bytes.per_entry = kNaN;
    }
    if (chain.refine) {
        auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(
            chain.refine->refine_index);
        bytes.per_refined = codes ? double(codes->code_size) : kNaN;
    }
    return bytes;
}

} // namespace eval
} // namespace faiss_gmm
