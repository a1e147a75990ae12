#include <datasets/vector_io.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace datasets {

namespace {

/// Dimensions above this are taken as a corrupt header, not a real vector.
constexpr int64_t kMaxDimension = 1 << 20;

/// Rows are read in blocks of about this many bytes.
constexpr int64_t kReadBlockBytes = 32 << 20;

enum class ElementType { Float32, UInt8, Int8, Int32 };

struct Format {
    ElementType type;
    bool texmex; ///< per-row dimension header; else one (n, d) header
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Format format_of(const std::string& path) {
    if (ends_with(path, ".fvecs")) {
        return {ElementType::Float32, true};
    } else if (ends_with(path, ".bvecs")) {
        return {ElementType::UInt8, true};
    } else if (ends_with(path, ".ivecs")) {
        return {ElementType::Int32, true};
    } else if (ends_with(path, ".fbin")) {
        return {ElementType::Float32, false};
    } else if (ends_with(path, ".u8bin")) {
        return {ElementType::UInt8, false};
    } else if (ends_with(path, ".i8bin")) {
        return {ElementType::Int8, false};
    } else if (ends_with(path, ".ibin")) {
        return {ElementType::Int32, false};
    }
    FAISS_THROW_FMT(
        "%s: unknown vector file extension (expected .fvecs .bvecs "
        ".ivecs .fbin .u8bin .i8bin .ibin)",
        path.c_str());
}

int64_t element_size(ElementType t) {
    return t == ElementType::Float32 || t == ElementType::Int32 ? 4 : 1;
}

const char* dtype_name(ElementType t) {
    switch (t) {
    case ElementType::Float32:
        return "float32";
    case ElementType::UInt8:
        return "uint8";
    case ElementType::Int8:
        return "int8";
    case ElementType::Int32:
        return "int32";
    }
    return "?";
}

/// An open file descriptor, closed on destruction.
class InputFile {
   public:
    explicit InputFile(const std::string& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        FAISS_THROW_IF_NOT_FMT(
            fd_ >= 0,
            "%s: cannot open for reading: %s",
            path.c_str(),
            std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0) {
            int err = errno;
            ::close(fd_);
            FAISS_THROW_FMT(
                "%s: cannot stat: %s", path.c_str(), std::strerror(err));
        }
        size_ = st.st_size;
    }
    ~InputFile() {
        ::close(fd_);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    int64_t size() const {
        return size_;
    }
    const std::string& path() const {
        return path_;
    }

    /// Reads exactly bytes bytes at offset; throws on a short read.
    void read_at(void* buffer, int64_t bytes, int64_t offset) const {
        char* out = static_cast<char*>(buffer);
        int64_t done = 0;
        while (done < bytes) {
            ssize_t got = ::pread(fd_, out + done, bytes - done, offset + done);
            if (got < 0 && errno == EINTR) {
                continue;
            }
            FAISS_THROW_IF_NOT_FMT(
                got > 0,
                "%s: truncated file: cannot read %lld bytes at byte offset "
                "%lld (file has %lld bytes)%s%s",
                path_.c_str(),
                (long long)(bytes - done),
                (long long)(offset + done),
                (long long)size_,
                got < 0 ? ": " : "",
                got < 0 ? std::strerror(errno) : "");
            done += got;
        }
    }

   private:
    std::string path_;
    int fd_ = -1;
    int64_t size_ = 0;
};

/// Random access to the rows of one vector file.
class VectorFileReader {
   public:
    explicit VectorFileReader(const std::string& path)
        : file_(path), format_(format_of(path)) {
        const int64_t esize = element_size(format_.type);
        info_.dtype = dtype_name(format_.type);
        info_.layout = format_.texmex ? "texmex" : "bin";
        info_.file_bytes = file_.size();
        if (format_.texmex) {
            if (file_.size() == 0) {
                return; // an empty file holds zero rows
            }
            FAISS_THROW_IF_NOT_FMT(
                file_.size() >= 4,
                "%s: truncated file: %lld bytes, too short for the "
                "dimension header at byte offset 0",
                path.c_str(),
                (long long)file_.size());
            int32_t d;
            file_.read_at(&d, 4, 0);
            check_dimension(d, 0);
            info_.d = d;
            row_bytes_ = 4 + d * esize;
            FAISS_THROW_IF_NOT_FMT(
                file_.size() % row_bytes_ == 0,
                "%s: truncated file or inconsistent dimensions: size %lld "
                "is not a multiple of the row size %lld (dimension %d); "
                "the last complete row ends at byte offset %lld",
                path.c_str(),
                (long long)file_.size(),
                (long long)row_bytes_,
                d,
                (long long)(file_.size() / row_bytes_ * row_bytes_));
            info_.n = file_.size() / row_bytes_;
            data_offset_ = 0;
        } else {
            FAISS_THROW_IF_NOT_FMT(
                file_.size() >= 8,
                "%s: truncated file: %lld bytes, too short for the 8-byte "
                "header at byte offset 0",
                path.c_str(),
                (long long)file_.size());
            uint32_t header[2];
            file_.read_at(header, 8, 0);
            check_dimension(header[1], 4);
            info_.n = header[0];
            info_.d = header[1];
            row_bytes_ = info_.d * esize;
            data_offset_ = 8;
            const int64_t expected = 8 + info_.n * row_bytes_;
            FAISS_THROW_IF_NOT_FMT(
                file_.size() >= expected,
                "%s: truncated file: the header at byte offset 0 says %lld "
                "rows of dimension %d (%lld bytes) but the file has %lld "
                "bytes; data ends at byte offset %lld",
                path.c_str(),
                (long long)info_.n,
                info_.d,
                (long long)expected,
                (long long)file_.size(),
                (long long)file_.size());
            FAISS_THROW_IF_NOT_FMT(
                file_.size() == expected,
                "%s: size mismatch: the header at byte offset 0 says %lld "
                "rows of dimension %d, which end at byte offset %lld, but "
                "the file has %lld bytes",
                path.c_str(),
                (long long)info_.n,
                info_.d,
                (long long)expected,
                (long long)file_.size());
        }
    }

    const VectorFileInfo& info() const {
        return info_;
    }
    ElementType type() const {
        return format_.type;
    }

    /// Clips (first_row, max_rows) to the file; returns the row count.
    int64_t clip(int64_t first_row, int64_t max_rows) const {
        FAISS_THROW_IF_NOT_FMT(
            first_row >= 0 && first_row <= info_.n,
            "%s: first_row %lld out of range (file has %lld rows)",
            file_.path().c_str(),
            (long long)first_row,
            (long long)info_.n);
        int64_t available = info_.n - first_row;
        return max_rows < 0 ? available : std::min(max_rows, available);
    }

    /// Rows per read block for this file.
    int64_t block_rows() const {
        return std::max<int64_t>(1, kReadBlockBytes / row_bytes_);
    }

    /// Reads rows [first, first + n) converted to T into out (n * d values).
    template <typename T>
    void read_rows(int64_t first, int64_t n, T* out) const {
        const int d = info_.d;
        const int64_t esize = element_size(format_.type);
        std::vector<char> buffer;
        for (int64_t i0 = 0; i0 < n; i0 += block_rows()) {
            const int64_t rows = std::min(block_rows(), n - i0);
            const int64_t offset = data_offset_ + (first + i0) * row_bytes_;
            buffer.resize(rows * row_bytes_);
            file_.read_at(buffer.data(), buffer.size(), offset);
            for (int64_t r = 0; r < rows; r++) {
                const char* src = buffer.data() + r * row_bytes_;
                if (format_.texmex) {
                    int32_t row_d;
                    std::memcpy(&row_d, src, 4);
                    FAISS_THROW_IF_NOT_FMT(
                        row_d == d,
                        "%s: inconsistent dimensions: row %lld has "
                        "dimension header %d at byte offset %lld, "
                        "expected %d (from the first row)",
                        file_.path().c_str(),
                        (long long)(first + i0 + r),
                        row_d,
                        (long long)(offset + r * row_bytes_),
                        d);
                    src += 4;
                }
                convert_row(src, out + (i0 + r) * d, d, esize);
            }
        }
    }

   private:
    void check_dimension(int64_t d, int64_t offset) const {
        FAISS_THROW_IF_NOT_FMT(
            d > 0 && d <= kMaxDimension,
            "%s: bad dimension header %lld at byte offset %lld (must be "
            "in 1..%lld)",
            file_.path().c_str(),
            (long long)d,
            (long long)offset,
            (long long)kMaxDimension);
    }

    template <typename T>
    void convert_row(const char* src, T* dst, int d, int64_t esize) const {
        switch (format_.type) {
        case ElementType::Float32:
            copy_as<float>(src, dst, d, esize);
            break;
        case ElementType::UInt8:
            copy_as<uint8_t>(src, dst, d, esize);
            break;
        case ElementType::Int8:
            copy_as<int8_t>(src, dst, d, esize);
            break;
        case ElementType::Int32:
            copy_as<int32_t>(src, dst, d, esize);
            break;
        }
    }

    template <typename S, typename T>
    static void copy_as(const char* src, T* dst, int d, int64_t esize) {
        if (std::is_same<S, T>::value) {
            std::memcpy(dst, src, d * esize);
            return;
        }
        for (int j = 0; j < d; j++) {
            S v;
            std::memcpy(&v, src + j * sizeof(S), sizeof(S));
            dst[j] = static_cast<T>(v);
        }
    }

    InputFile file_;
    Format format_;
    VectorFileInfo info_;
    int64_t row_bytes_ = 0;
    int64_t data_offset_ = 0;
};

/// A FILE* opened for writing, closed (and checked) explicitly.
class OutputFile {
   public:
    explicit OutputFile(const std::string& path) : path_(path) {
        f_ = std::fopen(path.c_str(), "wb");
        FAISS_THROW_IF_NOT_FMT(
            f_,
            "%s: cannot open for writing: %s",
            path.c_str(),
            std::strerror(errno));
    }
    ~OutputFile() {
        if (f_) {
            std::fclose(f_);
        }
    }
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    void write(const void* data, int64_t bytes) {
        if (bytes == 0) {
            return;
        }
        FAISS_THROW_IF_NOT_FMT(
            std::fwrite(data, 1, bytes, f_) == size_t(bytes),
            "%s: write of %lld bytes failed: %s",
            path_.c_str(),
            (long long)bytes,
            std::strerror(errno));
    }
    void close() {
        int rc = std::fclose(f_);
        f_ = nullptr;
        FAISS_THROW_IF_NOT_FMT(
            rc == 0,
            "%s: close failed: %s",
            path_.c_str(),
            std::strerror(errno));
    }

   private:
    std::string path_;
    FILE* f_ = nullptr;
};

void check_shape(const std::string& path, int64_t n, int d, bool bin) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 0 && d > 0 && d <= kMaxDimension,
        "%s: cannot write %lld rows of dimension %d",
        path.c_str(),
        (long long)n,
        d);
    if (bin) {
        FAISS_THROW_IF_NOT_FMT(
            n <= int64_t(std::numeric_limits<uint32_t>::max()),
            "%s: %lld rows do not fit the uint32 row count of the header",
            path.c_str(),
            (long long)n);
    }
}

template <typename T>
void write_texmex(const std::string& path, const T* x, int64_t n, int d) {
    check_shape(path, n, d, false);
    OutputFile out(path);
    const int32_t dim = d;
    for (int64_t i = 0; i < n; i++) {
        out.write(&dim, 4);
        out.write(x + i * d, int64_t(d) * sizeof(T));
    }
    out.close();
}

template <typename T>
void write_bin(const std::string& path, const T* x, int64_t n, int d) {
    check_shape(path, n, d, true);
    OutputFile out(path);
    const uint32_t header[2] = {uint32_t(n), uint32_t(d)};
    out.write(header, 8);
    out.write(x, n * d * int64_t(sizeof(T)));
    out.close();
}

/// Converts floats to an integer type, throwing on non-integers or values
/// out of range.
template <typename T>
std::vector<T> to_integers(const std::string& path, const FloatMatrix& x) {
    std::vector<T> out(x.data.size());
    for (size_t i = 0; i < x.data.size(); i++) {
        const float v = x.data[i];
        FAISS_THROW_IF_NOT_FMT(
            v == std::floor(v) && v >= float(std::numeric_limits<T>::min()) &&
                v <= float(std::numeric_limits<T>::max()),
            "%s: value %g at row %lld column %lld is not representable "
            "in the file's integer type",
            path.c_str(),
            v,
            (long long)(i / x.d),
            (long long)(i % x.d));
        out[i] = static_cast<T>(v);
    }
    return out;
}

void check_matrix(const std::string& path, int64_t n, int d, size_t size) {
    FAISS_THROW_IF_NOT_FMT(
        size_t(n) * size_t(d) == size,
        "%s: matrix of %lld x %d holds %zu values",
        path.c_str(),
        (long long)n,
        d,
        size);
}

} // namespace

VectorFileInfo probe_vector_file(const std::string& path) {
    return VectorFileReader(path).info();
}

FloatMatrix
read_vectors(const std::string& path, int64_t first_row, int64_t max_rows) {
    VectorFileReader reader(path);
    FloatMatrix m;
    m.n = reader.clip(first_row, max_rows);
    m.d = reader.info().d;
    m.data.resize(m.n * m.d);
    reader.read_rows(first_row, m.n, m.data.data());
    return m;
}

IntMatrix
read_ids(const std::string& path, int64_t first_row, int64_t max_rows) {
    VectorFileReader reader(path);
    FAISS_THROW_IF_NOT_FMT(
        reader.type() == ElementType::Int32,
        "%s: read_ids needs an int32 file (.ivecs or .ibin), this one "
        "holds %s",
        path.c_str(),
        reader.info().dtype.c_str());
    IntMatrix m;
    m.n = reader.clip(first_row, max_rows);
    m.d = reader.info().d;
    m.data.resize(m.n * m.d);
    reader.read_rows(first_row, m.n, m.data.data());
    return m;
}

VectorFileInfo for_each_chunk(
    const std::string& path,
    int64_t chunk_rows,
    const std::function<void(const float*, int64_t, int64_t)>& fn,
    int64_t first_row,
    int64_t max_rows) {
    FAISS_THROW_IF_NOT_FMT(
        chunk_rows > 0,
        "for_each_chunk: chunk_rows %lld must be positive",
        (long long)chunk_rows);
    VectorFileReader reader(path);
    const int64_t n = reader.clip(first_row, max_rows);
    const int d = reader.info().d;
    std::vector<float> chunk;
    for (int64_t i0 = 0; i0 < n; i0 += chunk_rows) {
        const int64_t rows = std::min(chunk_rows, n - i0);
        chunk.resize(rows * d);
        reader.read_rows(first_row + i0, rows, chunk.data());
        fn(chunk.data(), rows, first_row + i0);
    }
    return reader.info();
}

void write_fvecs(const std::string& path, const float* x, int64_t n, int d) {
    write_texmex(path, x, n, d);
}
void write_bvecs(const std::string& path, const uint8_t* x, int64_t n, int d) {
    write_texmex(path, x, n, d);
}
void write_ivecs(const std::string& path, const int32_t* x, int64_t n, int d) {
    write_texmex(path, x, n, d);
}
void write_fbin(const std::string& path, const float* x, int64_t n, int d) {
    write_bin(path, x, n, d);
}
void write_u8bin(const std::string& path, const uint8_t* x, int64_t n, int d) {
    write_bin(path, x, n, d);
}
void write_i8bin(const std::string& path, const int8_t* x, int64_t n, int d) {
    write_bin(path, x, n, d);
}
void write_ibin(const std::string& path, const int32_t* x, int64_t n, int d) {
    write_bin(path, x, n, d);
}

void write_vectors(const std::string& path, const FloatMatrix& x) {
    check_matrix(path, x.n, x.d, x.data.size());
    const Format format = format_of(path);
    switch (format.type) {
    case ElementType::Float32:
        (format.texmex ? write_fvecs
                       : write_fbin)(path, x.data.data(), x.n, x.d);
        return;
    case ElementType::UInt8: {
        std::vector<uint8_t> v = to_integers<uint8_t>(path, x);
        (format.texmex ? write_bvecs : write_u8bin)(path, v.data(), x.n, x.d);
        return;
    }
    case ElementType::Int8: {
        std::vector<int8_t> v = to_integers<int8_t>(path, x);
        write_i8bin(path, v.data(), x.n, x.d);
        return;
    }
    case ElementType::Int32: {
        std::vector<int32_t> v = to_integers<int32_t>(path, x);
        (format.texmex ? write_ivecs : write_ibin)(path, v.data(), x.n, x.d);
        return;
    }
    }
}

void write_ids(const std::string& path, const IntMatrix& x) {
    check_matrix(path, x.n, x.d, x.data.size());
    const Format format = format_of(path);
    FAISS_THROW_IF_NOT_FMT(
        format.type == ElementType::Int32,
        "%s: write_ids writes .ivecs or .ibin files",
        path.c_str());
    (format.texmex ? write_ivecs : write_ibin)(path, x.data.data(), x.n, x.d);
}

GroundTruth read_groundtruth_bin(const std::string& path) {
    InputFile file(path);
    FAISS_THROW_IF_NOT_FMT(
        file.size() >= 8,
        "%s: truncated file: %lld bytes, too short for the 8-byte "
        "ground-truth header at byte offset 0",
        path.c_str(),
        (long long)file.size());
    uint32_t header[2];
    file.read_at(header, 8, 0);
    FAISS_THROW_IF_NOT_FMT(
        header[1] > 0 && header[1] <= kMaxDimension,
        "%s: bad k %u in the ground-truth header at byte offset 4",
        path.c_str(),
        header[1]);
    GroundTruth gt;
    gt.nq = header[0];
    gt.k = header[1];
    const int64_t entries = gt.nq * gt.k;
    const int64_t with_distances = 8 + entries * 8;
    const int64_t ids_only = 8 + entries * 4;
    FAISS_THROW_IF_NOT_FMT(
        file.size() == with_distances || file.size() == ids_only,
        "%s: size mismatch: the header at byte offset 0 says nq=%lld, "
        "k=%d, so ids end at byte offset %lld and distances at %lld, but "
        "the file has %lld bytes",
        path.c_str(),
        (long long)gt.nq,
        gt.k,
        (long long)ids_only,
        (long long)with_distances,
        (long long)file.size());
    gt.ids.resize(entries);
    file.read_at(gt.ids.data(), entries * 4, 8);
    if (file.size() == with_distances) {
        gt.distances.resize(entries);
        file.read_at(gt.distances.data(), entries * 4, ids_only);
    }
    return gt;
}

void write_groundtruth_bin(const std::string& path, const GroundTruth& gt) {
    const int64_t entries = gt.nq * gt.k;
    FAISS_THROW_IF_NOT_FMT(
        gt.nq >= 0 && gt.k > 0 && int64_t(gt.ids.size()) == entries &&
            int64_t(gt.distances.size()) == entries,
        "%s: ground truth nq=%lld k=%d needs %lld ids and distances, has "
        "%zu and %zu",
        path.c_str(),
        (long long)gt.nq,
        gt.k,
        (long long)entries,
        gt.ids.size(),
        gt.distances.size());
    check_shape(path, gt.nq, gt.k, true);
    OutputFile out(path);
    const uint32_t header[2] = {uint32_t(gt.nq), uint32_t(gt.k)};
    out.write(header, 8);
    out.write(gt.ids.data(), entries * 4);
    out.write(gt.distances.data(), entries * 4);
    out.close();
}

GroundTruth read_groundtruth_texmex(
    const std::string& ids_path, const std::string& distances_path) {
    IntMatrix ids = read_ids(ids_path);
    GroundTruth gt;
    gt.nq = ids.n;
    gt.k = ids.d;
    gt.ids = std::move(ids.data);
    if (!distances_path.empty()) {
        FloatMatrix dis = read_vectors(distances_path);
        FAISS_THROW_IF_NOT_FMT(
            dis.n == gt.nq && dis.d == gt.k,
            "%s: distances are %lld x %d but the ids in %s are %lld x %d",
            distances_path.c_str(),
            (long long)dis.n,
            dis.d,
            ids_path.c_str(),
            (long long)gt.nq,
            gt.k);
        gt.distances = std::move(dis.data);
    }
    return gt;
}

void write_groundtruth_texmex(
    const std::string& ids_path,
    const std::string& distances_path,
    const GroundTruth& gt) {
    FAISS_THROW_IF_NOT_FMT(
        int64_t(gt.ids.size()) == gt.nq * gt.k,
        "%s: ground truth nq=%lld k=%d holds %zu ids",
        ids_path.c_str(),
        (long long)gt.nq,
        gt.k,
        gt.ids.size());
    write_ivecs(ids_path, gt.ids.data(), gt.nq, gt.k);
    if (!distances_path.empty() && !gt.distances.empty()) {
        FAISS_THROW_IF_NOT_FMT(
            gt.distances.size() == gt.ids.size(),
            "%s: %zu distances for %zu ids",
            distances_path.c_str(),
            gt.distances.size(),
            gt.ids.size());
        write_fvecs(distances_path, gt.distances.data(), gt.nq, gt.k);
    }
}

GroundTruth read_groundtruth(const std::string& path) {
    if (ends_with(path, ".ivecs")) {
        return read_groundtruth_texmex(path);
    } else if (ends_with(path, ".ibin")) {
        IntMatrix ids = read_ids(path);
        GroundTruth gt;
        gt.nq = ids.n;
        gt.k = ids.d;
        gt.ids = std::move(ids.data);
        return gt;
    }
    return read_groundtruth_bin(path);
}

GroundTruth truncate_groundtruth(const GroundTruth& gt, int k) {
    FAISS_THROW_IF_NOT_FMT(
        k > 0 && k <= gt.k,
        "truncate_groundtruth: k=%d must be in 1..%d",
        k,
        gt.k);
    GroundTruth out;
    out.nq = gt.nq;
    out.k = k;
    out.ids.resize(gt.nq * k);
    if (!gt.distances.empty()) {
        out.distances.resize(gt.nq * k);
    }
    for (int64_t q = 0; q < gt.nq; q++) {
        std::copy_n(gt.ids.data() + q * gt.k, k, out.ids.data() + q * k);
        if (!gt.distances.empty()) {
            std::copy_n(
                gt.distances.data() + q * gt.k,
                k,
                out.distances.data() + q * k);
        }
    }
    return out;
}

FloatMatrix slice_rows(const FloatMatrix& x, int64_t first_row, int64_t n) {
    FAISS_THROW_IF_NOT_FMT(
        first_row >= 0 && first_row <= x.n,
        "slice_rows: first_row %lld out of range 0..%lld",
        (long long)first_row,
        (long long)x.n);
    FloatMatrix out;
    out.d = x.d;
    out.n = n < 0 ? x.n - first_row : std::min(n, x.n - first_row);
    out.data.assign(
        x.data.begin() + first_row * x.d,
        x.data.begin() + (first_row + out.n) * x.d);
    return out;
}

} // namespace datasets
} // namespace faiss_gmm
