/**
 * IndexIVFGMM: a faiss::IndexIVF whose coarse quantizer is a Gaussian
 * mixture, over any FAISS IVF code (Flat, SQ, PQ, RaBitQ...). Border
 * vectors are stored in several inverted lists (spill); search never
 * returns an id twice and computes each stored vector's distance at most
 * once per query.
 */

#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <faiss/IndexIVF.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/IVFGMMStats.h>
#include <faiss_gmm/SpillRecords.h>
#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

struct ListAssigner;

namespace impl {
class CodeScanView;
} // namespace impl

/**
 * IVF index with a GMM coarse quantizer. Metric: L2 only.
 *
 * Composition: the quantizer (an L2 IndexFlat over the component means)
 * and the inverted lists are this index's, as in any faiss::IndexIVF;
 * `gmm` holds the full model; `codes_index` is a FAISS IVF index of the
 * chosen code (IndexIVFFlat by default, IndexIVFScalarQuantizer,
 * IndexIVFPQ, ...) that shares this quantizer (its own lists stay empty)
 * and supplies what is specific to the code: encode_vectors (each spilled
 * copy is encoded against its own list's mean), the InvertedListScanner
 * that computes distances, decoding (sa_decode), and training of the
 * code's own parameters. Everything about probing, spill and deduplication
 * is written once, here.
 *
 * Codes: every FAISS IVF code with an InvertedListScanner (Flat, SQ...,
 * PQ..., RaBitQ where FAISS has it: FAISS_GMM_HAS_RABITQ), and FAISS's
 * fast-scan PQ (IndexIVFPQFastScan, "PQ<m>x4fs"): its 4-bit codes are
 * stored one after the other like any code (not in FAISS's interleaved
 * blocks of 32), scanned with exact float look-up tables and decoded
 * through a 4-bit IndexIVFPQ view of the same codebook, on every FAISS
 * version; the gain is the memory of 4-bit codes, not FAISS's SIMD block
 * scan. Other fast-scan codes (additive quantizers, RaBitQ fast scan) are
 * refused.
 *
 * Spill bookkeeping (SpillRecords): per list entry, the other lists holding
 * the same vector. ntotal counts vectors, nentries() list entries (copies).
 *
 * Every FAISS entry point keeps these semantics or throws: search, search1
 * (FAISS >= 1.14), range_search, search_preassigned,
 * range_search_preassigned, search_and_reconstruct, assign, add,
 * add_with_ids, add_core (one list per vector), add_sa_codes, remove_ids
 * (every copy), update_vectors (remove + add), reconstruct /
 * reconstruct_n / reconstruct_batch (by id), merge_from,
 * check_compatible_for_merge, copy_subset_to (subset types 0 and 1), reset,
 * sa_encode / sa_decode (FAISS's standalone IVF codes, primary list),
 * get_distance_computer (FAISS's generic one: distances by id through
 * reconstruct). The *_ex entry points of FAISS >= 1.13 forward float data
 * to these. Not available (FAISS's own clear error): search_subset.
 * faiss::clone_index and faiss::write_index refuse the class (use
 * faiss_gmm::clone_index and faiss_gmm::write_index).
 *
 * Defaults (IVFGMMBuildParameters, IVFGMMSearchOptions) and how they were
 * measured: docs/measurements.md.
 */
struct IndexIVFGMM : faiss::IndexIVF {
    /// the trained model (k = nlist); change it through set_gmm() only
    GaussianMixture gmm;
    /// how train() and add() build the index
    IVFGMMBuildParameters build_params;
    /// default GMM search options (IndexIVF::nprobe and max_codes are the
    /// other defaults), overridden per call by SearchParametersIVFGMM
    IVFGMMSearchOptions search_options;
    /// which lists hold which vector (kept in step with invlists)
    SpillRecords spill_records;
    /// the FAISS IVF index of the code (owned), sharing the quantizer
    faiss::IndexIVF* codes_index = nullptr;

    /**
     * An empty IVF-GMM index over flat float32 codes (IndexIVFFlat).
     *
     * @param d            dimension (>= 1)
     * @param nlist        mixture components = lists, in [1, 2^31)
     * @param build_params how train() and add() work (checked)
     */
    IndexIVFGMM(
        int d,
        size_t nlist,
        const IVFGMMBuildParameters& build_params = IVFGMMBuildParameters());

    /**
     * An empty IVF-GMM index over the codes of a FAISS IVF index.
     *
     * @param codes_index  an empty, L2 faiss::IndexIVF of the code to use,
     *                     e.g. from faiss::index_factory(d, "IVF1024,SQ8");
     *                     this index takes it over, with its quantizer
     *                     (which must be an L2 faiss::IndexFlat, empty or
     *                     holding nlist entries) and its inverted lists
     *                     (deleted when the constructor throws)
     * @param build_params how train() and add() work (checked)
     */
    explicit IndexIVFGMM(
        faiss::IndexIVF* codes_index,
        const IVFGMMBuildParameters& build_params = IVFGMMBuildParameters());

    IndexIVFGMM();
    ~IndexIVFGMM() override;

    /**
     * Make this an empty, untrained index over the codes of `codes_index`
     * (taken over as by the constructor), with new parameters: every
     * model, list and setting held before is dropped. For copies into an
     * existing object (gpu::GpuIndexIVFGMM::copyTo).
     */
    void reset_to(
        faiss::IndexIVF* codes_index,
        const IVFGMMBuildParameters& build_params);
    IndexIVFGMM(const IndexIVFGMM&) = delete;
    IndexIVFGMM& operator=(const IndexIVFGMM&) = delete;

    /// Fit the GMM on n training vectors (on the CPU or GPU, see
    /// build_params.train_device), load its means into the quantizer, then
    /// train the code's own parameters (SQ ranges, PQ codebooks) on the
    /// residuals to those means. The index must be empty.
    void train(idx_t n, const float* x) override;

    /// Adopt an already trained model (k must equal nlist, d must match);
    /// the index must be empty. Codes that need training (SQ, PQ) still
    /// need train_codes().
    void set_gmm(const GaussianMixture& model);

    /// Train the code's own parameters on n vectors against the current
    /// model's means (done by train(); for set_gmm() users).
    void train_codes(idx_t n, const float* x);

#if FAISS_GMM_HAS_TRAIN_ENCODER
    /// The code's own training on residuals (FAISS's hook; train() and
    /// train_codes() call it through the code index).
    void train_encoder(idx_t n, const float* x, const idx_t* assign) override;
    /// As the code index says.
    idx_t train_encoder_num_vectors() const override;
#else
    /// The code's own training (FAISS's hook; train() and train_codes()
    /// call it through the code index).
    void train_residual(idx_t n, const float* x) override;
#endif

    /**
     * Store each vector in the lists chosen by build_params.spill; ids are
     * xids or ntotal, ntotal + 1, ... when xids is null. The lists come
     * from the assigner (set_assigner; the CPU rule by default) in batches
     * of its batch_size(); an assigner that overlaps_encoding() assigns the
     * next batch on a helper thread while the OpenMP threads encode the
     * current one. verbose: a progress line (vectors, rate, ETA) and a
     * summary with the time spent assigning and encoding. A throw part way
     * leaves the batches stored before it in the index.
     */
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;

    /**
     * Install the strategy that chooses the lists of added vectors
     * (add_with_ids, update_vectors, assign_lists), e.g. a
     * gpu::GpuListAssigner that assigns on a GPU; null restores the CPU
     * rule (assign_lists). Runtime only: write_index does not save it and
     * clone_index does not copy it.
     */
    void set_assigner(std::shared_ptr<ListAssigner> assigner);
    /// The installed assigner (null: the CPU rule).
    std::shared_ptr<ListAssigner> get_assigner() const {
        return assigner_;
    }

    /// One list per vector, given by coarse_idx (-1: not stored); keeps the
    /// spill records in sync for callers that bypass add_with_ids.
    void add_core(
        idx_t n,
        const float* x,
        const idx_t* xids,
        const idx_t* coarse_idx FAISS_GMM_ADD_CORE_CONTEXT_PARAM) override;

    /// Codes from sa_encode (list number + code): one list per vector.
    void add_sa_codes(idx_t n, const uint8_t* codes, const idx_t* xids);

    /**
     * Lists of each vector under the current spill rule, without adding:
     * lists[i * max_assign ...] for i < n, primary first, -1 padded.
     * The same choice add_with_ids() makes (see assign_lists in
     * ListAssignment.h), by the installed assigner.
     */
    void assign_lists(idx_t n, const float* x, idx_t* lists) const;

    /**
     * Coarse step of search(): the lists each query probes, in probe order,
     * -1 padded when adaptive probing stops early, with every coarse rule
     * of params (nprobe, probe order, posterior_mass, distance_ratio).
     * assign and coarse_dis hold n * params.nprobe values (coarse_dis: L2
     * distance for the L2 order, minus the log-joint for the posterior
     * order).
     */
    void coarse_assign(
        idx_t n,
        const float* x,
        const SearchParametersIVFGMM& params,
        idx_t* assign,
        float* coarse_dis) const;

    void search(
        idx_t n,
        const float* x,
        idx_t k,
        float* distances,
        idx_t* labels,
        const faiss::SearchParameters* params = nullptr) const override;

#if FAISS_GMM_HAS_SEARCH1
    /// One query into a FAISS ResultHandler, each id once.
    void search1(
        const float* x,
        faiss::ResultHandler& handler,
        faiss::SearchParameters* params = nullptr) const override;
#endif

    /// The pruning rules (prune_margin, min_expected_hits; on by default)
    /// read centroid_dis as the squared L2 distances to the means, as
    /// coarse_assign gives them in L2 probe order; with centroid_dis null
    /// or in posterior order the lists are scanned unpruned.
    void search_preassigned(
        idx_t n,
        const float* x,
        idx_t k,
        const idx_t* assign,
        const float* centroid_dis,
        float* distances,
        idx_t* labels,
        bool store_pairs,
        const faiss::IVFSearchParameters* params = nullptr,
        faiss::IndexIVFStats* stats = nullptr) const override;

    void range_search(
        idx_t n,
        const float* x,
        float radius,
        faiss::RangeSearchResult* result,
        const faiss::SearchParameters* params = nullptr) const override;

    /// Range search over pre-assigned lists, each id at most once.
    void range_search_preassigned(
        idx_t nx,
        const float* x,
        float radius,
        const idx_t* keys,
        const float* coarse_dis,
        faiss::RangeSearchResult* result,
        bool store_pairs = false,
        const faiss::IVFSearchParameters* params = nullptr,
        faiss::IndexIVFStats* stats = nullptr) const
#if FAISS_GMM_HAS_VIRTUAL_RANGE_SEARCH_PREASSIGNED
        override
#endif
        ;

    /// search(), then the stored vectors of the results (by id).
    void search_and_reconstruct(
        idx_t n,
        const float* x,
        idx_t k,
        float* distances,
        idx_t* labels,
        float* recons,
        const faiss::SearchParameters* params = nullptr) const override;

    /// Removes every copy of each selected id; returns unique vectors
    /// removed. Refuses the selector faiss::IndexIDMap passes (IndexIDMap
    /// renumbers its ids after a removal, which an IVF index does not:
    /// store ids in IndexIVFGMM directly instead).
    size_t remove_ids(const faiss::IDSelector& sel) override;
    /// Replace the stored vectors of ids idx[0 .. nv) (every copy) by v;
    /// each id must be stored. The new vectors get the current spill rule.
    void update_vectors(int nv, const idx_t* idx, const float* v) override;
    /// Empties the lists (the model stays trained).
    void reset() override;
    /// The stored vector with id key (decoded from one of its copies);
    /// throws when no vector has that id.
    void reconstruct(idx_t key, float* recons) const override;
    /// reconstruct() of the ids i0 .. i0 + ni - 1.
    void reconstruct_n(idx_t i0, idx_t ni, float* recons) const override;
    /// Decode entry `offset` of list `list_no` through the code (its
    /// standalone sa_decode).
    void reconstruct_from_offset(
        int64_t list_no, int64_t offset, float* recons) const override;

    /// other must be an IndexIVFGMM with the same d, nlist, means and code;
    /// its entries move here with ids shifted by add_id, leaving other
    /// empty.
    void merge_from(faiss::Index& other, idx_t add_id) override;
    /// Throws unless merge_from(other) would work.
    void check_compatible_for_merge(const faiss::Index& other) const override;
    /**
     * Copy the vectors (every copy, with their spill records) whose ids
     * fall in a subset to `other`, an IndexIVFGMM with the same model and
     * code. subset_type 0: ids in [a1, a2); 1: ids with id % a1 == a2.
     * Type 2 (list positions) would split a vector's copies: refused.
     */
    void copy_subset_to(
        faiss::IndexIVF& other,
        CopySubsetType subset_type,
        idx_t a1,
        idx_t a2) const override;

    /// Encoding through the code, list numbers given per vector.
    void encode_vectors(
        idx_t n,
        const float* x,
        const idx_t* list_nos,
        uint8_t* codes,
        bool include_listnos = false) const override;
#if FAISS_GMM_HAS_DECODE_VECTORS
    /// Decoding through the code's standalone sa_decode (list number, then
    /// the code), which every code has (FAISS's fast-scan PQ has no
    /// decode_vectors); list_nos in [0, nlist).
    void decode_vectors(
        idx_t n,
        const uint8_t* codes,
        const idx_t* list_nos,
        float* x) const override;
#endif
    /// FAISS's standalone IVF code (list number + code) decoded by the code
    /// (for fast-scan PQ, by its IndexIVFPQ view).
    void sa_decode(idx_t n, const uint8_t* bytes, float* x) const override;
    /// The code's scanner over the codes this index stores (search and
    /// range search use their own dedup scan over it; callers of the
    /// scanner see raw list entries). For fast-scan PQ, the scanner of the
    /// IndexIVFPQ view (see the class comment), valid until the index is
    /// destroyed or reset_to() another code.
    faiss::InvertedListScanner* get_InvertedListScanner(
        bool store_pairs = false,
        const faiss::IDSelector* sel = nullptr
#if FAISS_GMM_HAS_SCANNER_PARAMS
        ,
        const faiss::IVFSearchParameters* params = nullptr
#endif
    ) const override;

    /// number of list entries (copies), >= ntotal
    size_t nentries() const {
        return spill_records.nentries;
    }
    /// nentries() / ntotal (1 when empty).
    double replication_factor() const;
    /// FAISS's imbalance factor of the list sizes (entries):
    /// nlist * sum(size^2) / (sum size)^2, 1 when perfectly balanced.
    double imbalance_factor() const;

    /// The defaults of a search: nprobe, max_codes and search_options.
    SearchParametersIVFGMM search_defaults() const;
    /// Set nprobe, max_codes and search_options (checked first).
    void set_search_defaults(const SearchParametersIVFGMM& params);

    /**
     * Set search-time defaults from a string, FAISS ParameterSpace style:
     * "nprobe=32,probe=posterior,prune_margin=0.3". The keys are those of
     * parse_search_parameters (IVFGMMParameters.h). Throws naming the bad
     * key or value; nothing changes then.
     */
    void set_search_parameters(const std::string& description);

    /**
     * Set build-time parameters from a string ("tau=0.05,max_assign=3"):
     * the spill rule of later adds and the EM settings of the next train.
     * Keys: parse_build_parameters. Throws naming the bad key or value;
     * nothing changes then.
     */
    void set_build_parameters(const std::string& description);

    /// Throws (naming `who`) unless the spill records match the lists.
    void check_lists_in_sync(const char* who) const;

   protected:
    /// Throws (naming `who`) unless the index is L2 and fully built.
    void check_usable(const char* who) const;
    /// Copy the model and load its means into the quantizer.
    void install_model(const GaussianMixture& model);
    /// Append n vectors to the lists given by lists[i * m ...] (-1 padded).
    void add_assigned(
        idx_t n,
        const float* x,
        const idx_t* xids,
        idx_t first_sequential_id,
        const idx_t* lists,
        int m);
    /// add_assigned in blocks of bounded memory; done(vectors stored so
    /// far) after each block.
    void add_assigned_blocks(
        idx_t n,
        const float* x,
        const idx_t* xids,
        idx_t first_sequential_id,
        const idx_t* lists,
        int m,
        const std::function<void(idx_t)>& done);
    /// Every search parameter of one call, resolved against the defaults
    /// and checked (nprobe capped at nlist).
    SearchParametersIVFGMM resolve_search_parameters(
        const faiss::SearchParameters* params, const char* who) const;
    /// codes_index, checked to share our quantizer.
    const faiss::IndexIVF& codes() const;
    /// The index whose InvertedListScanner and sa_decode read our stored
    /// codes: codes(), or the IndexIVFPQ view of a fast-scan PQ.
    const faiss::IndexIVF& scan_codes() const;
    /// Decode n codes of our lists (list_nos: their lists) through
    /// scan_codes().sa_decode.
    void decode_entries(
        idx_t n, const uint8_t* codes, const idx_t* list_nos, float* x) const;
    /// The locations of every id (built on first use).
    std::shared_ptr<const IdLocations> id_locations() const;
    /// Drop the reconstruct() cache after the lists change.
    void invalidate_id_locations();

   private:
    /// Take over codes (validated) as the code index: its quantizer becomes
    /// ours, the spill records are reset for its nlist.
    void adopt_codes(faiss::IndexIVF* codes);

    IdLocationCache id_location_cache_;
    /// chooses the lists of added vectors (null: assign_lists on the CPU)
    std::shared_ptr<ListAssigner> assigner_;
    /// the scanned index of a fast-scan PQ (impl/FastScanCodes.h)
    std::unique_ptr<impl::CodeScanView> scan_view_;
};

} // namespace faiss_gmm
