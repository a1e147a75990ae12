/**
 * ann-benchmarks HDF5 files (http://ann-benchmarks.com): datasets "train"
 * (base vectors), "test" (queries), "neighbors" (int ground-truth ids),
 * "distances" (float ground-truth distances) and the string attribute
 * "distance" ("euclidean", "angular", ...).
 */

#pragma once

#include <string>

#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

/// Contents of an ann-benchmarks HDF5 file.
struct AnnBenchmarksData {
    /// "train": the base vectors.
    FloatMatrix train;
    /// "test": the queries.
    FloatMatrix test;
    /// "neighbors": ground-truth ids, one row per query.
    IntMatrix neighbors;
    /// "distances": ground-truth distances (same shape as neighbors); empty
    /// when the file has none.
    FloatMatrix distances;
    /// The "distance" attribute: "euclidean", "angular", ...
    std::string distance;
};

/// Reads an ann-benchmarks HDF5 file. A missing key, a dataset of the wrong
/// rank or of a non-numeric type, or mismatched shapes throw
/// faiss::FaissException naming the file and the key.
AnnBenchmarksData read_ann_benchmarks_hdf5(const std::string& path);

/// Writes an ann-benchmarks HDF5 file (train/test as float32, neighbors as
/// int32, distances as float32 when present, the "distance" attribute).
void write_ann_benchmarks_hdf5(
    const std::string& path, const AnnBenchmarksData& data);

} // namespace datasets
} // namespace faiss_gmm
