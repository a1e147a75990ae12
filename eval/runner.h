/**
 * The evaluation itself: build every index from its factory string on one
 * shared training sample, add the base, search the queries at each nprobe
 * (or adaptive-probing target), and measure recall, distance computations,
 * replication, memory and times.
 */

#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <datasets/dataset.h>
#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IndexIVFGMM.h>

#include <eval/distance_matrix.h>
#include <eval/results.h>

namespace faiss_gmm {
namespace eval {

/**
 * Build and search settings applied to an IndexIVFGMM (wherever it sits in
 * the index chain) after the factory made it, as parameter strings of the
 * key table (IVFGMMParameters.h); keys not given keep what the factory
 * string and the library defaults chose. Ignored for other indexes.
 */
struct GmmOverrides {
    /// build keys, "tau=0.05,max_assign=3" (IndexIVFGMM::set_build_parameters)
    std::string build;
    /// search keys, "probe=l2,prune_margin=0.3"
    /// (IndexIVFGMM::set_search_parameters)
    std::string search;

    /// Applies both strings to index.
    void apply(IndexIVFGMM* index) const;
    /// "key=value,..." of the build then search keys ("" when none).
    std::string describe() const;
    /// Adds key=value to build; throws naming them when the key table
    /// rejects them.
    void set_build(const std::string& key, const std::string& value);
    /// Adds key=value to search; throws naming them when rejected.
    void set_search(const std::string& key, const std::string& value);
};

/// Where an index's coarse model comes from.
enum class ModelSource : int {
    /// index->train() on the shared training sample
    OwnTraining = 0,
    /// An IndexIVFGMM adopting the k-means centroids of the run's k-means
    /// IVF index of the same nlist (trained by faiss::Clustering when the
    /// run has none) as a spherical GMM: weights and variances from one hard
    /// assignment of the sample. Lets spill rules be compared on exactly the
    /// k-means lists.
    KMeansCentroids = 1,
    /// An IndexIVFGMM adopting the GMM that the first index with the same
    /// GMM training parameters trained in this run (trained once, shared):
    /// variants that differ only at add, search time or in their code
    /// share one model.
    SharedGmm = 2,
    /// A FAISS IVF index (any code, an IndexRefine around it allowed)
    /// whose flat quantizer adopts the run's k-means centroids of its
    /// nlist (as KMeansCentroids); FAISS then trains only its code and
    /// refinement. Codes compared on exactly the same k-means lists.
    SharedKMeans = 3,
};

/// One index to evaluate.
struct IndexSpec {
    /// label in tables, files and the plot (the factory string when empty)
    std::string name;
    /// faiss_gmm::index_factory description, e.g. "IVF1024_GMM,Flat"
    std::string factory;
    /// settings applied to the IndexIVFGMM inside (if any)
    GmmOverrides gmm;
    /// where the coarse model comes from (KMeansCentroids, SharedGmm: the
    /// factory string must give an IndexIVFGMM, with no transform above
    /// it; an IndexRefine around it is trained on the sample; its code is
    /// trained against the adopted means)
    ModelSource model = ModelSource::OwnTraining;
    /// adaptive probing sweep: one row per posterior-mass target with
    /// nprobe = nlist as the cap (IndexIVFGMM only); empty: nprobe sweep
    std::vector<float> posterior_masses;
};

/// A default nprobe sweep stops once recall@k reaches this: every summary
/// target (<= 0.99) is bracketed by then, and the probes after it are the
/// most expensive ones.
constexpr double kDefaultSweepStopRecall = 0.999;
/// A default nprobe sweep also stops once doubling nprobe raised recall@k
/// by less than this: the code's own error caps recall (SQ4, PQ without
/// refinement), and the remaining probes, the most expensive ones, would
/// not reach a higher target.
constexpr double kDefaultSweepPlateauGain = 2e-4;

/// Settings shared by every index of a run.
struct EvalConfig {
    /// the k of recall@k in the summary (results requested per query:
    /// max(k, 100), at most n_base)
    int k = 10;
    /// nprobe sweep; empty: 1, 2, 4, ... up to nlist (nlist included),
    /// stopping after the first nprobe where recall@k reaches
    /// kDefaultSweepStopRecall or rose by less than kDefaultSweepPlateauGain
    /// over the previous nprobe; values above an index's nlist are capped
    /// to it; an explicit sweep always runs whole
    std::vector<int64_t> nprobes;
    /// rows of the shared training sample; 0: min(rows available,
    /// 256 * largest nlist), the size FAISS and the GMM trainer subsample to
    /// (all rows when no index is an IVF)
    int64_t train_size = 0;
    /// seed of the training sample
    int64_t seed = 1234;
    /// k-means iterations: faiss IVF's ClusteringParameters::niter and the
    /// GMM's k-means initialisation (GmmParameters::kmeans_niter)
    int kmeans_iter = 20;
    /// OpenMP threads (0: leave the OpenMP default)
    int threads = 0;
    /// verbose training (FAISS clustering and EM lines)
    bool verbose = false;
    /**
     * Build and search on a GPU (GPU builds only): every index holding an
     * IndexIVFGMM becomes a gpu::GpuIndexIVFGMM (wrappers kept) that is
     * trained, filled and searched on the device; a plain L2 IndexIVFFlat
     * (the k-means baseline) is trained by FAISS on the CPU and its lists
     * built and searched on the device as a GpuIndexIVFGMM holding its
     * centroids without spill (the same lists); any other index stays on
     * the CPU. Counters come from the GPU index (same meaning as the CPU
     * one's). nprobe values above the GPU limit are dropped.
     */
    bool gpu = false;
    /// CUDA device of the GPU indexes (and of the --distance-matrix GEMM)
    int gpu_device = 0;
    /**
     * Evaluate by lookups in the query x base matrix of exact squared L2
     * distances, computed once before the first index (compute_distance_
     * matrix: cuBLAS on gpu_device when the build has CUDA and a device is
     * usable, else CPU BLAS). Every index is then built on the CPU (with
     * gpu, FAISS k-means assignments and GMM EM may still use the device)
     * and searched on the CPU with the same probe rules and counters, each
     * fine distance read from the matrix: a bare IndexIVFGMM through
     * SearchParametersIVFGMM::precomputed_distances, a plain L2
     * IndexIVFFlat (the k-means baseline) through ivf_flat_lookup_search;
     * any other index is searched normally. Recall is computed as without
     * it (exact distances of the returned ids, in double).
     */
    bool distance_matrix = false;
    /// the matrix may use at most this many bytes (else the run fails
    /// before training, naming the sizes)
    double distance_matrix_max_bytes = kDefaultDistanceMatrixMaxBytes;
};

/// round(log2(4 sqrt(n_base))) as a power of two, at least 1: the default
/// number of lists.
int64_t default_nlist(int64_t n_base);

/// The nprobe values of a sweep for an index with nlist lists (sorted,
/// unique, capped at nlist; the default sweep when requested is empty).
std::vector<int64_t>
nprobe_sweep(const std::vector<int64_t>& requested, int64_t nlist);

/**
 * A spherical GMM whose means are the given centroids, weights (n_j + 1) /
 * (n + k) and variances the mean squared distance per dimension of the
 * points assigned to each centroid (floored at 1e-3 times the data's mean
 * per-dimension variance; the data's variance for an empty cluster).
 * @param centroids k * d values
 * @param n, x      points used for the weights and variances
 */
GaussianMixture gmm_from_centroids(
    int d, int k, const float* centroids, int64_t n, const float* x);

/**
 * Runs the evaluation and returns every measurement. Progress (training,
 * adding, searching, with timings) goes to log. The data set must have
 * ground truth with at least k neighbours per query (the ids of base rows).
 */
EvalReport run_evaluation(
    const datasets::Dataset& data,
    const std::vector<IndexSpec>& specs,
    const EvalConfig& config,
    std::ostream& log);

} // namespace eval
} // namespace faiss_gmm
