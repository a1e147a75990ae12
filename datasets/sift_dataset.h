/**
 * A TEXMEX-layout SIFT data set made from photographs: SIFT descriptors of
 * every photo (sift_extractor.h), exact duplicates dropped, a seeded split
 * into query / learn / base, exact top-k ground truth, and a manifest.
 *
 * Files written to the output folder (the layout of ANN_SIFT1M):
 *   query.bvecs, base.bvecs, learn.bvecs (only when n_learn > 0),
 *   groundtruth.ivecs (top-k base ids of each query, 0-based),
 *   groundtruth_dist.fvecs (their squared L2 distances),
 *   manifest.json (sources with versions and checksums, SIFT settings,
 *   counts, the split, file sizes and checksums).
 *
 * Recipe (that of sift-debian-a, whose manifest documents it): descriptors
 * of all photos are pooled; the distinct 128-byte rows are sorted
 * lexicographically (numpy's np.unique over raw rows); the sorted rows are
 * permuted by numpy.random.default_rng(seed).permutation (numpy_random.h);
 * the first n_query rows are the queries, the next n_learn the learn set,
 * the next n_base the base; the rest is unused. Nothing depends on the
 * order of the photos, on threads or on time: the same photos and
 * parameters give byte-identical files, and on the sift-debian recipe with
 * OpenCV 4.6 they are those of sift-debian-a.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <datasets/sift_extractor.h>

namespace faiss_gmm {
namespace datasets {

/// One photo to describe and where it came from (for the manifest).
struct SiftPhoto {
    /// The file to read.
    std::string local_path;
    /// Its name in the manifest (e.g. its path inside the package); the
    /// file name of local_path when empty.
    std::string name;
    /// Its SHA-256; computed when empty.
    std::string sha256;
    /// Debian package, version, .deb file name and .deb SHA-256 it came
    /// from; empty for photos that come from no package.
    std::string package, version, deb_file, deb_sha256;
};

/// Parameters of build_sift_dataset.
struct SiftDatasetParameters {
    /// Detector, descriptor and preprocessing (defaults: the recipe).
    SiftParameters sift;
    /// Number of queries (the first rows of the permuted distinct rows).
    int64_t n_query = 10000;
    /// Number of learn vectors (the next rows); 0 writes no learn.bvecs.
    int64_t n_learn = 0;
    /// Number of base vectors (the next rows); -1 takes all the rest. When
    /// the photos give fewer, the base holds what there is (reported).
    int64_t n_base = 300000;
    /// Seed of the permutation (numpy.random.default_rng(seed)).
    uint64_t seed = 12345;
    /// Neighbours per query in the ground truth (clipped to n_base).
    int groundtruth_k = 100;
    /// Name and one-line description written to the manifest.
    std::string name = "sift-debian";
    /// One line: what the data set is.
    std::string description =
        "Real 128-d SIFT descriptors (OpenCV DoG SIFT, values 0..255) of "
        "photographs shipped in Debian packages, in the TEXMEX "
        "(ANN_SIFT1M) file layout, for nearest-neighbour search under "
        "squared L2";
    /// Progress lines (one per photo, then each step with its time).
    bool verbose = true;

    /// Throws naming the first invalid field.
    void check() const;
};

/// What build_sift_dataset made.
struct SiftDatasetSummary {
    /// Photos described.
    int64_t n_images = 0;
    /// Descriptors of all photos together.
    int64_t n_extracted = 0;
    /// Distinct descriptors (exact duplicates dropped).
    int64_t n_unique = 0;
    /// Rows written to each file, and the distinct rows left over.
    int64_t n_query = 0, n_learn = 0, n_base = 0, n_unused = 0;
    /// Neighbours per query in the ground truth.
    int groundtruth_k = 0;
    /// Paths of the files written, in writing order.
    std::vector<std::string> files;
};

/// Describes the photos, splits and writes the data set into out_dir
/// (created when missing; files there of the same names are replaced).
/// Throws naming the photo that cannot be read, or when the photos give
/// fewer than n_query + n_learn + 1 distinct descriptors.
SiftDatasetSummary build_sift_dataset(
    const std::vector<SiftPhoto>& photos,
    const SiftDatasetParameters& params,
    const std::string& out_dir);

} // namespace datasets
} // namespace faiss_gmm
