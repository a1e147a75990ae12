#include <eval/index_chain.h>

#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>

namespace faiss_gmm {
namespace eval {

IndexChain walk_chain(faiss::Index* index) {
    IndexChain chain;
    while (index && !chain.ivf) {
        if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) {
            chain.ivf = ivf;
            chain.gmm = dynamic_cast<IndexIVFGMM*>(ivf);
        } else if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) {
            chain.transformed = true;
            index = pt->index;
        } else if (auto* map = dynamic_cast<faiss::IndexIDMap*>(index)) {
            index = map->index;
        } else if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index)) {
            chain.refine = refine;
            index = refine->base_index;
        } else {
            index = nullptr;
        }
    }
    return chain;
}

} // namespace eval
} // namespace faiss_gmm
