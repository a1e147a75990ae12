#include <datasets/hdf5_io.h>

#include <hdf5.h>

#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace datasets {

namespace {

/// HDF5 prints its own error stack on stderr by default; our exceptions say
/// what went wrong, so the printing is turned off once per process.
void silence_hdf5_errors() {
    static std::once_flag once;
    std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

/// Owns an HDF5 identifier and closes it with the matching function.
class Handle {
   public:
    using Closer = herr_t (*)(hid_t);
    Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
    ~Handle() {
        if (id_ >= 0) {
            closer_(id_);
        }
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    hid_t get() const {
        return id_;
    }
    bool valid() const {
        return id_ >= 0;
    }

   private:
    hid_t id_;
    Closer closer_;
};

/// Reads a rank-2 numeric dataset; fills n, d and converts to T through
/// HDF5's type conversion (mem_type).
template <typename T>
void read_matrix(
    hid_t file,
    const std::string& path,
    const char* key,
    bool want_float,
    hid_t mem_type,
    int64_t& n,
    int& d,
    std::vector<T>& data) {
    FAISS_THROW_IF_NOT_FMT(
        H5Lexists(file, key, H5P_DEFAULT) > 0,
        "%s: missing key \"%s\" (an ann-benchmarks file has train, test, "
        "neighbors and distances)",
        path.c_str(),
        key);
    Handle dataset(H5Dopen2(file, key, H5P_DEFAULT), H5Dclose);
    FAISS_THROW_IF_NOT_FMT(
        dataset.valid(), "%s: key \"%s\" is not a dataset", path.c_str(), key);
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    FAISS_THROW_IF_NOT_FMT(
        rank == 2,
        "%s: key \"%s\" has rank %d, expected a 2-d matrix",
        path.c_str(),
        key,
        rank);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    const H5T_class_t type_class = H5Tget_class(type.get());
    const bool ok_type =
        want_float ? (type_class == H5T_FLOAT || type_class == H5T_INTEGER)
                   : type_class == H5T_INTEGER;
    FAISS_THROW_IF_NOT_FMT(
        ok_type,
        "%s: key \"%s\" has HDF5 type class %d, expected %s",
        path.c_str(),
        key,
        int(type_class),
        want_float ? "a numeric type" : "an integer type");
    FAISS_THROW_IF_NOT_FMT(
        dims[1] > 0 && dims[1] <= (1u << 20),
        "%s: key \"%s\" has %llu columns",
        path.c_str(),
        key,
        (unsigned long long)dims[1]);
    // absurd sizes (a corrupt file) fail here, naming file and key, rather
    // than in the allocator
    constexpr hsize_t kMaxValues = hsize_t(1) << 40;
    FAISS_THROW_IF_NOT_FMT(
        dims[0] <= kMaxValues / dims[1],
        "%s: key \"%s\" claims %llu x %llu values (more than 2^40)",
        path.c_str(),
        key,
        (unsigned long long)dims[0],
        (unsigned long long)dims[1]);
    n = dims[0];
    d = dims[1];
    try {
        data.resize(size_t(dims[0]) * dims[1]);
    } catch (const std::bad_alloc&) {
        FAISS_THROW_FMT(
            "%s: key \"%s\" has %llu x %llu values, more than this "
            "machine can allocate (%.1f GB)",
            path.c_str(),
            key,
            (unsigned long long)dims[0],
            (unsigned long long)dims[1],
            double(dims[0]) * dims[1] * sizeof(T) / 1e9);
    }
    if (!data.empty()) {
        FAISS_THROW_IF_NOT_FMT(
            H5Dread(
                dataset.get(),
                mem_type,
                H5S_ALL,
                H5S_ALL,
                H5P_DEFAULT,
                data.data()) >= 0,
            "%s: reading key \"%s\" (%llu x %llu) failed",
            path.c_str(),
            key,
            (unsigned long long)dims[0],
            (unsigned long long)dims[1]);
    }
}

std::string
read_string_attribute(hid_t file, const std::string& path, const char* name) {
    FAISS_THROW_IF_NOT_FMT(
        H5Aexists(file, name) > 0,
        "%s: missing attribute \"%s\"",
        path.c_str(),
        name);
    Handle attr(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
    Handle type(H5Aget_type(attr.get()), H5Tclose);
    FAISS_THROW_IF_NOT_FMT(
        H5Tget_class(type.get()) == H5T_STRING,
        "%s: attribute \"%s\" is not a string",
        path.c_str(),
        name);
    if (H5Tis_variable_str(type.get()) > 0) {
        Handle mem_type(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(mem_type.get(), H5T_VARIABLE);
        H5Tset_cset(mem_type.get(), H5Tget_cset(type.get()));
        char* value = nullptr;
        FAISS_THROW_IF_NOT_FMT(
            H5Aread(attr.get(), mem_type.get(), &value) >= 0 && value,
            "%s: cannot read attribute \"%s\"",
            path.c_str(),
            name);
        std::string result(value);
        H5free_memory(value);
        return result;
    }
    const size_t size = H5Tget_size(type.get());
    std::vector<char> buffer(size + 1, 0);
    FAISS_THROW_IF_NOT_FMT(
        H5Aread(attr.get(), type.get(), buffer.data()) >= 0,
        "%s: cannot read attribute \"%s\"",
        path.c_str(),
        name);
    return std::string(buffer.data(), strnlen(buffer.data(), size));
}

void write_matrix(
    hid_t file,
    const std::string& path,
    const char* key,
    hid_t file_type,
    hid_t mem_type,
    int64_t n,
    int d,
    const void* data,
    size_t size) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 0 && d > 0 && size == size_t(n) * size_t(d),
        "%s: key \"%s\": %lld x %d matrix holds %zu values",
        path.c_str(),
        key,
        (long long)n,
        d,
        size);
    hsize_t dims[2] = {hsize_t(n), hsize_t(d)};
    Handle space(H5Screate_simple(2, dims, nullptr), H5Sclose);
    Handle dataset(
        H5Dcreate2(
            file,
            key,
            file_type,
            space.get(),
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT),
        H5Dclose);
    FAISS_THROW_IF_NOT_FMT(
        dataset.valid(), "%s: cannot create dataset \"%s\"", path.c_str(), key);
    if (size > 0) {
        FAISS_THROW_IF_NOT_FMT(
            H5Dwrite(
                dataset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >=
                0,
            "%s: writing dataset \"%s\" failed",
            path.c_str(),
            key);
    }
}

} // namespace

AnnBenchmarksData read_ann_benchmarks_hdf5(const std::string& path) {
    silence_hdf5_errors();
    FAISS_THROW_IF_NOT_FMT(
        H5Fis_hdf5(path.c_str()) > 0,
        "%s: not an HDF5 file (or cannot be opened)",
        path.c_str());
    Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    FAISS_THROW_IF_NOT_FMT(
        file.valid(), "%s: cannot open HDF5 file", path.c_str());
    AnnBenchmarksData data;
    read_matrix(
        file.get(),
        path,
        "train",
        true,
        H5T_NATIVE_FLOAT,
        data.train.n,
        data.train.d,
        data.train.data);
    read_matrix(
        file.get(),
        path,
        "test",
        true,
        H5T_NATIVE_FLOAT,
        data.test.n,
        data.test.d,
        data.test.data);
    FAISS_THROW_IF_NOT_FMT(
        data.train.d == data.test.d,
        "%s: key \"test\" has dimension %d but \"train\" has %d",
        path.c_str(),
        data.test.d,
        data.train.d);
    read_matrix(
        file.get(),
        path,
        "neighbors",
        false,
        H5T_NATIVE_INT32,
        data.neighbors.n,
        data.neighbors.d,
        data.neighbors.data);
    FAISS_THROW_IF_NOT_FMT(
        data.neighbors.n == data.test.n,
        "%s: key \"neighbors\" has %lld rows but \"test\" has %lld",
        path.c_str(),
        (long long)data.neighbors.n,
        (long long)data.test.n);
    for (size_t i = 0; i < data.neighbors.data.size(); i++) {
        const int32_t id = data.neighbors.data[i];
        FAISS_THROW_IF_NOT_FMT(
            id >= -1 && id < data.train.n,
            "%s: key \"neighbors\" holds id %d at row %zu, outside "
            "\"train\" (%lld rows)",
            path.c_str(),
            id,
            i / data.neighbors.d,
            (long long)data.train.n);
    }
    if (H5Lexists(file.get(), "distances", H5P_DEFAULT) > 0) {
        read_matrix(
            file.get(),
            path,
            "distances",
            true,
            H5T_NATIVE_FLOAT,
            data.distances.n,
            data.distances.d,
            data.distances.data);
        FAISS_THROW_IF_NOT_FMT(
            data.distances.n == data.neighbors.n &&
                data.distances.d == data.neighbors.d,
            "%s: key \"distances\" is %lld x %d but \"neighbors\" is "
            "%lld x %d",
            path.c_str(),
            (long long)data.distances.n,
            data.distances.d,
            (long long)data.neighbors.n,
            data.neighbors.d);
    }
    data.distance = read_string_attribute(file.get(), path, "distance");
    return data;
}

void write_ann_benchmarks_hdf5(
    const std::string& path, const AnnBenchmarksData& data) {
    silence_hdf5_errors();
    Handle file(
        H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
        H5Fclose);
    FAISS_THROW_IF_NOT_FMT(
        file.valid(), "%s: cannot create HDF5 file", path.c_str());
    write_matrix(
        file.get(),
        path,
        "train",
        H5T_IEEE_F32LE,
        H5T_NATIVE_FLOAT,
        data.train.n,
        data.train.d,
        data.train.data.data(),
        data.train.data.size());
    write_matrix(
        file.get(),
        path,
        "test",
        H5T_IEEE_F32LE,
        H5T_NATIVE_FLOAT,
        data.test.n,
        data.test.d,
        data.test.data.data(),
        data.test.data.size());
    write_matrix(
        file.get(),
        path,
        "neighbors",
        H5T_STD_I32LE,
        H5T_NATIVE_INT32,
        data.neighbors.n,
        data.neighbors.d,
        data.neighbors.data.data(),
        data.neighbors.data.size());
    if (!data.distances.empty()) {
        write_matrix(
            file.get(),
            path,
            "distances",
            H5T_IEEE_F32LE,
            H5T_NATIVE_FLOAT,
            data.distances.n,
            data.distances.d,
            data.distances.data.data(),
            data.distances.data.size());
    }
    // A variable-length UTF-8 string, as h5py writes `attrs["distance"]`.
    Handle str_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(str_type.get(), H5T_VARIABLE);
    H5Tset_cset(str_type.get(), H5T_CSET_UTF8);
    Handle scalar(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attr(
        H5Acreate2(
            file.get(),
            "distance",
            str_type.get(),
            scalar.get(),
            H5P_DEFAULT,
            H5P_DEFAULT),
        H5Aclose);
    const char* value = data.distance.c_str();
    FAISS_THROW_IF_NOT_FMT(
        attr.valid() && H5Awrite(attr.get(), str_type.get(), &value) >= 0,
        "%s: cannot write attribute \"distance\"",
        path.c_str());
}

} // namespace datasets
} // namespace faiss_gmm
