/**
 * GpuIndexIVFGMM: the GPU-resident version of IndexIVFGMM (GMM coarse
 * quantizer, spilled inverted lists, exact deduplicated search) on one CUDA
 * device, following FAISS GPU index conventions (config struct, copyFrom /
 * copyTo a CPU index).
 *
 * On the same trained model, data and parameters it stores the same lists
 * (same entries in the same order, same spill records) and returns the same
 * ids as the CPU IndexIVFGMM; distances agree within float tolerance (the
 * GPU computes them with fp32 direct differences). It shares the CPU
 * index's parameters (IVFGMMParameters.h), spill rules (ListAssignment.h)
 * and ownership rules (SpillRecords.h); its search runs in stages of their
 * own (gpu/impl/GpuCoarseProbe, GpuListScan, GpuTopK). List pruning
 * (prune_margin, min_expected_hits) applies the CPU's tests against the
 * k-th distance after the first config.prune_first_probes lists (the CPU
 * tightens it list by list), so the GPU prunes no more lists than the CPU
 * and may return more true neighbours. Not available here: max_codes (it
 * counts unique vectors, which the GPU cannot bound before its scan),
 * selectors, range search and codes other than flat floats.
 *
 * Full covariance is refused (train, set_gmm and copyFrom throw, naming
 * it): the index's spill assignment and posterior probing
 * (kernels/ivf_assign.h, gpu/impl/GpuModel) score spherical and diagonal
 * models only. A full model trains on the GPU with gpu::train_gmm_gpu
 * (GpuEmTrainer.h) and serves in the CPU IndexIVFGMM.
 *
 * Naming: Gpu* classes follow FAISS GPU (config struct, copyFrom / copyTo,
 * camelCase for those two, as faiss::gpu::GpuIndexIVF); everything they
 * share with the CPU index keeps the CPU names.
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/impl/IDSelector.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/faiss_compat.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>

namespace faiss_gmm {
namespace gpu {

/** Where a GpuIndexIVFGMM lives and how much memory its steps may use. */
struct GpuIndexIVFGMMConfig {
    /// CUDA device ordinal that holds the index
    int device = 0;
    /// arithmetic of train()'s E-step (default and measurements: see
    /// GpuEmConfig::precision)
    EStepPrecision precision = EStepPrecision::BF16;
    /// device memory train()'s E-step may use, bytes (0: as
    /// GpuEmConfig::max_device_memory, 80% of the free memory)
    size_t max_device_memory = 0;
    /// temporary device memory of one search tile, bytes (coarse score
    /// matrix, probe tables, candidate buffers); queries are processed in
    /// tiles that fit it (at least one query per tile). Default 1 GiB.
    size_t search_memory = size_t(1) << 30;
    /// rows uploaded and assigned per batch by add_with_ids() (> 0)
    idx_t add_batch_rows = idx_t(1) << 16;
    /// list pruning (prune_margin, min_expected_hits): lists scanned before
    /// the others are tested against the k-th distance they gave (>= 1).
    /// More scan a few lists twice as fast as they would otherwise be
    /// pruned; fewer give a looser bound. Default 1: the nearest list alone
    /// holds ~n / nlist vectors, far more than k.
    int prune_first_probes = 1;
    /**
     * What the lists store, named as in factory strings: "Flat" (float32
     * vectors, default), "SQfp16" (FAISS's QT_fp16 residuals: half the
     * memory) or "SQ8" (FAISS's QT_8bit residuals, per-dimension ranges
     * trained by train() / train_codes(): a quarter). Encodings are FAISS's
     * byte for byte, so the lists copy to and from IndexIVFGMM over
     * IndexIVFFlat / IndexIVFScalarQuantizer unchanged. Ignored by the
     * constructor that copies a CPU index (its codes decide).
     */
    std::string codes = "Flat";
    /// print what train / add / search do and how long they take
    bool verbose = false;
};

/** Timings of the last search() (all tiles), for benchmarks. */
struct GpuSearchTiming {
    idx_t nq = 0;         ///< queries of the last search
    int ntiles = 0;       ///< query tiles it was split into
    double coarse_ms = 0; ///< coarse step: GEMM, scores, probe selection
    double scan_ms = 0;   ///< probe preparation and list scan
    double select_ms = 0; ///< top-k selection over the candidates
    double total_ms = 0;  ///< whole search, uploads and downloads included
    /// bytes of stored codes the scan read (one code per non-duplicate
    /// entry scanned, i.e. nfine_distances * code size), for scan
    /// bandwidth
    size_t scan_bytes = 0;
};

/**
 * IVF index with a GMM coarse quantizer, resident on one GPU. Metric: L2.
 *
 * Lists: per list, device buffers of codes (config.codes: float32 vectors,
 * or FAISS's SQfp16 / SQ8 residual codes, decoded in registers by the
 * scan), ids (int64) and spill records (other_lists_width() int32 per
 * entry, the other lists holding the same vector, -1 padded) exactly as
 * IndexIVFGMM's invlists and spill_records. ntotal counts vectors,
 * nentries() list entries. Other codes (PQ, SQ4, ...) stay on the CPU
 * IndexIVFGMM: copyFrom refuses them, naming the code.
 *
 * add_with_ids(): in batches of config.add_batch_rows rows, the top
 * max_assign components of each vector are found on the GPU by a fused
 * kernel (log-joint scores for the Posterior and None spill rules, L2 for
 * Closure), and the spill rule of ListAssignment.h is applied on the host
 * to these candidates, as the CPU index applies it. The Soar and Rair
 * rules' lists come from the CPU assign_lists on the same model. Entries
 * are encoded on the GPU (each copy against its own list's mean) and
 * appended in input order, as the CPU add does.
 *
 * search(): queries tiled by config.search_memory; per tile, a GEMM against
 * the means gives the coarse scores (L2 or log-joint probe order), the
 * nprobe best lists are selected, cut by posterior_mass / distance_ratio
 * as on the CPU, every probed entry's distance is computed
 * once (an entry whose vector sits in a list probed earlier by the query is
 * skipped) and the k smallest are selected. k and nprobe are limited to
 * max_search_k() (2048); nprobe > nlist is capped at nlist.
 *
 * Counters: faiss::indexIVF_stats (nq, nlist = non-empty lists probed,
 * ndis = fine distances) and faiss_gmm::indexIVFGMM_stats (nq,
 * ncoarse_distances, nfine_distances, nentries_scanned,
 * nduplicates_skipped, nlists_probed, nlists_pruned, nbound_distances) are
 * added to with the CPU index's meaning.
 *
 * Like FAISS GPU indexes, one object must not be used from several host
 * threads at once (its search buffers and stream are shared).
 */
class GpuIndexIVFGMM : public faiss::Index {
   public:
    /// number of lists = mixture components
    size_t nlist = 0;
    /// the trained model (k = nlist); change it through set_gmm() only
    GaussianMixture gmm;
    /// how train() and add() build the index (train_device is ignored:
    /// train() always runs on the GPU)
    IVFGMMBuildParameters build_params;
    /// lists probed per query (capped at nlist, at most max_search_k())
    size_t nprobe = 1;
    /// must stay 0 on the GPU (see the class comment)
    size_t max_codes = 0;
    /// default GMM search options
    IVFGMMSearchOptions search_options;

    /**
     * An empty, untrained index.
     * @param d            dimension
     * @param nlist        number of lists (mixture components)
     * @param build_params EM parameters of train(), spill rule of add()
     * @param config       device and memory settings
     */
    GpuIndexIVFGMM(
        int d,
        size_t nlist,
        const IVFGMMBuildParameters& build_params = IVFGMMBuildParameters(),
        const GpuIndexIVFGMMConfig& config = GpuIndexIVFGMMConfig());

    /**
     * A copy of a CPU index (model, parameters, lists), see copyFrom.
     * @param cpu_index the index to copy (trained or not, filled or not)
     * @param config    device and memory settings
     */
    explicit GpuIndexIVFGMM(
        const IndexIVFGMM* cpu_index,
        const GpuIndexIVFGMMConfig& config = GpuIndexIVFGMMConfig());

    ~GpuIndexIVFGMM() override;

    GpuIndexIVFGMM(const GpuIndexIVFGMM&) = delete;
    GpuIndexIVFGMM& operator=(const GpuIndexIVFGMM&) = delete;

    /// the settings given at construction
    const GpuIndexIVFGMMConfig& config() const;

    /**
     * Replace everything by a copy of cpu_index: d, nlist, model,
     * parameters (build_params, nprobe and search_options), lists in the
     * same order with the same ids and spill records, ntotal and
     * nentries. Throws when cpu_index uses what the GPU index does not
     * (max_codes, codes other than Flat) or is not L2.
     */
    void copyFrom(const IndexIVFGMM* cpu_index);

    /**
     * Overwrite cpu_index with a copy of this index (the inverse of
     * copyFrom): an IndexIVFGMM over Flat codes with this model,
     * parameters, lists and spill records.
     */
    void copyTo(IndexIVFGMM* cpu_index) const;

    /// Fit the GMM on n training vectors (host memory) with the fused GPU
    /// EM (gpu::train_gmm_gpu on config.device / precision), install the
    /// model, then train the code on the same vectors (train_codes). The
    /// index must be empty.
    void train(idx_t n, const float* x) override;

    /// Adopt an already trained model (k must equal nlist, d must match);
    /// the index must be empty. With SQ8 codes the index is trained once
    /// train_codes() has run too.
    void set_gmm(const GaussianMixture& model);

    /**
     * Train the code's own parameters (SQ8: per-dimension ranges) on n
     * vectors x (host) as IndexIVFGMM::train_codes does: FAISS's training
     * on the residuals to the nearest mean. No-op for Flat and SQfp16. The
     * model must be set and the index empty.
     */
    void train_codes(idx_t n, const float* x);

    /// the code of the lists ("Flat", "SQfp16" or "SQ8")
    const char* codes_name() const;
    /// bytes of one entry's code (4 d, 2 d or d)
    size_t code_size() const;

    /// add_with_ids with ids ntotal, ntotal + 1, ...
    void add(idx_t n, const float* x) override;

    /**
     * Store each of the n vectors x (host memory, n x d) in the lists
     * chosen by build_params.spill, with ids xids (host, n values) or ntotal,
     * ntotal + 1, ... when xids is null. Any n; processed in batches of
     * config.add_batch_rows.
     */
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;

    /**
     * The lists add_with_ids() would choose for the n vectors x (host),
     * without adding: lists[i * max_assign ...], primary first, -1 padded;
     * the same layout as IndexIVFGMM::assign_lists.
     */
    void assign_lists(idx_t n, const float* x, idx_t* lists) const;

    /**
     * k nearest stored vectors of each of the n queries x (host memory),
     * every id at most once. params: a SearchParametersIVFGMM or
     * faiss::SearchParametersIVF overrides nprobe and (for the former)
     * probe order and adaptive probing; what the GPU does not implement
     * (see the class comment) is rejected. Throws on a query with NaN or
     * infinite values (naming its row), on k or nprobe above
     * max_search_k(). Results a query cannot fill are (FLT_MAX, -1), as
     * the CPU index's heaps leave them.
     */
    void search(
        idx_t n,
        const float* x,
        idx_t k,
        float* distances,
        idx_t* labels,
        const faiss::SearchParameters* params = nullptr) const override;

    /// Empties the lists (the model stays trained).
    void reset() override;

    /// Removes every copy of each selected id (through the host); returns
    /// the number of unique vectors removed.
    size_t remove_ids(const faiss::IDSelector& sel) override;

    /// The stored vector with id key; throws when no vector has that id.
    void reconstruct(idx_t key, float* recons) const override;

    /// The defaults of a search: nprobe, max_codes and search_options.
    SearchParametersIVFGMM search_defaults() const;

    /**
     * Set search-time defaults from a string ("nprobe=32,probe=posterior"),
     * the keys of parse_search_parameters (IVFGMMParameters.h). What the
     * GPU does not implement is rejected; nothing changes on error.
     */
    void set_search_parameters(const std::string& description);

    /**
     * Set build-time parameters from a string ("tau=0.05,max_assign=3"),
     * the keys of parse_build_parameters. Nothing changes on error.
     */
    void set_build_parameters(const std::string& description);

    /// Largest k and nprobe search() accepts (kernels::kSelectMaxK).
    static int max_search_k();

    /// number of list entries (copies), >= ntotal
    size_t nentries() const;
    /// nentries() / ntotal (1 when empty)
    double replication_factor() const;
    /// int32 spill records per entry (max_assign - 1 of the widest add)
    int other_lists_width() const;
    /// entries of list `list`
    size_t list_length(idx_t list) const;
    /// ids of list `list`, in entry order (copied to the host)
    std::vector<idx_t> list_ids(idx_t list) const;
    /// vectors of list `list`, list_length x d (copied to the host and
    /// decoded: the stored vectors for Flat, their reconstructions else)
    std::vector<float> list_vectors(idx_t list) const;
    /// codes of list `list` as stored, list_length x code size bytes
    /// (copied to the host; FAISS's bytes for the code)
    std::vector<uint8_t> list_codes(idx_t list) const;
    /// spill records of list `list`, list_length x other_lists_width()
    /// (copied to the host)
    std::vector<int32_t> list_records(idx_t list) const;

    /// timings of the last search()
    const GpuSearchTiming& last_search_timing() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace gpu
} // namespace faiss_gmm
