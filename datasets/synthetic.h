/**
 * A deterministic synthetic data set that looks like real descriptors
 * rather than flattering a GMM: anisotropic clusters with a low-rank
 * structure, heavy-tailed cluster sizes, very different spreads, partly
 * overlapping clusters, and a heavy-tailed (Student-t) background.
 *
 * The generator uses its own PRNG (splitmix64 / xoshiro256**) and
 * Box-Muller transform, so a seed gives the same bytes on every platform
 * and compiler.
 */

#pragma once

#include <cstdint>
#include <memory>

#include <datasets/dataset.h>

namespace faiss_gmm {
namespace datasets {

/// Parameters of make_synthetic.
struct SyntheticParameters {
    /// Number of base vectors.
    int64_t n_base = 200000;
    /// Number of queries (drawn from the same distribution, held out).
    int64_t n_query = 1000;
    /// Number of training vectors drawn separately; 0 (default) leaves
    /// Dataset::train empty, meaning train on base.
    int64_t n_train = 0;
    /// Dimension.
    int d = 64;
    /// Number of generating clusters.
    int n_clusters = 256;
    /// Fraction of vectors drawn from the heavy-tailed background instead of
    /// a cluster.
    double background_fraction = 0.1;
    /// Rank of the shared low-rank structure of each cluster's covariance
    /// (the directions in which a cluster is elongated); 0 < rank <= d.
    int low_rank = 8;
    /// Zipf exponent of the cluster sizes (0 = equal sizes; 1 = Zipf).
    double size_zipf_exponent = 1.0;
    /// Degrees of freedom of the Student-t background (smaller = heavier).
    double background_dof = 3.0;
    /// Neighbours per query in the ground truth.
    int groundtruth_k = 100;
    /// Seed of the PRNG.
    int64_t seed = 42;
    /// Print what is generated and how long it took.
    bool verbose = false;
};

/// Generates base, queries (and train when n_train > 0) and the exact
/// ground truth. Same parameters -> identical bytes.
Dataset make_synthetic(const SyntheticParameters& params = {});

/**
 * make_synthetic's generator without the data set: row i of the base,
 * query or train matrix depends only on the parameters and i, so rows can
 * be drawn in batches, in any order and in parallel, and a data set larger
 * than memory can be streamed (the rows are make_synthetic's bytes). The
 * n_base / n_query / n_train / groundtruth_k fields are not used.
 */
class SyntheticGenerator {
   public:
    /// Which matrix a row belongs to.
    enum class Part { Base, Query, Train };

    /// Builds the generative model (checks d, n_clusters, low_rank,
    /// background_fraction, background_dof, size_zipf_exponent).
    explicit SyntheticGenerator(const SyntheticParameters& params);
    ~SyntheticGenerator();
    SyntheticGenerator(const SyntheticGenerator&) = delete;
    SyntheticGenerator& operator=(const SyntheticGenerator&) = delete;

    /// Rows [first, first + n) of `part` into out (n x d floats), drawn in
    /// parallel (OpenMP).
    void draw(Part part, int64_t first, int64_t n, float* out) const;

    /// dimension
    int d() const;

   private:
    struct Impl;
    std::unique_ptr<const Impl> impl_;
};

} // namespace datasets
} // namespace faiss_gmm
