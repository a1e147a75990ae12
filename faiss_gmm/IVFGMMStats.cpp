#include <faiss_gmm/IVFGMMStats.h>

#include <mutex>

namespace faiss_gmm {

IndexIVFGMMStats indexIVFGMM_stats;

void IndexIVFGMMStats::reset() {
    *this = IndexIVFGMMStats();
}

void IndexIVFGMMStats::add(const IndexIVFGMMStats& other) {
    nq += other.nq;
    ncoarse_distances += other.ncoarse_distances;
    nfine_distances += other.nfine_distances;
    nentries_scanned += other.nentries_scanned;
    nduplicates_skipped += other.nduplicates_skipped;
    nlists_probed += other.nlists_probed;
    nbound_distances += other.nbound_distances;
    nlists_pruned += other.nlists_pruned;
}

void add_to_global_stats(
    const IndexIVFGMMStats& local, const faiss::IndexIVFStats* ivf) {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    indexIVFGMM_stats.add(local);
    if (ivf) {
        faiss::indexIVF_stats.add(*ivf);
    }
}

} // namespace faiss_gmm
