#include <datasets/sift_dataset.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

#include <datasets/groundtruth.h>
#include <datasets/numpy_random.h>
#include <datasets/sha256.h>
#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// A JSON string literal.
std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(c));
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string fixed1(double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
}

/// Everything about one photo that the manifest records.
struct PhotoRecord {
    int width = 0, height = 0, proc_width = 0, proc_height = 0;
    int64_t descriptors = 0;
    int64_t in_query = 0, in_learn = 0, in_base = 0;
    std::string sha256;
};

/// Row i of the pooled descriptors.
inline const uint8_t* pooled_row(const std::vector<uint8_t>& rows, int64_t i) {
    return rows.data() + size_t(i) * kSiftDim;
}

/// Indices of the distinct rows in lexicographic byte order; for rows that
/// occur several times, the first occurrence.
std::vector<int64_t> distinct_sorted(const std::vector<uint8_t>& rows) {
    const int64_t n = int64_t(rows.size() / kSiftDim);
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; i++) {
        order[i] = i;
    }
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        const int c =
            std::memcmp(pooled_row(rows, a), pooled_row(rows, b), kSiftDim);
        return c < 0 || (c == 0 && a < b);
    });
    std::vector<int64_t> distinct;
    distinct.reserve(n);
    for (const int64_t i : order) {
        if (distinct.empty() || std::memcmp(
                                    pooled_row(rows, distinct.back()),
                                    pooled_row(rows, i),
                                    kSiftDim) != 0) {
            distinct.push_back(i);
        }
    }
    return distinct;
}

/// The rows ids[first, first + n) of the pooled descriptors, as bytes.
std::vector<uint8_t> gather(
    const std::vector<uint8_t>& rows,
    const std::vector<int64_t>& ids,
    int64_t first,
    int64_t n) {
    std::vector<uint8_t> out(size_t(n) * kSiftDim);
    for (int64_t i = 0; i < n; i++) {
        std::memcpy(
            out.data() + size_t(i) * kSiftDim,
            pooled_row(rows, ids[first + i]),
            kSiftDim);
    }
    return out;
}

FloatMatrix to_float(const std::vector<uint8_t>& bytes) {
    FloatMatrix m;
    m.d = kSiftDim;
    m.n = int64_t(bytes.size() / kSiftDim);
    m.data.assign(bytes.begin(), bytes.end());
    return m;
}

std::string
file_entry(const std::string& path, int64_t count, int dim, const char* dtype) {
    std::ostringstream o;
    o << "{\"count\": " << count << ", \"dim\": " << dim << ", \"dtype\": \""
      << dtype << "\", \"bytes\": " << fs::file_size(path)
      << ", \"sha256\": " << json_string(sha256_file(path)) << "}";
    return o.str();
}

double median(std::vector<int64_t> v) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? double(v[m]) : 0.5 * (double(v[m - 1]) + v[m]);
}

} // namespace

void SiftDatasetParameters::check() const {
    sift.check();
    FAISS_THROW_IF_NOT_FMT(
        n_query >= 1,
        "SiftDatasetParameters: n_query=%lld must be >= 1",
        (long long)n_query);
    FAISS_THROW_IF_NOT_FMT(
        n_learn >= 0,
        "SiftDatasetParameters: n_learn=%lld must be >= 0",
        (long long)n_learn);
    FAISS_THROW_IF_NOT_FMT(
        n_base == -1 || n_base >= 1,
        "SiftDatasetParameters: n_base=%lld must be -1 (all the rest) "
        "or >= 1",
        (long long)n_base);
    FAISS_THROW_IF_NOT_FMT(
        groundtruth_k >= 1,
        "SiftDatasetParameters: groundtruth_k=%d must be >= 1",
        groundtruth_k);
    FAISS_THROW_IF_NOT_MSG(
        !name.empty(), "SiftDatasetParameters: name is empty");
}

SiftDatasetSummary build_sift_dataset(
    const std::vector<SiftPhoto>& photos,
    const SiftDatasetParameters& params,
    const std::string& out_dir) {
    params.check();
    FAISS_THROW_IF_NOT_MSG(!photos.empty(), "build_sift_dataset: no photos");
    const auto start = Clock::now();
    const char* tag = params.name.c_str();

    // 1. Descriptors of every photo, pooled in photo order.
    std::vector<uint8_t> pooled;
    std::vector<int64_t> photo_end; // pooled rows up to and with photo i
    std::vector<PhotoRecord> records(photos.size());
    for (size_t i = 0; i < photos.size(); i++) {
        const SiftPhoto& photo = photos[i];
        ImageDescriptors d = extract_sift(photo.local_path, params.sift);
        PhotoRecord& r = records[i];
        r.width = d.width;
        r.height = d.height;
        r.proc_width = d.proc_width;
        r.proc_height = d.proc_height;
        r.descriptors = d.n;
        r.sha256 =
            photo.sha256.empty() ? sha256_file(photo.local_path) : photo.sha256;
        pooled.insert(pooled.end(), d.rows.begin(), d.rows.end());
        photo_end.push_back(int64_t(pooled.size() / kSiftDim));
        if (params.verbose) {
            std::printf(
                "%s: photo %zu/%zu %s (%dx%d): %lld descriptors, %lld in "
                "all, %.1f s\n",
                tag,
                i + 1,
                photos.size(),
                photo.name.empty() ? photo.local_path.c_str()
                                   : photo.name.c_str(),
                d.width,
                d.height,
                (long long)d.n,
                (long long)photo_end.back(),
                seconds_since(start));
            std::fflush(stdout);
        }
    }
    const int64_t n_extracted = photo_end.back();

    // 2. Distinct rows in byte order, 3. the seeded permutation and split.
    auto step = Clock::now();
    const std::vector<int64_t> distinct = distinct_sorted(pooled);
    const int64_t n_unique = int64_t(distinct.size());
    FAISS_THROW_IF_NOT_FMT(
        n_unique >= params.n_query + params.n_learn + 1,
        "build_sift_dataset: the %zu photos give %lld distinct "
        "descriptors, fewer than n_query + n_learn + 1 = %lld",
        photos.size(),
        (long long)n_unique,
        (long long)(params.n_query + params.n_learn + 1));
    const std::vector<int64_t> perm = numpy_permutation(params.seed, n_unique);
    std::vector<int64_t> ids(n_unique); // pooled row of permuted position
    for (int64_t i = 0; i < n_unique; i++) {
        ids[i] = distinct[perm[i]];
    }
    const int64_t rest = n_unique - params.n_query - params.n_learn;
    const int64_t n_base =
        params.n_base < 0 ? rest : std::min(params.n_base, rest);
    if (params.verbose) {
        std::printf(
            "%s: %lld descriptors, %lld distinct (%lld exact duplicates "
            "dropped); split %lld query, %lld learn, %lld base%s "
            "(seed %llu), %.1f s\n",
            tag,
            (long long)n_extracted,
            (long long)n_unique,
            (long long)(n_extracted - n_unique),
            (long long)params.n_query,
            (long long)params.n_learn,
            (long long)n_base,
            params.n_base > rest ? " (all there is)" : "",
            (unsigned long long)params.seed,
            seconds_since(step));
        std::fflush(stdout);
    }
    auto photo_of = [&](int64_t pooled_row_id) {
        return size_t(
            std::upper_bound(
                photo_end.begin(), photo_end.end(), pooled_row_id) -
            photo_end.begin());
    };
    for (int64_t i = 0; i < params.n_query + params.n_learn + n_base; i++) {
        PhotoRecord& r = records[photo_of(ids[i])];
        (i < params.n_query                    ? r.in_query
         : i < params.n_query + params.n_learn ? r.in_learn
                                               : r.in_base)++;
    }

    // 4. The vector files.
    fs::create_directories(out_dir);
    const std::string dir = fs::path(out_dir).string();
    auto out_path = [&](const char* name) {
        return (fs::path(dir) / name).string();
    };
    SiftDatasetSummary summary;
    const std::vector<uint8_t> query = gather(pooled, ids, 0, params.n_query);
    const std::vector<uint8_t> base =
        gather(pooled, ids, params.n_query + params.n_learn, n_base);
    write_bvecs(
        out_path("query.bvecs"), query.data(), params.n_query, kSiftDim);
    summary.files.push_back(out_path("query.bvecs"));
    if (params.n_learn > 0) {
        const std::vector<uint8_t> learn =
            gather(pooled, ids, params.n_query, params.n_learn);
        write_bvecs(
            out_path("learn.bvecs"), learn.data(), params.n_learn, kSiftDim);
        summary.files.push_back(out_path("learn.bvecs"));
    } else {
        fs::remove(out_path("learn.bvecs")); // one of an earlier build
    }
    write_bvecs(out_path("base.bvecs"), base.data(), n_base, kSiftDim);
    summary.files.push_back(out_path("base.bvecs"));

    // 5. Exact ground truth (ties by ascending base id).
    const int k = int(std::min<int64_t>(params.groundtruth_k, n_base));
    const GroundTruth gt =
        compute_groundtruth(to_float(base), to_float(query), k, params.verbose);
    write_groundtruth_texmex(
        out_path("groundtruth.ivecs"), out_path("groundtruth_dist.fvecs"), gt);
    summary.files.push_back(out_path("groundtruth.ivecs"));
    summary.files.push_back(out_path("groundtruth_dist.fvecs"));

    // 6. The manifest: no times, no absolute paths, so it is reproducible.
    std::ostringstream m;
    m << "{\n \"name\": " << json_string(params.name)
      << ",\n \"description\": " << json_string(params.description)
      << ",\n \"format\": {\"byte_order\": \"little-endian\", \"bvecs\": "
         "\"per vector: int32 dim (=128), then dim uint8 values\", \"ivecs\": "
         "\"per vector: int32 dim (=k), then k int32 values\", \"fvecs\": "
         "\"per vector: int32 dim (=k), then k float32 values\", \"notes\": "
         "\"base/query/learn are disjoint and hold no exact duplicate "
         "vectors; ids in groundtruth.ivecs are 0-based rows of "
         "base.bvecs\"},\n \"files\": {\n  \"query.bvecs\": "
      << file_entry(out_path("query.bvecs"), params.n_query, kSiftDim, "uint8");
    if (params.n_learn > 0) {
        m << ",\n  \"learn.bvecs\": "
          << file_entry(
                 out_path("learn.bvecs"), params.n_learn, kSiftDim, "uint8");
    }
    m << ",\n  \"base.bvecs\": "
      << file_entry(out_path("base.bvecs"), n_base, kSiftDim, "uint8")
      << ",\n  \"groundtruth.ivecs\": "
      << file_entry(out_path("groundtruth.ivecs"), gt.nq, k, "int32")
      << ",\n  \"groundtruth_dist.fvecs\": "
      << file_entry(out_path("groundtruth_dist.fvecs"), gt.nq, k, "float32")
      << "\n },\n";
    std::vector<int64_t> per_photo;
    for (const PhotoRecord& r : records) {
        per_photo.push_back(r.descriptors);
    }
    m << " \"counts\": {\"images\": " << photos.size()
      << ", \"descriptors_extracted\": " << n_extracted
      << ", \"exact_duplicates_removed\": " << n_extracted - n_unique
      << ", \"unique\": " << n_unique << ", \"query\": " << params.n_query
      << ", \"learn\": " << params.n_learn << ", \"base\": " << n_base
      << ", \"unused\": " << rest - n_base << "},\n";
    m << " \"descriptors_per_image\": {\"min\": "
      << *std::min_element(per_photo.begin(), per_photo.end())
      << ", \"median\": " << fixed1(median(per_photo))
      << ", \"max\": " << *std::max_element(per_photo.begin(), per_photo.end())
      << ", \"mean\": " << fixed1(double(n_extracted) / photos.size())
      << "},\n";
    const SiftParameters& s = params.sift;
    m << " \"sift\": {\"implementation\": \"OpenCV "
         "cv::SIFT::create(...)->detectAndCompute (DoG + SIFT), C++\", "
         "\"opencv_version\": "
      << json_string(opencv_version())
      << ", \"params\": {\"nfeatures\": " << s.nfeatures
      << ", \"nOctaveLayers\": " << s.n_octave_layers
      << ", \"contrastThreshold\": " << s.contrast_threshold
      << ", \"edgeThreshold\": " << s.edge_threshold
      << ", \"sigma\": " << s.sigma
      << "}, \"preprocessing\": \"cv::imread(IMREAD_GRAYSCALE); if "
         "max(w,h) > "
      << s.max_side
      << ", cv::resize with INTER_AREA so that max side = " << s.max_side
      << "; no upscaling\", \"descriptor_dtype\": \"float32 output is "
         "integer-valued 0..255; stored as uint8\"},\n";
    m << " \"split\": {\"seed\": " << params.seed
      << ", \"method\": \"distinct raw 128-byte rows in lexicographic byte "
         "order (numpy.unique), permuted by "
         "numpy.random.default_rng(seed).permutation; first query rows -> "
         "query, next learn rows -> learn, next base rows -> base, rest "
         "unused\"},\n";
    m << " \"groundtruth\": {\"k\": " << k
      << ", \"metric\": \"squared L2\", \"exact\": true, \"tie_break\": "
         "\"ascending base id\", \"method\": \"faiss_gmm "
         "datasets::compute_groundtruth (float candidates, double "
         "re-ranking, certified by an error bound)\"},\n";
    m << " \"sources\": [";
    size_t i = 0;
    bool first_source = true;
    while (i < photos.size()) {
        const SiftPhoto& head = photos[i];
        m << (first_source ? "\n  {" : ",\n  {")
          << "\"package\": " << json_string(head.package)
          << ", \"version\": " << json_string(head.version)
          << ", \"deb\": " << json_string(head.deb_file)
          << ", \"deb_sha256\": " << json_string(head.deb_sha256)
          << ", \"images\": [";
        first_source = false;
        bool first_image = true;
        for (; i < photos.size() && photos[i].package == head.package &&
               photos[i].version == head.version;
             i++) {
            const SiftPhoto& p = photos[i];
            const PhotoRecord& r = records[i];
            const std::string name =
                p.name.empty() ? fs::path(p.local_path).filename().string()
                               : p.name;
            m << (first_image ? "\n   {" : ",\n   {")
              << "\"path\": " << json_string(name)
              << ", \"sha256\": " << json_string(r.sha256)
              << ", \"width\": " << r.width << ", \"height\": " << r.height
              << ", \"proc_width\": " << r.proc_width
              << ", \"proc_height\": " << r.proc_height
              << ", \"descriptors\": " << r.descriptors
              << ", \"in_base\": " << r.in_base
              << ", \"in_query\": " << r.in_query
              << ", \"in_learn\": " << r.in_learn << "}";
            first_image = false;
        }
        m << "\n  ]}";
    }
    m << "\n ]\n}\n";
    const std::string manifest = out_path("manifest.json");
    std::ofstream out(manifest, std::ios::binary | std::ios::trunc);
    out << m.str();
    out.close();
    FAISS_THROW_IF_NOT_FMT(
        bool(out), "build_sift_dataset: cannot write %s", manifest.c_str());
    summary.files.push_back(manifest);

    summary.n_images = int64_t(photos.size());
    summary.n_extracted = n_extracted;
    summary.n_unique = n_unique;
    summary.n_query = params.n_query;
    summary.n_learn = params.n_learn;
    summary.n_base = n_base;
    summary.n_unused = rest - n_base;
    summary.groundtruth_k = k;
    if (params.verbose) {
        std::printf(
            "%s: wrote %zu files to %s in %.1f s\n",
            tag,
            summary.files.size(),
            dir.c_str(),
            seconds_since(start));
        std::fflush(stdout);
    }
    return summary;
}

} // namespace datasets
} // namespace faiss_gmm
