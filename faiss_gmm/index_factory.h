/**
 * index_factory for the faiss-gmm plugin: FAISS-style description strings
 * that may contain a GMM coarse quantizer. Strings without a GMM token are
 * handed to faiss::index_factory unchanged.
 *
 * Grammar (comma-separated, like FAISS; tokens are case-sensitive):
 *
 *     chain     := transform "," chain
 *                | ("IDMap" | "IDMap2") "," chain
 *                | chain "," ("IDMap" | "IDMap2")
 *                | gmm "," code ["," refine]
 *     transform := a FAISS VectorTransform token starting with PCA, OPQ,
 *                  RR, ITQ, L2norm or Pad: PCA64, PCAW64, PCAR64, OPQ16,
 *                  OPQ16_64, RR64, ITQ64, L2norm, Pad160, ... (parsed by
 *                  FAISS itself, so every FAISS variant works)
 *     gmm       := "IVF" nlist "_GMM" [covariance] option*
 *     nlist     := digits ["k" | "M"]   k = 1024, M = 1024 * 1024, so
 *                  IVF4k_GMM has 4096 lists (FAISS has no suffix; powers of
 *                  two are what IVF users pick); 1 <= nlist <= 2^24
 *     covariance:= "sph" (spherical, the default) | "diag" (diagonal)
 *                | "tied" (tied spherical: one variance for all lists)
 *                | "full" (full covariance: k * d^2 floats; the
 *                  GpuIndexIVFGMM refuses it, the CPU index serves it)
 *     option    := "_m" int         max lists per vector, primary included
 *                                   (key max_assign, in [1, 1024] and
 *                                   <= nlist)
 *                | "_tau" float     posterior spill threshold in [0, 1]
 *                                   (key tau)
 *                | "_T" float       posterior temperature, > 0 (key
 *                                   temperature)
 *                | "_closure" float closure spill rule, distance ratio >= 1
 *                                   (key closure_ratio)
 *                | "_soar" float    SOAR spill rule, lambda >= 0 (key
 *                                   soar_lambda)
 *                | "_rair" float    RAIR spill rule, lambda >= 0 (key
 *                                   rair_lambda)
 *                | "_nospill"       one list per vector (max_assign = 1)
 *     code      := "Flat", or any FAISS IVF code with an inverted-list
 *                  scanner ("SQ8", "SQ4", "SQfp16", "PQ16", "PQ16np", ...),
 *                  the fast-scan PQ "PQ<m>x4fs" / "PQ<m>x4fsr" (residual)
 *                  (stored and scanned as 4-bit PQ codes: IndexIVFGMM.h),
 *                  "RaBitQ" / "RaBitQ<bits>" where FAISS has it (>= 1.11,
 *                  FAISS_GMM_HAS_RABITQ; an older FAISS gets an error naming
 *                  its version): FAISS builds "IVF<nlist>,<code>" and the
 *                  IndexIVFGMM uses its codes (each spilled copy encoded
 *                  against its own list's mean). Other fast-scan codes
 *                  ("RQ4x4fs", "RaBitQfs") are refused.
 *     refine    := "RFlat" | "Refine(" FAISS index string ")": a
 *                  faiss::IndexRefineFlat / IndexRefine around the
 *                  IndexIVFGMM re-ranks its k * k_factor candidates with
 *                  exact (or finer) distances
 *
 * Options are the build keys of the parameter key table
 * (IVFGMMParameters.h), so they accept exactly the values
 * IndexIVFGMM::set_build_parameters accepts. At most one of tau / closure /
 * soar / rair / nospill selects the spill rule (otherwise SpillParameters'
 * default rule applies); _T needs the posterior rule; no option may repeat.
 * Unspecified values keep the defaults of GmmParameters and SpillParameters.
 *
 * IDMap and IDMap2 give the index without the wrapper: IndexIVFGMM stores
 * arbitrary ids itself (add_with_ids, remove_ids, reconstruct by id), while
 * a faiss::IndexIDMap around it would return wrong labels after remove_ids.
 *
 * Examples:
 *     "IVF1024_GMM,Flat"                   spherical GMM, 1024 lists
 *     "IVF4k_GMMdiag,Flat"                 diagonal GMM, 4096 lists
 *     "IVF1024_GMMtied,Flat"               tied-spherical GMM, 1024 lists
 *     "IVF256_GMMfull_m2,Flat"             full-covariance GMM, 256 lists
 *     "IVF1024_GMM_tau0.05_m3,Flat"        spill at posterior >= 0.05, <= 3
 *     "IVF1024_GMM,SQ8"                    8-bit scalar-quantized codes
 *     "IVF4k_GMM,PQ32,RFlat"               PQ codes, re-ranked exactly
 *     "IVF4k_GMM,PQ32x4fsr,RFlat"          4-bit (fast-scan) PQ residual
 *                                          codes, re-ranked exactly
 *     "IVF4k_GMM,RaBitQ"                   1-bit RaBitQ codes (FAISS >= 1.11)
 *     "PCA64,IVF1024_GMM,Flat"             IndexPreTransform around it
 *     "IDMap,IVF1024_GMM,Flat"             the IndexIVFGMM (ids inside)
 *     "IVF1024,Flat", "HNSW32", "Flat"     no GMM token: plain FAISS
 *
 * The metric must be L2. A malformed string throws faiss::FaissException
 * naming the offending token.
 */

#pragma once

#include <string>

#include <faiss/Index.h>

namespace faiss_gmm {

struct IndexIVFGMM;

/**
 * Build an index from a description string (grammar above).
 *
 * @param d           input dimension of the index
 * @param description comma-separated chain of tokens
 * @param metric      FAISS metric; must be METRIC_L2 when the string holds a
 *                    GMM token
 * @return a new index owned by the caller; wrappers own their sub-indexes
 */
faiss::Index* index_factory(
    int d,
    const char* description,
    faiss::MetricType metric = faiss::METRIC_L2);

/**
 * The IndexIVFGMM at the bottom of a chain of IndexPreTransform / IndexIDMap
 * / IndexIDMap2 / IndexRefine (its base index) wrappers, or nullptr when
 * there is none.
 *
 * @param index any index (may be nullptr)
 */
IndexIVFGMM* try_extract_index_ivfgmm(faiss::Index* index);
/// const overload of try_extract_index_ivfgmm
const IndexIVFGMM* try_extract_index_ivfgmm(const faiss::Index* index);

/**
 * Set search-time parameters from a string, FAISS ParameterSpace style
 * ("nprobe=32,probe=posterior"). When an IndexIVFGMM sits inside the
 * PreTransform / IDMap / Refine wrappers it receives the string through
 * IndexIVFGMM::set_search_parameters (build keys such as tau are refused
 * there: use IndexIVFGMM::set_build_parameters), except k_factor, which
 * goes to the IndexRefine around it; any other index goes to
 * faiss::ParameterSpace::set_index_parameters.
 *
 * @param index       index to configure (not nullptr)
 * @param description "name=value" pairs separated by commas
 */
void set_index_parameters(faiss::Index* index, const std::string& description);

} // namespace faiss_gmm
