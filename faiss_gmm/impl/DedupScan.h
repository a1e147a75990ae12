/**
 * Internal (not installed): the dedup-aware scan of one query's probed
 * lists, over any FAISS IVF code (Flat, SQ, PQ, RaBitQ...) through the
 * code's own faiss::InvertedListScanner. The contract, shared with the GPU
 * scan kernels:
 *
 *  - lists are visited in probe order; a list a pruning rule rejects is
 *    skipped whole (counted in `pruned`);
 *  - an entry whose vector sits in a list probed earlier for this query is
 *    skipped (counted in `duplicates`), so each vector's distance is
 *    computed once and its id handed on at most once;
 *  - every other entry that passes the selector has its distance computed
 *    once (`distances`) and handed to consume(dis, list, offset, id);
 *  - probing stops after the list in which `distances` reaches max_codes
 *    (unique vectors, 0 = no limit).
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <faiss_gmm/IVFGMMStats.h>
#include <faiss_gmm/SpillRecords.h>
#include <faiss_gmm/impl/ListPruning.h>

namespace faiss_gmm {
namespace impl {

/// Per-query counters of DedupScan::scan, summed by the callers.
struct ScanCounts {
    size_t lists = 0;      ///< non-empty lists visited
    size_t distances = 0;  ///< unique vectors compared
    size_t scanned = 0;    ///< list entries visited, duplicates included
    size_t duplicates = 0; ///< entries skipped as already compared
    size_t bound = 0;      ///< mean-to-mean distances of the bisector bound
    size_t pruned = 0;     ///< lists skipped by a pruning rule

    void add(const ScanCounts& o) {
        lists += o.lists;
        distances += o.distances;
        scanned += o.scanned;
        duplicates += o.duplicates;
        bound += o.bound;
        pruned += o.pruned;
    }

    /// The IVF-GMM counters of these scans for nq queries (coarse
    /// distances: the bisector's only; the caller adds the nlist per query
    /// it computed).
    IndexIVFGMMStats to_stats(size_t nq) const {
        IndexIVFGMMStats s;
        s.nq = nq;
        s.ncoarse_distances = bound;
        s.nbound_distances = bound;
        s.nlists_pruned = pruned;
        s.nfine_distances = distances;
        s.nentries_scanned = scanned;
        s.nduplicates_skipped = duplicates;
        s.nlists_probed = lists;
        return s;
    }

    /// FAISS's IVF counters of these scans for nq queries (lists probed,
    /// distances computed once each, heap updates).
    faiss::IndexIVFStats to_ivf_stats(size_t nq, size_t nheap = 0) const {
        faiss::IndexIVFStats s;
        s.reset();
        s.nq = nq;
        s.nlist = lists;
        s.ndis = distances;
        s.nheap_updates = nheap;
        return s;
    }
};

/// What every query's scan reads besides the query.
struct ScanContext {
    const faiss::InvertedLists* invlists = nullptr;
    const SpillRecords* records = nullptr;
    size_t code_size = 0;
    int d = 0;
    /// component means (nlist x d): the L2 distances handed to the code
    /// scanner when the coarse distances are not L2 (posterior order)
    const float* means = nullptr;
    /// whether coarse_dis values are squared L2 distances to the means
    bool coarse_is_l2 = true;
    const faiss::IDSelector* sel = nullptr;
    /// unique vectors after which probing stops (0: no limit)
    size_t max_codes = 0;
    const BisectorPruner* bisector = nullptr;
    const HitModelPruner* hit_model = nullptr;
};

/**
 * One thread's scanning state: the code scanner and the probe ranks
 * (nlist values, all kListNotProbed between queries).
 */
class DedupScan {
   public:
    /**
     * @param ctx     shared context (must outlive this)
     * @param codes   the IVF index whose code scanner computes distances
     * @param params  per-call parameters handed to the code scanner
     */
    DedupScan(
        const ScanContext& ctx,
        const faiss::IndexIVF& codes,
        const faiss::SearchParametersIVF* params)
        : ctx_(ctx),
          scanner_(new_code_scanner(codes, params)),
          probe_rank_(ctx.invlists->nlist, kListNotProbed) {}

    /**
     * Scan one query's lists (see the file comment).
     *
     * @param q            the query (d floats)
     * @param distance_row when not null, distance_row[id] replaces each
     *                     distance computation (precomputed distances)
     * @param keys         nprobe lists in probe order (-1: none)
     * @param coarse_dis   their coarse scores (squared L2 distances when
     *                     ctx.coarse_is_l2; needed by the pruning rules)
     * @param nprobe       length of keys
     * @param threshold    threshold(): current k-th distance or radius
     * @param consume      consume(dis, list, offset, id) per compared entry
     * @param counts       counters to add to
     */
    template <class Threshold, class Consume>
    void scan(
        const float* q,
        const float* distance_row,
        const idx_t* keys,
        const float* coarse_dis,
        size_t nprobe,
        Threshold&& threshold,
        Consume&& consume,
        ScanCounts* counts) {
        const int w = ctx_.records->width;
        if (!distance_row) {
            scanner_->set_query(q);
        }
        size_t compared_here = 0;
        for (size_t r = 0; r < nprobe; r++) {
            const idx_t l = keys[r];
            if (l < 0 || probe_rank_[l] != kListNotProbed) {
                continue;
            }
            if (r > 0 && is_pruned(keys, coarse_dis, r, threshold(), counts)) {
                counts->pruned++;
                continue;
            }
            probe_rank_[l] = int32_t(r);
            const size_t list_size = ctx_.invlists->list_size(l);
            if (list_size == 0) {
                continue;
            }
            counts->lists++;
            faiss::InvertedLists::ScopedCodes scodes(ctx_.invlists, l);
            faiss::InvertedLists::ScopedIds sids(ctx_.invlists, l);
            const uint8_t* codes = scodes.get();
            const idx_t* ids = sids.get();
            const int32_t* records = ctx_.records->records[l].data();
            if (!distance_row) {
                scanner_->set_list(
                    l, list_coarse_distance(q, l, coarse_dis, r));
            }
            for (size_t j = 0; j < list_size; j++) {
                if (w > 0 &&
                    probed_earlier(
                        records + j * w, w, probe_rank_.data(), int32_t(r))) {
                    counts->duplicates++;
                    continue;
                }
                if (ctx_.sel && !ctx_.sel->is_member(ids[j])) {
                    continue;
                }
                const float dis = distance_row
                                      ? distance_row[ids[j]]
                                      : scanner_->distance_to_code(
                                            codes + j * ctx_.code_size);
                counts->distances++;
                compared_here++;
                consume(dis, l, j, ids[j]);
            }
            counts->scanned += list_size;
            if (ctx_.max_codes && compared_here >= ctx_.max_codes) {
                break;
            }
        }
        for (size_t r = 0; r < nprobe; r++) {
            if (keys[r] >= 0) {
                probe_rank_[keys[r]] = kListNotProbed;
            }
        }
    }

   private:
    bool is_pruned(
        const idx_t* keys,
        const float* coarse_dis,
        size_t r,
        float kth,
        ScanCounts* counts) const {
        const idx_t l = keys[r];
        if (ctx_.hit_model->active() &&
            ctx_.hit_model->prunes(l, coarse_dis[r], kth)) {
            return true;
        }
        return ctx_.bisector->active() && ctx_.bisector->prunes(
                                              keys[0],
                                              coarse_dis[0],
                                              l,
                                              coarse_dis[r],
                                              kth,
                                              &counts->bound);
    }

    /// The squared L2 distance from q to mean l, as the code scanner
    /// expects it in set_list.
    float list_coarse_distance(
        const float* q, idx_t l, const float* coarse_dis, size_t r) const {
        if (ctx_.coarse_is_l2 && coarse_dis) {
            return coarse_dis[r];
        }
        return faiss::fvec_L2sqr(q, ctx_.means + int64_t(l) * ctx_.d, ctx_.d);
    }

    const ScanContext& ctx_;
    std::unique_ptr<faiss::InvertedListScanner> scanner_;
    std::vector<int32_t> probe_rank_;
};

} // namespace impl
} // namespace faiss_gmm
