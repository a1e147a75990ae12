/**
 * Named public data sets, where to get them and how to load them.
 *
 * The list lives in datasets/registry.tsv, which datasets/download.sh reads
 * and which is compiled into the library (one source of truth). Sizes are
 * those of the published files; sha256 is empty where no published
 * checksum is known to us (the script then only checks sizes).
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <datasets/dataset.h>

namespace faiss_gmm {
namespace datasets {

/// One file of a registered data set.
struct DatasetFile {
    /// "base", "query", "groundtruth", "learn" or "archive" (a tarball that
    /// holds other files of the entry), "hdf5" (an ann-benchmarks file).
    std::string role;
    /// Where to download it; empty for a member of an archive.
    std::string url;
    /// Path under data_root/<name>/ (for archive members, the path after
    /// extraction).
    std::string local_name;
    /// SHA-256 of the local file in hex; empty when unknown.
    std::string sha256;
    /// Size of the local file in bytes; -1 when unknown.
    int64_t bytes = -1;
    /// HTTP range "first-last" (inclusive) for a prefix of a larger file;
    /// empty to fetch it whole. A prefix of a .fbin/.u8bin file gets its
    /// row count header rewritten after download.
    std::string byte_range;
};

/// A registered data set.
struct DatasetInfo {
    /// Registry name (e.g. "sift1m").
    std::string name;
    /// One line: what it is and where it comes from.
    std::string description;
    /// "texmex", "bin" or "hdf5".
    std::string format;
    /// Number of base vectors.
    int64_t n_base = 0;
    /// Number of queries.
    int64_t n_query = 0;
    /// Dimension.
    int d = 0;
    /// The files, in download order.
    std::vector<DatasetFile> files;
};

/// All registered data sets (parsed once from the embedded registry.tsv).
const std::vector<DatasetInfo>& dataset_registry();

/// The entry called name; throws listing the known names when there is none.
const DatasetInfo& find_dataset(const std::string& name);

/// Where downloaded data sets live when no folder is given: the environment
/// variable FAISS_GMM_DATA_ROOT, else $HOME/.cache/faiss_gmm/datasets
/// (download.sh uses the same rule).
std::string default_data_root();

/// Loads a data set for evaluation.
/// Computed ground truth is cached next to the data, or in the folder named
/// by the environment variable FAISS_GMM_CACHE_DIR when it is set.
/// @param name_or_dir  "synthetic" (make_synthetic with defaults), a
///     registered name (files under data_root/<name>; a missing file throws
///     saying to run `datasets/download.sh NAME data_root`), or a directory
///     holding base/query[/groundtruth][/learn] files in TEXMEX
///     (base.fvecs|bvecs, query.*, groundtruth.ivecs) or big-ann-benchmarks
///     layout (base.fbin|u8bin|i8bin, query.*, groundtruth.bin), also the
///     TEXMEX names <x>_base.fvecs etc.
/// @param data_root    root folder of downloaded data sets
/// @param max_base     keep only the first max_base base rows (-1 = all);
///     ground truth is then recomputed (and cached next to the data)
/// @param max_query    keep only the first max_query queries (-1 = all)
/// @param verbose      print what is loaded and how long it took
Dataset load_dataset(
    const std::string& name_or_dir,
    const std::string& data_root,
    int64_t max_base = -1,
    int64_t max_query = -1,
    bool verbose = false);

} // namespace datasets
} // namespace faiss_gmm
