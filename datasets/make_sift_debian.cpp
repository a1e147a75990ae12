/**
 * make_sift_debian: makes the sift-debian data set on this machine (SIFT
 * descriptors of the photographs inside the Debian packages that
 * datasets/sift_debian_recipe.tsv lists, TEXMEX layout, exact ground truth)
 * or, with --images, the same kind of set from a folder of photos. The
 * second run with the same settings finds the files and returns at once.
 * See --help.
 */

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <datasets/debian_photos.h>
#include <datasets/registry.h>
#include <datasets/sha256.h>
#include <datasets/sift_dataset.h>

namespace {

namespace fs = std::filesystem;
using namespace faiss_gmm::datasets;

const char* kUsage =
    "usage: make_sift_debian [options]\n"
    "\n"
    "Makes a SIFT data set in the TEXMEX layout (query.bvecs, base.bvecs,\n"
    "learn.bvecs when --learn > 0, groundtruth.ivecs, "
    "groundtruth_dist.fvecs,\n"
    "manifest.json) from the photos of the Debian packages listed in\n"
    "datasets/sift_debian_recipe.tsv (fetched with `apt-get download` and\n"
    "unpacked with `dpkg-deb -x`; no root needed), the recipe of\n"
    "sift-debian-a. Same packages and options -> byte-identical files. A\n"
    "second run with the same options returns at once.\n"
    "\n"
    "  --data-root DIR     root of the data sets (default: "
    "$FAISS_GMM_DATA_ROOT,\n"
    "                      else ~/.cache/faiss_gmm/datasets); the set goes "
    "to\n"
    "                      DIR/sift-debian, the photos to "
    "DIR/sift-debian/photos\n"
    "  --out DIR           write the set to DIR instead\n"
    "  --base N            base vectors (default 300000; 'all': every "
    "distinct\n"
    "                      descriptor left after query and learn)\n"
    "  --query N           queries (default 10000)\n"
    "  --learn N           learn vectors (default 0: train on base)\n"
    "  --seed N            seed of the split (default 12345)\n"
    "  --contrast-threshold F\n"
    "                      cv::SIFT contrastThreshold (default 0.01, the "
    "recipe's;\n"
    "                      OpenCV's own default is 0.04)\n"
    "  --images DIR        describe every .jpg/.jpeg/.png/.webp/.tif/.bmp "
    "file in\n"
    "                      DIR (sorted by name) instead of the packages; "
    "needs --out\n"
    "  --any-version       take apt's candidate version when the recipe's "
    "is not\n"
    "                      in the archives (the set then differs from "
    "the recipe's)\n"
    "  --force             rebuild even when the set is there\n"
    "  --quiet             no progress lines\n"
    "  -h, --help          this text\n";

struct Options {
    std::string data_root, out, images;
    SiftDatasetParameters params;
    bool any_version = false, force = false;
};

int64_t parse_count(const std::string& option, const std::string& value) {
    char* end = nullptr;
    const long long v = std::strtoll(value.c_str(), &end, 10);
    FAISS_THROW_IF_NOT_FMT(
        !value.empty() && *end == 0 && v >= 0,
        "%s: \"%s\" is not a count",
        option.c_str(),
        value.c_str());
    return v;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            FAISS_THROW_IF_NOT_FMT(i + 1 < argc, "%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (a == "--data-root") {
            o.data_root = value();
        } else if (a == "--out") {
            o.out = value();
        } else if (a == "--images") {
            o.images = value();
        } else if (a == "--base") {
            const std::string v = value();
            o.params.n_base = v == "all" ? -1 : parse_count(a, v);
        } else if (a == "--query") {
            o.params.n_query = parse_count(a, value());
        } else if (a == "--learn") {
            o.params.n_learn = parse_count(a, value());
        } else if (a == "--seed") {
            o.params.seed = uint64_t(parse_count(a, value()));
        } else if (a == "--contrast-threshold") {
            const std::string v = value();
            char* end = nullptr;
            o.params.sift.contrast_threshold = std::strtod(v.c_str(), &end);
            FAISS_THROW_IF_NOT_FMT(
                !v.empty() && *end == 0,
                "--contrast-threshold: \"%s\" is not a number",
                v.c_str());
        } else if (a == "--any-version") {
            o.any_version = true;
        } else if (a == "--force") {
            o.force = true;
        } else if (a == "--quiet") {
            o.params.verbose = false;
        } else {
            FAISS_THROW_FMT("unknown option %s (see --help)", a.c_str());
        }
    }
    FAISS_THROW_IF_NOT_MSG(
        o.images.empty() || !o.out.empty(), "--images needs --out DIR");
    if (o.data_root.empty()) {
        o.data_root = default_data_root();
    }
    if (o.out.empty()) {
        o.out = (fs::path(o.data_root) / "sift-debian").string();
    }
    if (!o.images.empty()) {
        fs::path out = fs::path(o.out).lexically_normal();
        if (out.filename().empty()) {
            out = out.parent_path(); // "dir/"
        }
        o.params.name = out.filename().string();
        o.params.description = "SIFT descriptors of the photos of a folder";
    }
    o.params.check();
    return o;
}

/// Photos of a folder, sorted by file name.
std::vector<SiftPhoto> folder_photos(const std::string& dir) {
    std::vector<SiftPhoto> photos;
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
        std::string ext = e.path().extension().string();
        for (char& c : ext) {
            c = char(std::tolower(static_cast<unsigned char>(c)));
        }
        if (e.is_regular_file() &&
            (ext == ".jpg" || ext == ".jpeg" || ext == ".png" ||
             ext == ".webp" || ext == ".tif" || ext == ".tiff" ||
             ext == ".bmp")) {
            SiftPhoto p;
            p.local_path = e.path().string();
            p.name = e.path().filename().string();
            photos.push_back(p);
        }
    }
    std::sort(photos.begin(), photos.end(), [](const auto& a, const auto& b) {
        return a.name < b.name;
    });
    FAISS_THROW_IF_NOT_FMT(
        !photos.empty(), "--images %s: no photo files", dir.c_str());
    return photos;
}

/// Everything the files depend on: sources, settings, OpenCV version.
std::string build_key(
    const Options& o, const std::vector<SiftPhoto>& folder, bool from_recipe) {
    std::ostringstream k;
    const SiftDatasetParameters& p = o.params;
    const SiftParameters& s = p.sift;
    k << "make_sift_debian 1\nopencv " << opencv_version() << "\nsift "
      << s.nfeatures << " " << s.n_octave_layers << " " << s.contrast_threshold
      << " " << s.edge_threshold << " " << s.sigma << " " << s.max_side
      << "\nsplit " << p.seed << " " << p.n_query << " " << p.n_learn << " "
      << p.n_base << " " << p.groundtruth_k << "\n";
    if (from_recipe) {
        k << "recipe " << sift_debian_recipe().sha256 << " any-version "
          << o.any_version << "\n";
    }
    for (const SiftPhoto& photo : folder) {
        k << "photo " << photo.name << " " << sha256_file(photo.local_path)
          << "\n";
    }
    return sha256_hex(k.str());
}

std::string read_first_line(const fs::path& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

int run(const Options& o) {
    const auto start = std::chrono::steady_clock::now();
    const bool from_recipe = o.images.empty();
    std::vector<SiftPhoto> photos;
    if (!from_recipe) {
        photos = folder_photos(o.images);
    }
    const std::string key = build_key(o, photos, from_recipe);
    const fs::path key_path = fs::path(o.out) / "build.key";
    bool done =
        !o.force && fs::exists(key_path) && read_first_line(key_path) == key;
    for (const char* name :
         {"query.bvecs", "base.bvecs", "groundtruth.ivecs", "manifest.json"}) {
        done = done && fs::exists(fs::path(o.out) / name);
    }
    if (done) {
        if (o.params.verbose) {
            std::printf(
                "%s: up to date in %s (--force rebuilds)\n",
                o.params.name.c_str(),
                o.out.c_str());
        }
        return 0;
    }
    fs::create_directories(o.out);
    fs::remove(key_path); // an interrupted build is never taken as done
    if (from_recipe) {
        PhotoFetchOptions fetch;
        fetch.any_version = o.any_version;
        fetch.verbose = o.params.verbose;
        for (const FetchedPhoto& f : fetch_debian_photos(
                 sift_debian_recipe(),
                 (fs::path(o.out) / "photos").string(),
                 fetch)) {
            SiftPhoto p;
            p.local_path = f.local_path;
            p.name = f.path_in_package;
            p.sha256 = f.sha256;
            p.package = f.package;
            p.version = f.version;
            p.deb_file = f.deb_file;
            p.deb_sha256 = f.deb_sha256;
            photos.push_back(p);
        }
    }
    const SiftDatasetSummary s = build_sift_dataset(photos, o.params, o.out);
    std::ofstream(key_path) << key << "\n";
    if (o.params.verbose) {
        std::printf(
            "%s: %lld base, %lld query, %lld learn from %lld photos "
            "(%lld distinct descriptors) in %s, %.1f s\n",
            o.params.name.c_str(),
            (long long)s.n_base,
            (long long)s.n_query,
            (long long)s.n_learn,
            (long long)s.n_images,
            (long long)s.n_unique,
            o.out.c_str(),
            std::chrono::duration<double>(
                std::chrono::steady_clock::now() - start)
                .count());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_options(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_sift_debian: %s\n", e.what());
        return 1;
    }
}
