/**
 * Byte accounting of a built index, from public members only: what it
 * holds (IndexMemory: codes, ids, spill records, coarse model, code
 * parameters, refinement, transforms) and what a search reads per list
 * entry and per refined candidate (ScanBytes). Sizes are the data's
 * (elements x element size), not the allocator's capacity.
 */

#pragma once

#include <cstdint>

namespace faiss {
struct Index;
}

namespace faiss_gmm {
namespace eval {

/// Bytes an index holds, by part.
struct IndexMemory {
    /// inverted-list codes: entries (copies included) x code_size; for a
    /// flat-code index (IndexFlat, IndexScalarQuantizer, ...) its codes
    int64_t codes = 0;
    /// inverted-list ids (entries x 8) and IndexIDMap id maps
    int64_t ids = 0;
    /// IndexIVFGMM ownership records (SpillRecords): per entry, the other
    /// lists holding the vector (int32 each)
    int64_t spill_records = 0;
    /// coarse quantizer (centroids or means) and, for IndexIVFGMM, the
    /// mixture's weights, means and variances (full covariance: also the
    /// covariances and their Cholesky factors)
    int64_t coarse = 0;
    /// the code's trained parameters: SQ ranges, PQ codebooks and IVF-PQ
    /// precomputed tables (PQ, fast-scan PQ); other codes (RaBitQ...) make
    /// the memory incomplete
    int64_t code_params = 0;
    /// the refinement index of an IndexRefine (codes + parameters)
    int64_t refine = 0;
    /// IndexPreTransform linear transforms (matrix + bias)
    int64_t transforms = 0;
    /// false when a part of the chain is of a class not counted here (its
    /// bytes are missing from the total)
    bool complete = true;

    /// Sum of the parts.
    int64_t total() const {
        return codes + ids + spill_records + coarse + code_params + refine +
               transforms;
    }
    /// Adds every part of other (complete only when both are).
    void add(const IndexMemory& other);
};

/// Bytes the memory of index holds (see IndexMemory).
IndexMemory index_memory(const faiss::Index& index);

/// What one search reads, besides the query and the coarse step.
struct ScanBytes {
    /// per inverted-list entry visited: its code, and for IndexIVFGMM its
    /// spill record (read to skip duplicates); ids are not counted (read
    /// only for results). For a flat-code index (IndexFlat...), per stored
    /// vector. NaN for other indexes.
    double per_entry = 0;
    /// per candidate re-ranked by an IndexRefine: the refinement code
    double per_refined = 0;
};

/// The ScanBytes of index (zeros for the parts it does not have).
ScanBytes scan_bytes(const faiss::Index& index);

} // namespace eval
} // namespace faiss_gmm
