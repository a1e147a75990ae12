#include <datasets/debian_photos.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <faiss/impl/FaissAssert.h>

#include <datasets/sha256.h>
#include <datasets/tsv.h>

namespace faiss_gmm {
namespace datasets {

namespace {

namespace fs = std::filesystem;

/// datasets/sift_debian_recipe.tsv, embedded by CMake.
const char* const kSiftDebianRecipe =
#include "sift_debian_recipe.inc"
    ;

bool is_hex64(const std::string& s) {
    return s.size() == 64 &&
           s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

int parse_pixels(
    const std::string& s, const std::string& source, int line_number) {
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    FAISS_THROW_IF_NOT_FMT(
        !s.empty() && *end == 0 && v > 0 && v < (1 << 20),
        "%s line %d: \"%s\" is not a pixel size",
        source.c_str(),
        line_number,
        s.c_str());
    return int(v);
}

/// A word for sh -c in single quotes.
std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

/// Runs a shell command with its output going to log_path; returns the exit
/// status (-1 when it did not exit normally).
int run_logged(const std::string& command, const std::string& log_path) {
    const std::string full =
        command + " > " + shell_quote(log_path) + " 2>&1 < /dev/null";
    const int status = std::system(full.c_str());
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// The last lines of a log file, for error messages.
std::string log_tail(const std::string& path, size_t max_lines = 6) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        // apt's note that a root download is not sandboxed is noise here.
        if (line.find("unsandboxed") == std::string::npos && !line.empty()) {
            lines.push_back(line);
        }
    }
    std::string out;
    for (size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0;
         i < lines.size();
         i++) {
        out += "\n    " + lines[i];
    }
    return out;
}

/// cache_dir/<package>/<path without its leading '/'>.
fs::path photo_path(
    const std::string& cache_dir,
    const RecipePackage& package,
    const RecipeImage& image) {
    return fs::path(cache_dir) / package.name /
           fs::path(image.path).relative_path();
}

/// What a finished fetch of one package left in its folder: version, .deb
/// file name and SHA-256, one per line.
fs::path stamp_path(const std::string& cache_dir, const RecipePackage& p) {
    return fs::path(cache_dir) / p.name / "package.txt";
}

struct PackageStamp {
    std::string version, deb_file, deb_sha256;
};

bool read_stamp(const fs::path& path, PackageStamp* stamp) {
    std::ifstream in(path);
    return bool(
        std::getline(in, stamp->version) && std::getline(in, stamp->deb_file) &&
        std::getline(in, stamp->deb_sha256));
}

/// Fetches one package into tmp, copies its photos into place and writes
/// its stamp. Throws when apt or dpkg-deb fails or a photo is missing.
PackageStamp fetch_package(
    const RecipePackage& package,
    const std::string& cache_dir,
    const PhotoFetchOptions& options) {
    const fs::path tmp = fs::path(cache_dir) / (".fetch-" + package.name);
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    const std::string log = (tmp / "apt.log").string();
    const std::string cd = "cd " + shell_quote(tmp.string()) + " && ";
    int rc = run_logged(
        cd + "apt-get download " +
            shell_quote(package.name + "=" + package.version),
        log);
    bool pinned = true;
    if (rc != 0 && options.any_version) {
        std::fprintf(
            stderr,
            "sift-debian: warning: %s %s is not in the archives apt "
            "knows; taking apt's candidate version (--any-version)%s\n",
            package.name.c_str(),
            package.version.c_str(),
            log_tail(log, 2).c_str());
        rc = run_logged(
            cd + "apt-get download " + shell_quote(package.name), log);
        pinned = false;
    }
    FAISS_THROW_IF_NOT_FMT(
        rc == 0,
        "fetching %s=%s failed (`apt-get download` exit status %d):%s\n"
        "  (a fresh machine may need `apt-get update` first; a Debian "
        "release without this version: --any-version)",
        package.name.c_str(),
        package.version.c_str(),
        rc,
        log_tail(log).c_str());
    fs::path deb;
    for (const fs::directory_entry& e : fs::directory_iterator(tmp)) {
        if (e.path().extension() == ".deb") {
            deb = e.path();
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        !deb.empty(),
        "apt-get download %s left no .deb in %s",
        package.name.c_str(),
        tmp.string().c_str());
    PackageStamp stamp;
    stamp.deb_file = deb.filename().string();
    stamp.deb_sha256 = sha256_file(deb.string());
    {
        // dpkg-deb --field gives the version actually fetched.
        const std::string vlog = (tmp / "version.txt").string();
        rc = run_logged(
            "dpkg-deb --field " + shell_quote(deb.string()) + " Version", vlog);
        std::ifstream in(vlog);
        FAISS_THROW_IF_NOT_FMT(
            rc == 0 && std::getline(in, stamp.version),
            "dpkg-deb cannot read the version of %s",
            deb.string().c_str());
    }
    if (pinned && stamp.deb_sha256 != package.deb_sha256) {
        // Another architecture's build of the same version: the photos are
        // still checked one by one below.
        std::fprintf(
            stderr,
            "sift-debian: note: %s has SHA-256 %s, the recipe's %s has "
            "%s (another architecture?); its photos are checked one by "
            "one\n",
            stamp.deb_file.c_str(),
            stamp.deb_sha256.c_str(),
            package.deb_file.c_str(),
            package.deb_sha256.c_str());
    }
    const fs::path root = tmp / "root";
    rc = run_logged(
        "dpkg-deb -x " + shell_quote(deb.string()) + " " +
            shell_quote(root.string()),
        log);
    FAISS_THROW_IF_NOT_FMT(
        rc == 0,
        "dpkg-deb -x %s failed (exit status %d):%s",
        deb.string().c_str(),
        rc,
        log_tail(log).c_str());
    for (const RecipeImage& image : package.images) {
        const fs::path from = root / fs::path(image.path).relative_path();
        FAISS_THROW_IF_NOT_FMT(
            fs::is_regular_file(from),
            "%s %s has no file %s",
            package.name.c_str(),
            stamp.version.c_str(),
            image.path.c_str());
        const fs::path to = photo_path(cache_dir, package, image);
        fs::create_directories(to.parent_path());
        fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    }
    fs::remove_all(tmp);
    std::ofstream out(stamp_path(cache_dir, package));
    out << stamp.version << "\n"
        << stamp.deb_file << "\n"
        << stamp.deb_sha256 << "\n";
    FAISS_THROW_IF_NOT_FMT(
        bool(out),
        "cannot write %s",
        stamp_path(cache_dir, package).string().c_str());
    return stamp;
}

} // namespace

size_t PhotoRecipe::n_images() const {
    size_t n = 0;
    for (const RecipePackage& p : packages) {
        n += p.images.size();
    }
    return n;
}

PhotoRecipe
parse_photo_recipe(const std::string& text, const std::string& source) {
    PhotoRecipe recipe;
    recipe.sha256 = sha256_hex(text);
    for (const TsvLine& record : parse_tsv(text)) {
        const int line_number = record.number;
        const std::vector<std::string>& f = record.fields;
        if (f[0] == "package") {
            FAISS_THROW_IF_NOT_FMT(
                f.size() == 5 && is_hex64(f[4]),
                "%s line %d: a package line is: package NAME VERSION "
                "DEB_FILE DEB_SHA256",
                source.c_str(),
                line_number);
            RecipePackage p;
            p.name = f[1];
            p.version = f[2];
            p.deb_file = f[3];
            p.deb_sha256 = f[4];
            recipe.packages.push_back(p);
        } else if (f[0] == "image") {
            FAISS_THROW_IF_NOT_FMT(
                f.size() == 6 && is_hex64(f[3]) && !f[2].empty() &&
                    f[2][0] == '/',
                "%s line %d: an image line is: image PACKAGE "
                "/ABSOLUTE/PATH SHA256 WIDTH HEIGHT",
                source.c_str(),
                line_number);
            FAISS_THROW_IF_NOT_FMT(
                !recipe.packages.empty() && recipe.packages.back().name == f[1],
                "%s line %d: image of package \"%s\" does not follow "
                "that package's line",
                source.c_str(),
                line_number,
                f[1].c_str());
            RecipeImage image;
            image.path = f[2];
            image.sha256 = f[3];
            image.width = parse_pixels(f[4], source, line_number);
            image.height = parse_pixels(f[5], source, line_number);
            recipe.packages.back().images.push_back(image);
        } else {
            FAISS_THROW_FMT(
                "%s line %d: unknown line kind \"%s\" (package or image)",
                source.c_str(),
                line_number,
                f[0].c_str());
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        !recipe.packages.empty(), "%s: no packages", source.c_str());
    for (const RecipePackage& p : recipe.packages) {
        FAISS_THROW_IF_NOT_FMT(
            !p.images.empty(),
            "%s: package %s lists no image",
            source.c_str(),
            p.name.c_str());
    }
    return recipe;
}

const PhotoRecipe& sift_debian_recipe() {
    static const PhotoRecipe recipe =
        parse_photo_recipe(kSiftDebianRecipe, "sift_debian_recipe.tsv");
    return recipe;
}

bool debian_tools_available(std::string* why) {
    for (const char* tool : {"apt-get", "dpkg-deb"}) {
        const std::string command =
            std::string("command -v ") + tool + " > /dev/null 2>&1";
        if (std::system(command.c_str()) != 0) {
            if (why) {
                *why = std::string(tool) + " is not on the PATH";
            }
            return false;
        }
    }
    return true;
}

std::vector<FetchedPhoto> fetch_debian_photos(
    const PhotoRecipe& recipe,
    const std::string& cache_dir,
    const PhotoFetchOptions& options) {
    std::vector<FetchedPhoto> photos;
    fs::create_directories(cache_dir);
    for (const RecipePackage& package : recipe.packages) {
        const auto start = std::chrono::steady_clock::now();
        PackageStamp stamp;
        bool cached = read_stamp(stamp_path(cache_dir, package), &stamp);
        for (const RecipeImage& image : package.images) {
            cached = cached &&
                     fs::is_regular_file(photo_path(cache_dir, package, image));
        }
        if (!cached) {
            std::string why;
            FAISS_THROW_IF_NOT_FMT(
                debian_tools_available(&why),
                "cannot fetch %s: %s (the photos come from Debian "
                "packages)",
                package.name.c_str(),
                why.c_str());
            stamp = fetch_package(package, cache_dir, options);
        }
        for (const RecipeImage& image : package.images) {
            FetchedPhoto photo;
            photo.package = package.name;
            photo.version = stamp.version;
            photo.deb_file = stamp.deb_file;
            photo.deb_sha256 = stamp.deb_sha256;
            photo.path_in_package = image.path;
            photo.local_path = photo_path(cache_dir, package, image).string();
            photo.sha256 = sha256_file(photo.local_path);
            if (photo.sha256 != image.sha256) {
                FAISS_THROW_IF_NOT_FMT(
                    options.any_version,
                    "%s %s: %s has SHA-256 %s, the recipe says %s "
                    "(--any-version accepts it)",
                    package.name.c_str(),
                    stamp.version.c_str(),
                    image.path.c_str(),
                    photo.sha256.c_str(),
                    image.sha256.c_str());
                std::fprintf(
                    stderr,
                    "sift-debian: warning: %s differs from the recipe's "
                    "(SHA-256 %s)\n",
                    photo.local_path.c_str(),
                    photo.sha256.c_str());
            }
            photos.push_back(photo);
        }
        if (options.verbose) {
            std::printf(
                "sift-debian: %s %s: %zu photos %s in %.1f s\n",
                package.name.c_str(),
                stamp.version.c_str(),
                package.images.size(),
                cached ? "cached" : "fetched",
                std::chrono::duration<double>(
                    std::chrono::steady_clock::now() - start)
                    .count());
            std::fflush(stdout);
        }
    }
    return photos;
}

} // namespace datasets
} // namespace faiss_gmm
