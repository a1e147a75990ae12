#include <faiss_gmm/SpillRecords.h>

#include <atomic>
#include <limits>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {

void make_spill_record(
    const idx_t* lists, int m, int a, int width, int32_t* record) {
    int c = 0;
    for (int b = 0; b < m; b++) {
        if (b != a && lists[b] >= 0) {
            FAISS_THROW_IF_NOT_FMT(
                c < width,
                "spill record of width %d cannot hold the %d lists of a "
                "vector",
                width,
                m);
            record[c++] = int32_t(lists[b]);
        }
    }
    for (; c < width; c++) {
        record[c] = -1;
    }
}

void SpillRecords::reset(size_t nlist, int new_width) {
    FAISS_THROW_IF_NOT_FMT(
        new_width >= 0, "SpillRecords: width=%d must be >= 0", new_width);
    records.assign(nlist, {});
    width = new_width;
    nentries = 0;
}

size_t SpillRecords::list_size(size_t l, size_t fallback) const {
    return width > 0 ? records[l].size() / size_t(width) : fallback;
}

void SpillRecords::widen(
    int new_width, const std::function<size_t(size_t)>& list_size_of) {
    if (new_width <= width) {
        return;
    }
    const int old_width = width;
    const size_t nl = records.size();
#pragma omp parallel for schedule(dynamic)
    for (size_t l = 0; l < nl; l++) {
        const size_t n = list_size_of(l);
        std::vector<int32_t> wider(n * size_t(new_width), -1);
        for (size_t j = 0; j < n && old_width > 0; j++) {
            for (int t = 0; t < old_width; t++) {
                wider[j * new_width + t] = records[l][j * old_width + t];
            }
        }
        records[l].swap(wider);
    }
    width = new_width;
}

void SpillRecords::append_record(const idx_t* lists, int m, int a) {
    std::vector<int32_t>& list = records[size_t(lists[a])];
    const size_t start = list.size();
    list.resize(start + size_t(width));
    make_spill_record(lists, m, a, width, list.data() + start);
}

void SpillRecords::append_all(const SpillRecords& other) {
    FAISS_THROW_IF_NOT_FMT(
        other.records.size() == records.size() && other.width <= width,
        "SpillRecords: cannot append %zu lists of width %d to %zu lists of "
        "width %d",
        other.records.size(),
        other.width,
        records.size(),
        width);
    for (size_t l = 0; l < records.size(); l++) {
        const std::vector<int32_t>& theirs = other.records[l];
        const size_t n = other.width > 0 ? theirs.size() / other.width : 0;
        std::vector<int32_t>& mine = records[l];
        const size_t start = mine.size();
        mine.resize(start + n * size_t(width), -1);
        for (size_t j = 0; j < n; j++) {
            for (int t = 0; t < other.width; t++) {
                mine[start + j * width + t] = theirs[j * other.width + t];
            }
        }
    }
    nentries += other.nentries;
}

void SpillRecords::check_in_sync(
    const std::function<size_t(size_t)>& list_size_of, const char* who) const {
    size_t total = 0;
    for (size_t l = 0; l < records.size(); l++) {
        const size_t n = list_size_of(l);
        FAISS_THROW_IF_NOT_FMT(
            records[l].size() == n * size_t(width),
            "%s: list %zu has %zu entries but %zu spill record values of "
            "width %d (inverted lists changed behind the index)",
            who,
            l,
            n,
            records[l].size(),
            width);
        total += n;
    }
    FAISS_THROW_IF_NOT_FMT(
        total == nentries,
        "%s: the lists hold %zu entries, the spill records count %zu",
        who,
        total,
        nentries);
}

IdLocations::IdLocations(
    size_t nlist,
    const std::function<void(size_t, std::vector<idx_t>&)>& ids_of) {
    std::vector<idx_t> ids;
    for (size_t l = 0; l < nlist; l++) {
        ids_of(l, ids);
        FAISS_THROW_IF_NOT_FMT(
            ids.size() <= std::numeric_limits<uint32_t>::max(),
            "IdLocations: list %zu has %zu entries (limit 2^32)",
            l,
            ids.size());
        for (size_t j = 0; j < ids.size(); j++) {
            where_.emplace(ids[j], std::make_pair(uint32_t(l), uint32_t(j)));
        }
    }
}

bool IdLocations::find(idx_t id, size_t* list_no, size_t* offset) const {
    const auto it = where_.find(id);
    if (it == where_.end()) {
        return false;
    }
    *list_no = it->second.first;
    *offset = it->second.second;
    return true;
}

std::shared_ptr<const IdLocations> IdLocationCache::get(
    const std::function<std::shared_ptr<const IdLocations>()>& build) const {
    std::shared_ptr<const IdLocations> current = std::atomic_load(&locations_);
    if (!current) {
        current = build();
        std::atomic_store(&locations_, current);
    }
    return current;
}

void IdLocationCache::reset() {
    std::atomic_store(&locations_, std::shared_ptr<const IdLocations>());
}

} // namespace faiss_gmm
