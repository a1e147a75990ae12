#include <faiss_gmm/gpu/impl/GpuIvfLists.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <limits>
#include <utility>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace gpu {

namespace {

/// Smallest capacity of a non-empty list (entries): avoids a reallocation
/// per entry for lists that start small.
constexpr size_t kMinListCapacity = 8;
/// Capacities are multiples of this, so that the codes after the ids start
/// 16-byte aligned (the scan's 16-byte loads); the records after the codes
/// are rounded up to 4 bytes.
constexpr size_t kCapacityQuantum = 4;

size_t round_up(size_t value, size_t quantum) {
    return (value + quantum - 1) / quantum * quantum;
}

} // namespace

GpuIvfLists::GpuIvfLists(
    int d, kernels::IvfCodeKind kind, size_t nlist, cudaStream_t stream)
    : d_(d),
      code_size_(size_t(kernels::ivf_code_size(kind, d))),
      stream_(stream),
      lengths_(nlist, 0),
      capacities_(nlist, 0),
      storage_(nlist) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GpuIvfLists: d=%d must be >= 1", d);
    FAISS_THROW_IF_NOT_FMT(
        nlist >= 1 && nlist <= size_t(std::numeric_limits<int32_t>::max()),
        "GpuIvfLists: nlist=%zu must be in [1, 2^31)",
        nlist);
    codec_.kind = kind;
    refresh_device_arrays();
}

GpuIvfLists::~GpuIvfLists() = default;

void GpuIvfLists::set_codec(const kernels::IvfCodec& codec) {
    FAISS_THROW_IF_NOT_FMT(
        codec.kind == codec_.kind,
        "GpuIvfLists: codec of kind %d for lists of kind %d",
        int(codec.kind),
        int(codec_.kind));
    codec_ = codec;
}

size_t GpuIvfLists::length(size_t l) const {
    FAISS_THROW_IF_NOT_FMT(
        l < nlist(), "GpuIvfLists: list %zu is not in [0, %zu)", l, nlist());
    return size_t(lengths_[l]);
}

size_t GpuIvfLists::device_bytes() const {
    size_t total = device_arrays_.bytes();
    for (const DeviceAllocation& a : storage_) {
        total += a.bytes();
    }
    return total;
}

GpuIvfLists::Layout GpuIvfLists::layout(size_t capacity, int width) const {
    Layout out;
    out.ids = 0;
    out.codes = capacity * sizeof(int64_t);
    out.records = out.codes + round_up(capacity * code_size_, 4);
    out.total = out.records + capacity * size_t(width) * sizeof(int32_t);
    return out;
}

void GpuIvfLists::reset(int record_width) {
    FAISS_THROW_IF_NOT_FMT(
        record_width >= 0,
        "GpuIvfLists: record width %d must be >= 0",
        record_width);
    for (size_t l = 0; l < nlist(); l++) {
        storage_[l].release();
        capacities_[l] = 0;
        lengths_[l] = 0;
    }
    total_entries_ = 0;
    record_width_ = record_width;
    refresh_device_arrays();
}

void GpuIvfLists::grow(
    size_t l, size_t capacity, std::vector<DeviceAllocation>* retired) {
    if (capacity <= capacities_[l]) {
        return;
    }
    capacity = round_up(
        std::max({capacity, 2 * capacities_[l], kMinListCapacity}),
        kCapacityQuantum);
    const Layout old_layout = layout(capacities_[l], record_width_);
    const Layout new_layout = layout(capacity, record_width_);
    DeviceAllocation grown;
    grown.reserve(new_layout.total, "an inverted list");
    const size_t n = size_t(lengths_[l]);
    if (n > 0) {
        char* dst = grown.as<char>();
        const char* src = storage_[l].as<char>();
        throw_on_cuda_error(
            cudaMemcpyAsync(
                dst + new_layout.ids,
                src + old_layout.ids,
                n * sizeof(int64_t),
                cudaMemcpyDeviceToDevice,
                stream_),
            "copying list ids into a larger list");
        throw_on_cuda_error(
            cudaMemcpyAsync(
                dst + new_layout.codes,
                src + old_layout.codes,
                n * code_size_,
                cudaMemcpyDeviceToDevice,
                stream_),
            "copying list codes into a larger list");
        if (record_width_ > 0) {
            throw_on_cuda_error(
                cudaMemcpyAsync(
                    dst + new_layout.records,
                    src + old_layout.records,
                    n * size_t(record_width_) * sizeof(int32_t),
                    cudaMemcpyDeviceToDevice,
                    stream_),
                "copying list records into a larger list");
        }
    }
    if (retired) {
        // freed by the caller once the stream has passed the copies
        retired->push_back(std::move(storage_[l]));
    } else if (n > 0) {
        throw_on_cuda_error(
            cudaStreamSynchronize(stream_), "growing an inverted list");
    }
    storage_[l] = std::move(grown);
    capacities_[l] = capacity;
}

void GpuIvfLists::widen_records(int width) {
    FAISS_THROW_IF_NOT_FMT(
        width >= record_width_,
        "GpuIvfLists: cannot narrow records from %d to %d",
        record_width_,
        width);
    if (width == record_width_) {
        return;
    }
    const int old_width = record_width_;
    for (size_t l = 0; l < nlist(); l++) {
        const size_t n = size_t(lengths_[l]);
        if (n == 0) {
            storage_[l].release();
            capacities_[l] = 0;
            continue;
        }
        std::vector<idx_t> ids = list_ids(l);
        std::vector<uint8_t> codes = list_codes(l);
        std::vector<int32_t> old_records = list_records(l);
        std::vector<int32_t> records(n * size_t(width), -1);
        for (size_t j = 0; j < n; j++) {
            std::copy_n(
                old_records.data() + j * old_width,
                old_width,
                records.data() + j * width);
        }
        record_width_ = width;
        set_list(l, n, codes.data(), ids.data(), records.data(), false);
        record_width_ = old_width;
    }
    record_width_ = width;
    refresh_device_arrays();
}

void GpuIvfLists::append_batch(
    const float* source_device,
    int64_t n_entries,
    const int64_t* source_row,
    const int32_t* list,
    const int64_t* id,
    const int32_t* records,
    const uint8_t* codes) {
    if (n_entries == 0) {
        return;
    }
    const size_t w = size_t(record_width_);
    FAISS_THROW_IF_NOT_MSG(
        w == 0 || records, "GpuIvfLists::append_batch: records missing");
    FAISS_THROW_IF_NOT_MSG(
        codes || codec_.kind == kernels::IvfCodeKind::Float32,
        "GpuIvfLists::append_batch: codes missing");
    std::vector<DeviceAllocation> retired;
    // slots in input order, so a list's entries keep the order given
    std::vector<int64_t> position(n_entries);
    std::vector<int64_t> new_length = lengths_;
    for (int64_t e = 0; e < n_entries; e++) {
        const int32_t l = list[e];
        FAISS_THROW_IF_NOT_FMT(
            l >= 0 && size_t(l) < nlist(),
            "GpuIvfLists::append_batch: list %d is not in [0, %zu)",
            l,
            nlist());
        position[e] = new_length[l]++;
    }
    for (size_t l = 0; l < nlist(); l++) {
        FAISS_THROW_IF_NOT_FMT(
            new_length[l] <= int64_t(std::numeric_limits<int32_t>::max()),
            "GpuIvfLists: list %zu would hold %" PRId64
            " entries, more than 2^31 - 1",
            l,
            new_length[l]);
        if (size_t(new_length[l]) > capacities_[l]) {
            grow(l, size_t(new_length[l]), &retired);
        }
    }
    throw_on_cuda_error(
        cudaStreamSynchronize(stream_), "growing the inverted lists");
    retired.clear();
    refresh_device_arrays();

    // one upload of the per-entry arrays: rows, positions, ids (int64),
    // lists (int32), records (int32), codes (bytes)
    const size_t n = size_t(n_entries);
    const size_t bytes_int64 = 3 * n * sizeof(int64_t);
    const size_t bytes_int32 = n * (1 + w) * sizeof(int32_t);
    const size_t bytes =
        bytes_int64 + bytes_int32 + (codes ? n * code_size_ : 0);
    DeviceAllocation staging;
    staging.reserve(bytes, "the entries of an add batch");
    int64_t* d_rows = staging.as<int64_t>();
    int64_t* d_positions = d_rows + n;
    int64_t* d_ids = d_positions + n;
    int32_t* d_lists = reinterpret_cast<int32_t*>(d_ids + n);
    int32_t* d_records = d_lists + n;
    uint8_t* d_codes = reinterpret_cast<uint8_t*>(d_records + n * w);
    const auto upload = [&](void* dst, const void* src, size_t size) {
        throw_on_cuda_error(
            cudaMemcpyAsync(dst, src, size, cudaMemcpyHostToDevice, stream_),
            "uploading the entries of an add batch");
    };
    upload(d_rows, source_row, n * sizeof(int64_t));
    upload(d_positions, position.data(), n * sizeof(int64_t));
    upload(d_ids, id, n * sizeof(int64_t));
    upload(d_lists, list, n * sizeof(int32_t));
    if (w > 0) {
        upload(d_records, records, n * w * sizeof(int32_t));
    }
    if (codes) {
        upload(d_codes, codes, n * code_size_);
    }

    kernels::IvfListsWriteView dst;
    dst.d = d_;
    dst.record_width = record_width_;
    dst.code_size = int(code_size_);
    uint8_t* const* pointers = device_arrays_.as<uint8_t*>();
    dst.codes = pointers;
    dst.ids = reinterpret_cast<int64_t* const*>(pointers + nlist());
    dst.records = reinterpret_cast<int32_t* const*>(pointers + 2 * nlist());
    kernels::IvfAppendBatch batch;
    batch.n_entries = n_entries;
    batch.codes = codes ? d_codes : nullptr;
    batch.source = source_device;
    batch.source_row = d_rows;
    batch.list = d_lists;
    batch.position = d_positions;
    batch.id = d_ids;
    batch.record = w > 0 ? d_records : nullptr;
    throw_on_cuda_error(
        kernels::ivf_lists_scatter(dst, batch, stream_),
        "launching the list append kernel");
    throw_on_cuda_error(
        cudaStreamSynchronize(stream_), "appending entries to the lists");
    total_entries_ += n;
    lengths_.swap(new_length);
    refresh_device_arrays();
}

void GpuIvfLists::set_list(
    size_t l,
    size_t n,
    const uint8_t* codes,
    const idx_t* ids,
    const int32_t* records,
    bool update_arrays) {
    FAISS_THROW_IF_NOT_FMT(
        l < nlist(), "GpuIvfLists: list %zu is not in [0, %zu)", l, nlist());
    FAISS_THROW_IF_NOT_FMT(
        n <= size_t(std::numeric_limits<int32_t>::max()),
        "GpuIvfLists: list %zu would hold %zu entries, more than 2^31 - 1",
        l,
        n);
    total_entries_ -= size_t(lengths_[l]);
    lengths_[l] = 0;
    if (n == 0) {
        storage_[l].release();
        capacities_[l] = 0;
        if (update_arrays) {
            refresh_device_arrays();
        }
        return;
    }
    if (n > capacities_[l] ||
        layout(capacities_[l], record_width_).total > storage_[l].bytes()) {
        storage_[l].release();
        capacities_[l] = 0;
        grow(l, n, nullptr);
    }
    const Layout lay = layout(capacities_[l], record_width_);
    char* base = storage_[l].as<char>();
    static_assert(sizeof(idx_t) == sizeof(int64_t), "ids are int64");
    throw_on_cuda_error(
        cudaMemcpyAsync(
            base + lay.ids,
            ids,
            n * sizeof(int64_t),
            cudaMemcpyHostToDevice,
            stream_),
        "uploading list ids");
    throw_on_cuda_error(
        cudaMemcpyAsync(
            base + lay.codes,
            codes,
            n * code_size_,
            cudaMemcpyHostToDevice,
            stream_),
        "uploading list codes");
    if (record_width_ > 0) {
        throw_on_cuda_error(
            cudaMemcpyAsync(
                base + lay.records,
                records,
                n * size_t(record_width_) * sizeof(int32_t),
                cudaMemcpyHostToDevice,
                stream_),
            "uploading list records");
    }
    throw_on_cuda_error(cudaStreamSynchronize(stream_), "uploading a list");
    lengths_[l] = int64_t(n);
    total_entries_ += n;
    if (update_arrays) {
        refresh_device_arrays();
    }
}

std::vector<idx_t> GpuIvfLists::list_ids(size_t l) const {
    const size_t n = length(l);
    std::vector<idx_t> out(n);
    if (n > 0) {
        throw_on_cuda_error(
            cudaMemcpy(
                out.data(),
                storage_[l].as<char>() + layout(capacities_[l], 0).ids,
                n * sizeof(int64_t),
                cudaMemcpyDeviceToHost),
            "downloading list ids");
    }
    return out;
}

std::vector<uint8_t> GpuIvfLists::list_codes(size_t l) const {
    const size_t n = length(l);
    std::vector<uint8_t> out(n * code_size_);
    if (n > 0) {
        throw_on_cuda_error(
            cudaMemcpy(
                out.data(),
                storage_[l].as<char>() + layout(capacities_[l], 0).codes,
                out.size(),
                cudaMemcpyDeviceToHost),
            "downloading list codes");
    }
    return out;
}

std::vector<int32_t> GpuIvfLists::list_records(size_t l) const {
    const size_t n = length(l);
    std::vector<int32_t> out(n * size_t(record_width_));
    if (!out.empty()) {
        throw_on_cuda_error(
            cudaMemcpy(
                out.data(),
                storage_[l].as<char>() +
                    layout(capacities_[l], record_width_).records,
                out.size() * sizeof(int32_t),
                cudaMemcpyDeviceToHost),
            "downloading list records");
    }
    return out;
}

void GpuIvfLists::copy_code(size_t l, size_t offset, uint8_t* out) const {
    FAISS_THROW_IF_NOT_FMT(
        offset < length(l),
        "GpuIvfLists: entry %zu of list %zu does not exist",
        offset,
        l);
    throw_on_cuda_error(
        cudaMemcpy(
            out,
            storage_[l].as<char>() + layout(capacities_[l], 0).codes +
                offset * code_size_,
            code_size_,
            cudaMemcpyDeviceToHost),
        "downloading a stored code");
}

void GpuIvfLists::update_device_arrays() {
    refresh_device_arrays();
}

void GpuIvfLists::refresh_device_arrays() {
    const size_t nl = nlist();
    std::vector<char> host(3 * nl * sizeof(void*) + nl * sizeof(int32_t));
    void** pointers = reinterpret_cast<void**>(host.data());
    int32_t* lengths =
        reinterpret_cast<int32_t*>(host.data() + 3 * nl * sizeof(void*));
    for (size_t l = 0; l < nl; l++) {
        char* base = storage_[l].as<char>();
        const Layout lay = layout(capacities_[l], record_width_);
        pointers[l] = base ? base + lay.codes : nullptr;
        pointers[nl + l] = base ? base + lay.ids : nullptr;
        pointers[2 * nl + l] = base ? base + lay.records : nullptr;
        lengths[l] = int32_t(lengths_[l]);
    }
    device_arrays_.reserve(host.size(), "the list pointer arrays");
    throw_on_cuda_error(
        cudaMemcpyAsync(
            device_arrays_.as<char>(),
            host.data(),
            host.size(),
            cudaMemcpyHostToDevice,
            stream_),
        "uploading the list pointer arrays");
    // host is a local: the copy must be complete before it goes away
    throw_on_cuda_error(
        cudaStreamSynchronize(stream_), "uploading the list pointer arrays");
}

kernels::IvfListsView GpuIvfLists::view() const {
    kernels::IvfListsView v;
    const size_t nl = nlist();
    v.d = d_;
    v.nlist = int(nl);
    v.record_width = record_width_;
    v.codec = codec_;
    const char* base = device_arrays_.as<const char>();
    v.codes = reinterpret_cast<const uint8_t* const*>(base);
    v.ids = reinterpret_cast<const int64_t* const*>(base + nl * sizeof(void*));
    v.records =
        reinterpret_cast<const int32_t* const*>(base + 2 * nl * sizeof(void*));
    v.lengths = reinterpret_cast<const int32_t*>(base + 3 * nl * sizeof(void*));
    for (int64_t length : lengths_) {
        v.max_length = std::max(v.max_length, int32_t(length));
    }
    return v;
}

} // namespace gpu
} // namespace faiss_gmm
