/**
 * What one evaluation run measured: per index, its build figures and one
 * row per search setting (nprobe, or posterior-mass target for adaptive
 * probing). Filled by run_evaluation, read by the summary, the writers and
 * the plot.
 */

#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <eval/memory.h>

namespace faiss_gmm {
namespace eval {

/// Measurements of one index at one search setting; counts are per query.
struct SearchRow {
    /// lists probed at most (the nprobe setting; 0 for non-IVF indexes)
    int64_t nprobe = 0;
    /// adaptive probing target (fraction of posterior mass; 0 = off)
    double posterior_mass = 0;
    /// lists actually probed, mean per query
    double lists_probed = 0;
    /// recall@1, ann-benchmarks definition (NaN when not measurable)
    double recall_at_1 = 0;
    /// recall@10 (NaN when fewer than 10 results or ground-truth rows)
    double recall_at_10 = 0;
    /// recall@100 (NaN when fewer than 100 results or ground-truth rows)
    double recall_at_100 = 0;
    /// recall@k for the configured k (the summary's measure)
    double recall_at_k = 0;
    /// query-to-centroid distances per query
    double coarse_distances = 0;
    /// query-to-stored-vector distances per query, each vector counted once
    double fine_distances = 0;
    /// inverted-list entries visited per query, duplicates included
    double entries_scanned = 0;
    /**
     * candidates re-ranked per query by a refinement (IndexRefine around
     * the IVF; 0 without one): k * k_factor, or the results when the IVF
     * returned fewer than k; exact for k_factor = 1, an upper bound for a
     * query where the IVF found between k and k * k_factor candidates
     */
    double refine_distances = 0;
    /// bytes read per query: entries scanned x ScanBytes::per_entry +
    /// refine_distances x ScanBytes::per_refined (memory.h; NaN when the
    /// index's scan is not counted)
    double bytes_scanned = 0;
    /// search wall time of all queries, seconds
    double search_s = 0;
    /// queries per second (nq / search_s)
    double qps = 0;

    /// Headline cost: coarse + fine (unique vectors) + refined.
    double total_distances() const {
        return coarse_distances + fine_distances + refine_distances;
    }
    /// Cost counted by list entries: coarse + entries scanned + refined.
    double total_entries() const {
        return coarse_distances + entries_scanned + refine_distances;
    }
};

/// One evaluated index: how it was built and its search rows.
struct IndexResult {
    /// label used in tables and the plot
    std::string name;
    /// factory string and the parameters applied to it
    std::string description;
    /// true when the index holds a faiss_gmm::IndexIVFGMM
    bool is_gmm = false;
    /// number of inverted lists (0 for non-IVF indexes)
    int64_t nlist = 0;
    /// training wall time, seconds (of the shared model when shared, plus
    /// the index's own code and refinement training)
    double train_s = 0;
    /// adding wall time, seconds
    double add_s = 0;
    /// unique vectors stored
    int64_t ntotal = 0;
    /// inverted-list entries (copies included)
    int64_t nentries = 0;
    /// nentries / ntotal
    double replication = 1;
    /// list-size imbalance, FAISS definition: nlist * sum(s^2) / (sum s)^2
    /// (1 = perfectly balanced; the expected cost of a probe relative to
    /// equal lists)
    double imbalance = 1;
    /// bytes held by the inverted lists: codes + ids (+ spill bookkeeping)
    int64_t list_bytes = 0;
    /// bytes of one list entry's code (0 for non-IVF indexes)
    int64_t code_size = 0;
    /// everything the index holds, by part (CPU indexes; GPU runs leave it
    /// empty, complete = false)
    IndexMemory memory;

    /// memory.total() / ntotal (NaN when empty or not counted)
    double bytes_per_vector() const {
        return ntotal > 0 && memory.complete
                   ? double(memory.total()) / double(ntotal)
                   : std::numeric_limits<double>::quiet_NaN();
    }
    /// one row per search setting, in sweep order
    std::vector<SearchRow> rows;
};

/// A whole run: the data set, the settings and every index's results.
struct EvalReport {
    std::string dataset;     ///< data set name
    std::string description; ///< data set description
    int64_t n_base = 0;      ///< base vectors indexed
    int64_t n_query = 0;     ///< queries searched
    int d = 0;               ///< dimension
    int64_t n_train = 0;     ///< rows of the shared training sample
    int k = 10;              ///< the k of the summary's recall@k
    int search_k = 100;      ///< results requested per query
    int threads = 0;         ///< OpenMP threads used
    std::string gpu;         ///< device of a --gpu run, else ""
    /// --distance-matrix: where the matrix was computed, else ""
    std::string distance_matrix;
    std::vector<IndexResult> indexes; ///< in evaluation order
    /// position of the baseline in indexes: the first non-GMM index
    /// (-1 when every index is a GMM index)
    int baseline = -1;
};

} // namespace eval
} // namespace faiss_gmm
