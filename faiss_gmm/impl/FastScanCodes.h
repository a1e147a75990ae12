/**
 * Internal (not installed): FAISS's fast-scan PQ (IndexIVFPQFastScan,
 * factory code "PQ<m>x4fs") as the code of an IndexIVFGMM.
 *
 * FAISS keeps fast-scan codes in blocks of bbs (32) vectors, interleaved
 * for its SIMD kernel, and searches them through its own path, not through
 * an InvertedListScanner (1.7.3 has none for them; 1.15's computes each
 * distance from the codebook in d flops). An IndexIVFGMM stores every code
 * one after the other in its own lists, so that spilled copies, removal,
 * merging, subsets and the file format work as for any code. The stored
 * code is what IndexIVFPQFastScan::encode_vectors writes (m 4-bit indexes,
 * two per byte, low nibble first; residual to the copy's own list mean
 * when by_residual, the "x4fsr" variant), which is exactly the code of a
 * 4-bit faiss::IndexIVFPQ. So the distances come from an IndexIVFPQ "scan
 * view" with the same quantizer, residual flag and codebook: its scanner
 * reads these codes through float look-up tables (the exact asymmetric PQ
 * distance, where FAISS's SIMD kernel rounds its tables to 8 bits). The
 * view decodes them too (reconstruct, sa_decode): FAISS 1.7.3's
 * IndexIVFPQFastScan::sa_decode returns other vectors than the codes'
 * (tests/test_fast_scan_codes.cpp checks the distances against the
 * decoded vectors). The same on every FAISS version. What this does not
 * give is the speed of FAISS's SIMD block scan: the gain is the memory of
 * 4-bit codes.
 *
 * Other fast-scan codes (additive quantizers "RQ..x4fs", "RaBitQfs") pack
 * per-vector data that no scan view reads: refused (fast_scan_refusal).
 */

#pragma once

#include <memory>
#include <mutex>
#include <typeinfo>

#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFastScan.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>

namespace faiss_gmm {
namespace impl {

/// codes as a fast-scan PQ, or nullptr when it is another code.
inline const faiss::IndexIVFPQFastScan*
as_fast_scan_pq(const faiss::IndexIVF& codes) {
    return dynamic_cast<const faiss::IndexIVFPQFastScan*>(&codes);
}

/// Whether codes is a fast-scan code that IndexIVFGMM cannot hold: any
/// IndexIVFFastScan but PQ.
inline bool is_unsupported_fast_scan(const faiss::IndexIVF& codes) {
    return dynamic_cast<const faiss::IndexIVFFastScan*>(&codes) &&
           !as_fast_scan_pq(codes);
}

/**
 * The IVF index whose InvertedListScanner reads what an IndexIVFGMM stores
 * for its code: the code index itself, or for a fast-scan PQ the scan view
 * (file comment), kept up to date with the code index's codebook.
 */
class CodeScanView {
   public:
    /**
     * @param codes the IndexIVFGMM's code index
     * @return codes, or the scan view of a fast-scan PQ (scan and decode
     *         with it, encode and train with codes); the view lives as
     *         long as this object and is updated in place when the codebook
     *         changed (a retrained code), as FAISS's own scanners see a
     *         retrained index
     */
    const faiss::IndexIVF& scan_index(const faiss::IndexIVF& codes) const {
        const faiss::IndexIVFPQFastScan* fs = as_fast_scan_pq(codes);
        if (!fs) {
            return codes;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (!view_) {
            view_ = std::make_unique<faiss::IndexIVFPQ>();
        }
        if (!matches(*fs)) {
            faiss::IndexIVFPQ& v = *view_;
            v.d = fs->d;
            v.nlist = fs->nlist;
            v.quantizer = fs->quantizer; // shared, not owned
            v.own_fields = false;
            v.metric_type = fs->metric_type;
            v.code_size = fs->code_size;
            v.pq = fs->pq;
            v.by_residual = fs->by_residual;
            v.use_precomputed_table = 0; // tables from the residual
            v.polysemous_ht = 0;
            v.is_trained = fs->is_trained;
        }
        return *view_;
    }

   private:
    /// Whether the view scans fs's codes as they are now.
    bool matches(const faiss::IndexIVFPQFastScan& fs) const {
        const faiss::IndexIVFPQ& v = *view_;
        return v.quantizer == fs.quantizer && v.d == fs.d &&
               v.nlist == fs.nlist && v.metric_type == fs.metric_type &&
               v.code_size == fs.code_size && v.by_residual == fs.by_residual &&
               v.is_trained == fs.is_trained && v.pq.d == fs.pq.d &&
               v.pq.M == fs.pq.M && v.pq.nbits == fs.pq.nbits &&
               v.pq.centroids == fs.pq.centroids;
    }

    mutable std::mutex mutex_;
    mutable std::unique_ptr<faiss::IndexIVFPQ> view_;
};

} // namespace impl
} // namespace faiss_gmm
