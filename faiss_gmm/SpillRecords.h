/**
 * Ownership of spilled vectors: which lists hold which vector, so that a
 * vector stored in several inverted lists stays ONE vector for counting,
 * search, removal and reconstruction. Used by IndexIVFGMM (records kept
 * beside its faiss::InvertedLists) and by gpu::GpuIndexIVFGMM (records
 * mirrored to the device for its scan kernel); the rules below are the
 * only implementation of these semantics.
 *
 * Record of an entry: the width int32 list numbers of the OTHER lists that
 * hold the same vector, -1 padded at the end. A vector in lists {3, 7}
 * has record {7, -1, ...} in list 3 and {3, -1, ...} in list 7.
 *
 *  - canonical copy: the copy in the smallest of a vector's lists; exactly
 *    one per vector, so counting canonical copies counts vectors;
 *  - duplicate for a query: an entry one of whose other lists the query
 *    probed earlier (the vector was compared there), so each vector is
 *    compared once per query;
 *  - removal: every copy of a selected vector goes (swap with the last
 *    entry, as faiss's ArrayInvertedLists removal does), counted once.
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

/// Probe rank of a list that the current query has not probed (yet).
constexpr int32_t kListNotProbed = INT32_MAX;

/**
 * true when the entry of list `list_no` with this record is its vector's
 * canonical copy (no other list of the vector is smaller).
 *
 * @param list_no list of the entry
 * @param record  width values, the other lists then -1 padding
 * @param width   values per record
 */
inline bool
is_canonical_copy(size_t list_no, const int32_t* record, int width) {
    for (int t = 0; t < width && record[t] >= 0; t++) {
        if (size_t(record[t]) < list_no) {
            return false;
        }
    }
    return true;
}

/**
 * true when the entry is a duplicate for the current query: one of its
 * other lists was probed before the list it is read from.
 *
 * @param record     the entry's record
 * @param width      values per record
 * @param probe_rank per list, its rank in the query's probe order, or
 *                   kListNotProbed
 * @param rank_here  probe rank of the list being scanned
 */
inline bool probed_earlier(
    const int32_t* record,
    int width,
    const int32_t* probe_rank,
    int32_t rank_here) {
    for (int t = 0; t < width && record[t] >= 0; t++) {
        if (probe_rank[record[t]] < rank_here) {
            return true;
        }
    }
    return false;
}

/**
 * The record of the copy of a vector stored in lists[a], given all its
 * lists lists[0 .. m) (-1 = none): the other lists in that order, -1
 * padded to width.
 */
void make_spill_record(
    const idx_t* lists, int m, int a, int width, int32_t* record);

/// What remove_spilled_entries removed from one list.
struct SpillRemoval {
    size_t entries = 0; ///< list entries removed (copies)
    size_t vectors = 0; ///< canonical copies among them (vectors)
};

/**
 * Removes the selected entries of one list by swapping each with the last
 * entry, as faiss::ArrayInvertedLists removal does: records are moved
 * here, the caller's storage (ids, codes) by move(dst, src). The list
 * keeps its first size - removal.entries entries.
 *
 * @param list_no  the list
 * @param size     its entries
 * @param width    values per record
 * @param records  size x width records of the list
 * @param selected selected(j): whether entry j (current position) goes
 * @param move     move(dst, src): entry src of the storage replaces dst
 */
template <class Selected, class Move>
SpillRemoval remove_spilled_entries(
    size_t list_no,
    size_t size,
    int width,
    int32_t* records,
    Selected&& selected,
    Move&& move) {
    SpillRemoval removal;
    size_t j = 0;
    while (j < size) {
        if (!selected(j)) {
            j++;
            continue;
        }
        if (is_canonical_copy(list_no, records + j * width, width)) {
            removal.vectors++;
        }
        removal.entries++;
        size--;
        if (j < size) {
            move(j, size);
            for (int t = 0; t < width; t++) {
                records[j * width + t] = records[size * width + t];
            }
        }
    }
    return removal;
}

/**
 * The spill records of a set of inverted lists, list by list, and the
 * number of entries they describe. The owner keeps them in step with its
 * lists: one record per entry, in entry order.
 */
struct SpillRecords {
    /// int32 values per record (max_assign - 1 of the widest add so far)
    int width = 0;
    /// per list: list_size * width values
    std::vector<std::vector<int32_t>> records;
    /// list entries described (copies), >= the vectors they hold
    size_t nentries = 0;

    /// Empty records for nlist lists, of the given width.
    void reset(size_t nlist, int width);

    /// Number of lists.
    size_t nlist() const {
        return records.size();
    }

    /// Entries of list l according to its records (width > 0), or
    /// `fallback` when width == 0 (records say nothing then).
    size_t list_size(size_t l, size_t fallback) const;

    /// Record of entry `offset` of list l (width values).
    const int32_t* record(size_t l, size_t offset) const {
        return records[l].data() + offset * size_t(width);
    }

    /**
     * Widen every record to new_width (no-op when not wider), padding with
     * -1; list_size(l) gives each list's entries (needed when width is 0).
     */
    void widen(int new_width, const std::function<size_t(size_t)>& list_size);

    /// Append the record of a vector's copy in lists[a] (see
    /// make_spill_record) to list lists[a]. Does not count it in nentries:
    /// callers that append from several threads (one list per thread) add
    /// their totals afterwards.
    void append_record(const idx_t* lists, int m, int a);

    /// Append the records of another set (same nlist, width <= ours) to
    /// ours, list by list.
    void append_all(const SpillRecords& other);

    /**
     * Throws (naming `who`, the list and the sizes) unless every list has
     * one record per entry: list_size(l) * width values, and nentries is
     * their sum.
     */
    void check_in_sync(
        const std::function<size_t(size_t)>& list_size, const char* who) const;
};

/**
 * id -> (list, offset) of one copy of every stored vector, for
 * reconstruct(). Built on first use and dropped by every change of the
 * lists; safe to read from several threads (const after build).
 */
class IdLocations {
   public:
    /**
     * @param nlist   lists
     * @param ids_of  ids_of(l) fills the ids of list l
     */
    IdLocations(
        size_t nlist,
        const std::function<void(size_t, std::vector<idx_t>&)>& ids_of);

    /// (list, offset) of a copy of `id`; false when no vector has it.
    bool find(idx_t id, size_t* list_no, size_t* offset) const;

   private:
    std::unordered_map<idx_t, std::pair<uint32_t, uint32_t>> where_;
};

/**
 * A lazily built IdLocations shared by const readers: get() builds it on
 * first use (thread-safe), reset() drops it after a change of the lists.
 */
class IdLocationCache {
   public:
    /// The locations, built by `build` when absent.
    std::shared_ptr<const IdLocations>
    get(const std::function<std::shared_ptr<const IdLocations>()>& build) const;
    /// Drop the locations (after the lists changed).
    void reset();

   private:
    mutable std::shared_ptr<const IdLocations> locations_;
};

} // namespace faiss_gmm
