/**
 * An in-memory evaluation data set: base vectors to index, queries, an
 * optional training set, and exact ground truth.
 */

#pragma once

#include <string>

#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

/// A data set ready for evaluation under squared L2.
struct Dataset {
    /// Short name ("synthetic", "sift1m", a directory name, ...).
    std::string name;
    /// Where it came from and what it is, for reports.
    std::string description;
    /// The vectors to index.
    FloatMatrix base;
    /// The queries (not in base).
    FloatMatrix query;
    /// Training vectors; empty means: train on (a sample of) base.
    FloatMatrix train;
    /// Exact neighbours of each query in base, ids are base row indices.
    GroundTruth groundtruth;
};

} // namespace datasets
} // namespace faiss_gmm
