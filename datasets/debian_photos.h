/**
 * Photographs shipped inside Debian packages, fetched with the package
 * manager's own client: the sources of the sift-debian data set.
 *
 * A recipe (datasets/sift_debian_recipe.tsv, embedded at build time) names
 * each package with its version and the SHA-256 of its .deb, and each photo
 * with its path inside the package, its SHA-256 and its size. Fetching runs
 * `apt-get download NAME=VERSION` (no root needed) and `dpkg-deb -x`, keeps
 * only the listed photos under a cache folder and deletes the rest, so a
 * second call reads the cache and runs nothing.
 */

#pragma once

#include <string>
#include <vector>

namespace faiss_gmm {
namespace datasets {

/// One photo of a recipe.
struct RecipeImage {
    /// Absolute path inside the package ("/usr/share/...").
    std::string path;
    /// SHA-256 of the file (64 hex characters).
    std::string sha256;
    /// Pixel width and height of the file.
    int width = 0, height = 0;
};

/// One package of a recipe.
struct RecipePackage {
    /// Debian package name.
    std::string name;
    /// Exact version (epoch included, e.g. "4:5.27.5-2").
    std::string version;
    /// File name apt-get download gives it (for the manifest).
    std::string deb_file;
    /// SHA-256 of that .deb.
    std::string deb_sha256;
    /// The photos taken from it, in recipe order.
    std::vector<RecipeImage> images;
};

/// A parsed recipe.
struct PhotoRecipe {
    /// Packages in recipe order.
    std::vector<RecipePackage> packages;
    /// SHA-256 of the recipe text (part of the cache key of built sets).
    std::string sha256;

    /// Total number of photos.
    size_t n_images() const;
};

/// Parses a recipe in the sift_debian_recipe.tsv format; throws naming
/// source and the line of the first malformed entry.
PhotoRecipe
parse_photo_recipe(const std::string& text, const std::string& source);

/// The embedded datasets/sift_debian_recipe.tsv, parsed.
const PhotoRecipe& sift_debian_recipe();

/// A photo on this machine, with where it came from.
struct FetchedPhoto {
    /// Package name.
    std::string package;
    /// The package version fetched.
    std::string version;
    /// The .deb file name and its SHA-256 as fetched.
    std::string deb_file, deb_sha256;
    /// Path inside the package.
    std::string path_in_package;
    /// Where the photo is on this machine.
    std::string local_path;
    /// SHA-256 of the photo as fetched.
    std::string sha256;
};

/// How fetch_debian_photos fetches.
struct PhotoFetchOptions {
    /// When the recipe's version is not in the configured archives, take
    /// the candidate version apt offers instead (and accept photos whose
    /// checksum differs from the recipe's, with a warning each). Off by
    /// default: a package or photo that differs from the recipe throws.
    bool any_version = false;
    /// One line per package: fetched or cached, and how long it took.
    bool verbose = true;
};

/// True when apt-get and dpkg-deb are on the PATH; otherwise false, with
/// *why saying which one is missing.
bool debian_tools_available(std::string* why = nullptr);

/// The photos of recipe under cache_dir (cache_dir/<package>/<path in
/// package>), fetching each package whose photos are not all there yet.
/// Every photo's SHA-256 is checked against the recipe (also for cached
/// ones). Throws with apt's own message (and a hint: `apt-get update`,
/// --any-version) when a package cannot be fetched.
std::vector<FetchedPhoto> fetch_debian_photos(
    const PhotoRecipe& recipe,
    const std::string& cache_dir,
    const PhotoFetchOptions& options = {});

} // namespace datasets
} // namespace faiss_gmm
