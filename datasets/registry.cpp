#include <datasets/registry.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

#include <datasets/groundtruth.h>
#include <datasets/hdf5_io.h>
#include <datasets/synthetic.h>
#include <datasets/tsv.h>

namespace faiss_gmm {
namespace datasets {

namespace {

namespace fs = std::filesystem;

/// datasets/registry.tsv, embedded by CMake.
const char* const kRegistryTsv =
#include "registry_tsv.inc"
    ;

/// Neighbours per query of computed ground truth.
constexpr int kGroundTruthK = 100;

int64_t parse_int(const std::string& s, int line_number) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    FAISS_THROW_IF_NOT_FMT(
        !s.empty() && *end == 0,
        "registry.tsv line %d: \"%s\" is not an integer",
        line_number,
        s.c_str());
    return v;
}

std::vector<DatasetInfo> parse_registry() {
    std::vector<DatasetInfo> entries;
    for (const TsvLine& record : parse_tsv(kRegistryTsv)) {
        const int line_number = record.number;
        std::vector<std::string> f = record.fields;
        for (std::string& field : f) {
            if (field == "-") {
                field.clear(); // "-" marks an empty field
            }
        }
        if (f[0] == "dataset") {
            FAISS_THROW_IF_NOT_FMT(
                f.size() == 7,
                "registry.tsv line %d: a dataset line has 7 fields, this "
                "one %zu",
                line_number,
                f.size());
            DatasetInfo info;
            info.name = f[1];
            info.format = f[2];
            info.n_base = parse_int(f[3], line_number);
            info.n_query = parse_int(f[4], line_number);
            info.d = parse_int(f[5], line_number);
            info.description = f[6];
            entries.push_back(info);
        } else if (f[0] == "file") {
            FAISS_THROW_IF_NOT_FMT(
                f.size() >= 7 && f.size() <= 8 && !entries.empty() &&
                    entries.back().name == f[1],
                "registry.tsv line %d: a file line has 8 fields and "
                "follows its dataset line",
                line_number);
            DatasetFile file;
            file.role = f[2];
            file.url = f[3];
            file.local_name = f[4];
            file.bytes = parse_int(f[5], line_number);
            file.sha256 = f[6];
            file.byte_range = f.size() == 8 ? f[7] : "";
            entries.back().files.push_back(file);
        } else {
            FAISS_THROW_FMT(
                "registry.tsv line %d: unknown line kind \"%s\"",
                line_number,
                f[0].c_str());
        }
    }
    return entries;
}

std::string known_names() {
    std::string names = "synthetic";
    for (const DatasetInfo& info : dataset_registry()) {
        names += ", " + info.name;
    }
    return names;
}

const DatasetInfo* lookup(const std::string& name) {
    for (const DatasetInfo& info : dataset_registry()) {
        if (info.name == name) {
            return &info;
        }
    }
    return nullptr;
}

/// The files of one data set on disk; empty paths are absent files.
struct DatasetPaths {
    std::string base, query, learn, groundtruth, groundtruth_distances;
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

/// Whether a file stem names the role: "base", "sift_base", "base.10M".
bool stem_has_role(const std::string& stem, const std::string& role) {
    return stem == role || ends_with(stem, "_" + role) ||
           starts_with(stem, role + ".");
}

/// Finds base/query/learn/groundtruth files in a folder by name.
DatasetPaths scan_directory(const std::string& dir) {
    static const std::vector<std::string> vector_ext = {
        ".fvecs", ".bvecs", ".fbin", ".u8bin", ".i8bin"};
    static const std::vector<std::string> id_ext = {".ivecs", ".ibin", ".bin"};
    std::map<std::string, std::vector<std::string>> found;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
        if (!entry.is_regular_file()) {
            continue;
        }
        const std::string name = entry.path().filename().string();
        const std::string path = entry.path().string();
        for (const std::string& ext : vector_ext) {
            if (!ends_with(name, ext)) {
                continue;
            }
            const std::string stem = name.substr(0, name.size() - ext.size());
            for (const char* role : {"base", "query", "learn"}) {
                if (stem_has_role(stem, role)) {
                    found[role].push_back(path);
                }
            }
            if (ext == ".fvecs" && stem_has_role(stem, "groundtruth_dist")) {
                found["groundtruth_dist"].push_back(path);
            }
        }
        for (const std::string& ext : id_ext) {
            if (!ends_with(name, ext)) {
                continue;
            }
            const std::string stem = name.substr(0, name.size() - ext.size());
            if (stem_has_role(stem, "groundtruth")) {
                found["groundtruth"].push_back(path);
            }
        }
    }
    auto pick = [&](const char* role, bool required) -> std::string {
        std::vector<std::string>& paths = found[role];
        if (paths.empty()) {
            FAISS_THROW_IF_NOT_FMT(
                !required,
                "%s: no %s file (expected %s.fvecs|bvecs|fbin|u8bin|i8bin "
                "or <name>_%s.<ext>)",
                dir.c_str(),
                role,
                role,
                role);
            return "";
        }
        if (paths.size() > 1) {
            std::sort(paths.begin(), paths.end());
            std::string list;
            for (const std::string& p : paths) {
                list += " " + p;
            }
            FAISS_THROW_FMT(
                "%s: several %s files, cannot choose:%s",
                dir.c_str(),
                role,
                list.c_str());
        }
        return paths[0];
    };
    DatasetPaths paths;
    paths.base = pick("base", true);
    paths.query = pick("query", true);
    paths.learn = pick("learn", false);
    paths.groundtruth = pick("groundtruth", false);
    paths.groundtruth_distances = pick("groundtruth_dist", false);
    return paths;
}

std::string cache_dir_for(const std::string& data_dir) {
    const char* env = std::getenv("FAISS_GMM_CACHE_DIR");
    return env && *env ? std::string(env) : data_dir;
}

/// Ground truth for (base, query): the given one when it matches, else
/// computed and cached.
GroundTruth groundtruth_for(
    const FloatMatrix& base,
    const FloatMatrix& query,
    const std::string& cache_dir,
    bool verbose) {
    const int k = int(std::min<int64_t>(kGroundTruthK, base.n));
    char name[128];
    std::snprintf(
        name,
        sizeof(name),
        "gt_cache.base%lld.query%lld.k%d.bin",
        (long long)base.n,
        (long long)query.n,
        k);
    return load_or_compute_groundtruth(
        base, query, k, (fs::path(cache_dir) / name).string(), verbose);
}

void check_groundtruth(
    const GroundTruth& gt,
    const std::string& source,
    int64_t n_query_file,
    int64_t n_base) {
    FAISS_THROW_IF_NOT_FMT(
        gt.nq == n_query_file,
        "%s: ground truth has %lld rows but the query file has %lld",
        source.c_str(),
        (long long)gt.nq,
        (long long)n_query_file);
    for (size_t i = 0; i < gt.ids.size(); i++) {
        FAISS_THROW_IF_NOT_FMT(
            gt.ids[i] >= 0 && gt.ids[i] < n_base,
            "%s: ground-truth id %d (query %zu) is outside the base "
            "(%lld rows)",
            source.c_str(),
            gt.ids[i],
            i / gt.k,
            (long long)n_base);
    }
}

GroundTruth first_queries(const GroundTruth& gt, int64_t nq) {
    GroundTruth out = gt;
    out.nq = std::min(nq, gt.nq);
    out.ids.resize(out.nq * gt.k);
    if (!out.distances.empty()) {
        out.distances.resize(out.nq * gt.k);
    }
    return out;
}

Dataset load_files(
    const std::string& name,
    const std::string& description,
    const DatasetPaths& paths,
    const std::string& data_dir,
    int64_t max_base,
    int64_t max_query,
    bool verbose) {
    const auto start = std::chrono::steady_clock::now();
    const VectorFileInfo base_info = probe_vector_file(paths.base);
    const VectorFileInfo query_info = probe_vector_file(paths.query);
    FAISS_THROW_IF_NOT_FMT(
        base_info.d == query_info.d,
        "%s has dimension %d but %s has %d",
        paths.base.c_str(),
        base_info.d,
        paths.query.c_str(),
        query_info.d);
    Dataset ds;
    ds.name = name;
    ds.base = read_vectors(paths.base, 0, max_base);
    ds.query = read_vectors(paths.query, 0, max_query);
    if (!paths.learn.empty()) {
        ds.train = read_vectors(paths.learn);
        FAISS_THROW_IF_NOT_FMT(
            ds.train.d == ds.base.d,
            "%s has dimension %d but %s has %d",
            paths.learn.c_str(),
            ds.train.d,
            paths.base.c_str(),
            ds.base.d);
    }
    const bool base_truncated = ds.base.n < base_info.n;
    std::string gt_source;
    if (!paths.groundtruth.empty() && !base_truncated) {
        GroundTruth gt =
            ends_with(paths.groundtruth, ".ivecs")
                ? read_groundtruth_texmex(
                      paths.groundtruth, paths.groundtruth_distances)
                : read_groundtruth(paths.groundtruth);
        check_groundtruth(gt, paths.groundtruth, query_info.n, ds.base.n);
        ds.groundtruth = first_queries(gt, ds.query.n);
        gt_source = paths.groundtruth;
    } else {
        ds.groundtruth = groundtruth_for(
            ds.base, ds.query, cache_dir_for(data_dir), verbose);
        gt_source = "computed";
    }
    std::ostringstream desc;
    desc << description << (description.empty() ? "" : "; ") << "base "
         << paths.base << " (" << ds.base.n << " of " << base_info.n << " x "
         << base_info.d << " " << base_info.dtype << "), query " << paths.query
         << " (" << ds.query.n << "), train "
         << (paths.learn.empty() ? "= base" : paths.learn)
         << ", ground truth top-" << ds.groundtruth.k << " " << gt_source;
    ds.description = desc.str();
    if (verbose) {
        std::printf(
            "loaded %s in %.2f s: %s\n",
            name.c_str(),
            std::chrono::duration<double>(
                std::chrono::steady_clock::now() - start)
                .count(),
            ds.description.c_str());
    }
    return ds;
}

void normalize_rows(FloatMatrix& x) {
    for (int64_t i = 0; i < x.n; i++) {
        float* row = x.row(i);
        double norm = 0;
        for (int j = 0; j < x.d; j++) {
            norm += double(row[j]) * row[j];
        }
        if (norm > 0) {
            const double inv = 1.0 / std::sqrt(norm);
            for (int j = 0; j < x.d; j++) {
                row[j] = float(row[j] * inv);
            }
        }
    }
}

Dataset load_hdf5(
    const DatasetInfo& info,
    const std::string& path,
    const std::string& data_dir,
    int64_t max_base,
    int64_t max_query,
    bool verbose) {
    const auto start = std::chrono::steady_clock::now();
    AnnBenchmarksData data = read_ann_benchmarks_hdf5(path);
    GroundTruth gt;
    gt.nq = data.neighbors.n;
    gt.k = data.neighbors.d;
    gt.ids = std::move(data.neighbors.data);
    gt.distances = std::move(data.distances.data);
    if (data.distance == "angular") {
        // Cosine order = L2 order of unit vectors; |a-b|^2 = 2 (1 - cos).
        normalize_rows(data.train);
        normalize_rows(data.test);
        for (float& v : gt.distances) {
            v = 2 * v;
        }
    } else if (data.distance == "euclidean") {
        for (float& v : gt.distances) {
            v = v * v; // ann-benchmarks stores L2, we use squared L2
        }
    } else {
        FAISS_THROW_FMT(
            "%s: distance \"%s\" is not supported (euclidean or angular)",
            path.c_str(),
            data.distance.c_str());
    }
    Dataset ds;
    ds.name = info.name;
    const int64_t n_base_file = data.train.n;
    const int64_t n_query_file = data.test.n;
    ds.base = max_base >= 0 && max_base < data.train.n
                  ? slice_rows(data.train, 0, max_base)
                  : std::move(data.train);
    ds.query = max_query >= 0 && max_query < data.test.n
                   ? slice_rows(data.test, 0, max_query)
                   : std::move(data.test);
    if (ds.base.n < n_base_file) {
        ds.groundtruth = groundtruth_for(
            ds.base, ds.query, cache_dir_for(data_dir), verbose);
    } else {
        check_groundtruth(gt, path, n_query_file, ds.base.n);
        ds.groundtruth = first_queries(gt, ds.query.n);
    }
    ds.description = info.description + "; " + path;
    if (verbose) {
        std::printf(
            "loaded %s in %.2f s: %lld base, %lld query, d=%d\n",
            info.name.c_str(),
            std::chrono::duration<double>(
                std::chrono::steady_clock::now() - start)
                .count(),
            (long long)ds.base.n,
            (long long)ds.query.n,
            ds.base.d);
    }
    return ds;
}

Dataset load_registered(
    const DatasetInfo& info,
    const std::string& data_root,
    int64_t max_base,
    int64_t max_query,
    bool verbose) {
    const std::string dir = (fs::path(data_root) / info.name).string();
    DatasetPaths paths;
    std::string hdf5_path;
    for (const DatasetFile& file : info.files) {
        if (file.role == "archive") {
            continue; // its members are listed as their own files
        }
        const std::string path = (fs::path(dir) / file.local_name).string();
        const bool built = starts_with(file.url, "build:");
        FAISS_THROW_IF_NOT_FMT(
            fs::exists(path) || file.role == "learn" || !built,
            "dataset %s: missing file %s; it is made on this machine: "
            "run `%s --data-root %s` (bash scripts/eval.sh does)",
            info.name.c_str(),
            path.c_str(),
            file.url.substr(6).c_str(),
            data_root.c_str());
        FAISS_THROW_IF_NOT_FMT(
            fs::exists(path) || file.role == "learn",
            "dataset %s: missing file %s; run `datasets/download.sh %s "
            "%s` first",
            info.name.c_str(),
            path.c_str(),
            info.name.c_str(),
            data_root.c_str());
        if (file.role == "base") {
            paths.base = path;
        } else if (file.role == "query") {
            paths.query = path;
        } else if (file.role == "learn") {
            paths.learn = fs::exists(path) ? path : "";
        } else if (file.role == "groundtruth") {
            paths.groundtruth = path;
        } else if (file.role == "hdf5") {
            hdf5_path = path;
        }
    }
    if (info.format == "hdf5") {
        return load_hdf5(info, hdf5_path, dir, max_base, max_query, verbose);
    }
    return load_files(
        info.name, info.description, paths, dir, max_base, max_query, verbose);
}

} // namespace

const std::vector<DatasetInfo>& dataset_registry() {
    static const std::vector<DatasetInfo> registry = parse_registry();
    return registry;
}

const DatasetInfo& find_dataset(const std::string& name) {
    const DatasetInfo* info = lookup(name);
    FAISS_THROW_IF_NOT_FMT(
        info,
        "unknown dataset \"%s\"; known: %s",
        name.c_str(),
        known_names().c_str());
    return *info;
}

std::string default_data_root() {
    const char* env = std::getenv("FAISS_GMM_DATA_ROOT");
    if (env && *env) {
        return env;
    }
    const char* home = std::getenv("HOME");
    return (fs::path(home && *home ? home : ".") / ".cache" / "faiss_gmm" /
            "datasets")
        .string();
}

Dataset load_dataset(
    const std::string& name_or_dir,
    const std::string& data_root,
    int64_t max_base,
    int64_t max_query,
    bool verbose) {
    FAISS_THROW_IF_NOT_FMT(
        max_base == -1 || max_base > 0,
        "load_dataset: max_base=%lld must be -1 (all) or positive",
        (long long)max_base);
    FAISS_THROW_IF_NOT_FMT(
        max_query == -1 || max_query > 0,
        "load_dataset: max_query=%lld must be -1 (all) or positive",
        (long long)max_query);
    if (name_or_dir == "synthetic") {
        SyntheticParameters params;
        if (max_base > 0) {
            params.n_base = max_base;
        }
        if (max_query > 0) {
            params.n_query = max_query;
        }
        params.groundtruth_k =
            int(std::min<int64_t>(params.groundtruth_k, params.n_base));
        params.verbose = verbose;
        return make_synthetic(params);
    }
    if (const DatasetInfo* info = lookup(name_or_dir)) {
        return load_registered(*info, data_root, max_base, max_query, verbose);
    }
    FAISS_THROW_IF_NOT_FMT(
        fs::is_directory(name_or_dir),
        "load_dataset: \"%s\" is neither a known dataset (%s) nor a "
        "directory with base/query files",
        name_or_dir.c_str(),
        known_names().c_str());
    // "dir/" normalises to a path with an empty file name.
    const fs::path dir = fs::path(name_or_dir).lexically_normal();
    std::string name = dir.filename().string();
    if (name.empty()) {
        name = dir.parent_path().filename().string();
    }
    return load_files(
        name.empty() ? name_or_dir : name,
        "",
        scan_directory(name_or_dir),
        name_or_dir,
        max_base,
        max_query,
        verbose);
}

} // namespace datasets
} // namespace faiss_gmm
