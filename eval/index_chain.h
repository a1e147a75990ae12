/**
 * The parts of an evaluated index chain, as the factory builds it
 * ("PCA64,IVF1024_GMM,SQ8,RFlat"): the IVF at the bottom (FAISS's or an
 * IndexIVFGMM), the refinement around it and whether a transform lies
 * above it. FAISS 1.7.3's ivflib::try_extract_index_ivf does not look
 * inside an IndexRefine; this walk does, on every FAISS version.
 */

#pragma once

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexRefine.h>

#include <faiss_gmm/IndexIVFGMM.h>

namespace faiss_gmm {
namespace eval {

/// What walk_chain found (null pointers: not in the chain).
struct IndexChain {
    /// the IVF at the bottom of the chain
    faiss::IndexIVF* ivf = nullptr;
    /// ivf as an IndexIVFGMM
    IndexIVFGMM* gmm = nullptr;
    /// the innermost IndexRefine above the IVF
    faiss::IndexRefine* refine = nullptr;
    /// an IndexPreTransform lies above the IVF
    bool transformed = false;
};

/**
 * Walks index down through IndexPreTransform, IndexIDMap(2) and
 * IndexRefine (its base index) to an IndexIVF; ivf stays null when the
 * chain ends elsewhere (IndexFlat, HNSW, ...).
 */
IndexChain walk_chain(faiss::Index* index);

} // namespace eval
} // namespace faiss_gmm
