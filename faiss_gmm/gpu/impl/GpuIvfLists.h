/**
 * Device storage of the inverted lists of GpuIndexIVFGMM: per list, one
 * device allocation holding the ids (int64), codes (kernels/ivf_codes.h:
 * flat floats, SQfp16 or SQ8 bytes) and spill records (int32) of its
 * entries, grown geometrically, plus device arrays of the list pointers
 * and lengths that the search kernels read (kernels::IvfListsView).
 * Internal to faiss_gmm's GPU code.
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <kernels/ivf_lists.h>
#include <kernels/ivf_search.h>

namespace faiss_gmm {
namespace gpu {

/**
 * The inverted lists of one GPU index. Entry j of list l: id, code_size
 * bytes of code and record_width int32 (the other lists holding the same
 * vector, -1 padded), exactly as IndexIVFGMM's invlists / spill records.
 * Every mutating call leaves the device pointer / length arrays up to date.
 */
class GpuIvfLists {
   public:
    /**
     * @param d      dimension
     * @param kind   what an entry stores (its code size follows)
     * @param nlist  number of lists
     * @param stream stream of every copy and kernel (must outlive this)
     */
    GpuIvfLists(
        int d, kernels::IvfCodeKind kind, size_t nlist, cudaStream_t stream);
    ~GpuIvfLists();
    GpuIvfLists(const GpuIvfLists&) = delete;
    GpuIvfLists& operator=(const GpuIvfLists&) = delete;

    /// dimension
    int d() const {
        return d_;
    }
    /// number of lists
    size_t nlist() const {
        return lengths_.size();
    }
    /// bytes of one entry's code
    size_t code_size() const {
        return code_size_;
    }
    /// int32 spill records per entry
    int record_width() const {
        return record_width_;
    }

    /// Set the device arrays of the codec (its kind must be the lists'):
    /// what view() hands the scan. The arrays must outlive their use.
    void set_codec(const kernels::IvfCodec& codec);
    /// entries of list l
    size_t length(size_t l) const;
    /// entries of all lists
    size_t total_entries() const {
        return total_entries_;
    }
    /// list lengths, host copy
    const std::vector<int64_t>& lengths() const {
        return lengths_;
    }
    /// device bytes held by the lists (capacity, pointer arrays included)
    size_t device_bytes() const;

    /// Empty every list (memory freed) and set the record width.
    void reset(int record_width);

    /// Widen the spill records to `width` (>= record_width()); existing
    /// entries are padded with -1.
    void widen_records(int width);

    /**
     * Append a batch of entries. Their codes: host codes (n_entries x
     * code_size() bytes, SQ codes the host encoded) or, when null, the
     * float vectors on the device (source, rows x d; Float32 lists only).
     * Host arrays, n_entries values each: source_row (row of source), list,
     * id; records: n_entries x record_width() (may be null when the width
     * is 0). Entries of the same list are appended in the order given.
     */
    void append_batch(
        const float* source_device,
        int64_t n_entries,
        const int64_t* source_row,
        const int32_t* list,
        const int64_t* id,
        const int32_t* records,
        const uint8_t* codes = nullptr);

    /**
     * Replace list l by n host entries (codes n x code_size(), ids, records
     * n x record_width()). update_arrays false defers the upload of the
     * pointer arrays (for many set_list calls in a row): call
     * update_device_arrays() before the lists are read again.
     */
    void set_list(
        size_t l,
        size_t n,
        const uint8_t* codes,
        const idx_t* ids,
        const int32_t* records,
        bool update_arrays = true);

    /// Upload the pointer and length arrays (after deferred set_list calls).
    void update_device_arrays();

    /// ids of list l (host copy)
    std::vector<idx_t> list_ids(size_t l) const;
    /// codes of list l, length x code_size() bytes (host copy)
    std::vector<uint8_t> list_codes(size_t l) const;
    /// records of list l, length x record_width() (host copy)
    std::vector<int32_t> list_records(size_t l) const;
    /// copy the code of entry `offset` of list l (code_size() bytes) to
    /// host memory out
    void copy_code(size_t l, size_t offset, uint8_t* out) const;

    /// The view the search kernels read (device pointers).
    kernels::IvfListsView view() const;

   private:
    /// Where the parts of list l's allocation start for a capacity.
    struct Layout {
        size_t ids = 0, codes = 0, records = 0, total = 0;
    };
    Layout layout(size_t capacity, int width) const;
    /// Grow list l to hold at least `capacity` entries, keeping contents.
    /// The old buffer goes to *retired when given (the caller synchronises
    /// the stream before freeing it), else the copies are waited for here.
    void
    grow(size_t l, size_t capacity, std::vector<DeviceAllocation>* retired);
    /// Upload the pointer and length arrays after a change.
    void refresh_device_arrays();

    int d_;
    kernels::IvfCodec codec_;
    size_t code_size_;
    int record_width_ = 0;
    cudaStream_t stream_;
    size_t total_entries_ = 0;
    std::vector<int64_t> lengths_;
    std::vector<size_t> capacities_;
    std::vector<DeviceAllocation> storage_;
    /// 3 x nlist pointers (codes, ids, records) then nlist int32 lengths
    DeviceAllocation device_arrays_;
};

} // namespace gpu
} // namespace faiss_gmm
