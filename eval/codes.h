/**
 * The --codes preset: the GMM quantizer against FAISS k-means IVF under
 * each IVF code of a list (Flat, SQ8, SQ4, SQfp16, PQ<m>, PQ<m>np, ...,
 * each optionally refined), on the same k-means lists and the same GMM for
 * every code, and its per-code table: the k-means / GMM ratio at recall
 * targets in distance computations, list entries, bytes scanned and search
 * time, index memory per vector and replication, and whether spill costs
 * more memory than it saves in scanning.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <eval/results.h>
#include <eval/runner.h>
#include <eval/summary.h>

namespace faiss_gmm {
namespace eval {

/// One code of the preset: a FAISS IVF code and an optional refinement.
struct CodeVariant {
    /// as written in the list: "PQ16np+RFlat"
    std::string label;
    /// the FAISS IVF code: "PQ16np"
    std::string code;
    /// the FAISS refinement token: "" (none), "RFlat", "Refine(SQfp16)"
    std::string refine;

    /// What follows "IVF<n>" or "IVF<n>_GMM" in the factory string:
    /// ",PQ16np,RFlat".
    std::string factory_suffix() const;
};

/**
 * Parses the --codes value: comma-separated items (commas inside
 * parentheses do not separate), each "<code>" or "<code>+<refinement>"
 * with <refinement> "RFlat" or "Refine(<code>)". Throws naming the bad
 * item; the codes themselves are checked when the indexes are made.
 */
std::vector<CodeVariant> parse_code_list(const std::string& list);

/// Recall@k targets of the per-code table: 0.90, 0.95, 0.99.
std::vector<double> code_targets();

/**
 * Per code, in list order: "k-means <label>" (IVF<n>,<code>[,<refine>],
 * FAISS IVF on the run's k-means centroids, stock search) then
 * "GMM <label>" (IVF<n>_GMM,<code>[,<refine>], one GMM shared by every
 * code, with the run's GMM settings: library defaults, list pruning
 * included, unless overridden).
 */
std::vector<IndexSpec> code_specs(
    int64_t nlist,
    const std::vector<CodeVariant>& codes,
    const GmmOverrides& gmm);

/// The cost measures of the per-code table, in column order.
std::vector<CostMeasure> code_measures();

/// One code's k-means / GMM comparison.
struct CodeComparison {
    std::string label; ///< the code's label
    int kmeans = -1;   ///< position of its k-means index in the report
    int gmm = -1;      ///< position of its GMM index in the report
    /// ratio[m][t]: k-means cost / GMM cost under code_measures()[m] at
    /// code_targets()[t] (> 1: the GMM needs less; NaN: a side misses it)
    std::vector<std::vector<double>> ratio;
    /// bound[m][t]: a side reaches the target at its cheapest setting (the
    /// ratio is indicative only)
    std::vector<std::vector<bool>> bound;
    double kmeans_bytes_per_vector = 0; ///< index memory / vectors
    double gmm_bytes_per_vector = 0;    ///< index memory / vectors
    double replication = 1;             ///< the GMM's list entries / vectors
    double kmeans_max_recall = 0;       ///< best recall@k over its rows
    double gmm_max_recall = 0;          ///< best recall@k over its rows
    /// the near-cap target: 0.97 x min(kmeans_max_recall, gmm_max_recall),
    /// rounded down to 0.01, where a code that caps recall below the fixed
    /// targets (SQ4, PQ without refinement) is still compared
    double cap_target = 0;
    /// cap_ratio[m]: k-means cost / GMM cost at cap_target under
    /// code_measures()[m]
    std::vector<double> cap_ratio;
    /// cap_bound[m]: as bound, at cap_target
    std::vector<bool> cap_bound;
    /// the highest code_targets() both reach in bytes scanned, else
    /// cap_target
    double verdict_target = 0;
    /// GMM memory / k-means memory (per vector)
    double memory_factor = 0;
    /// k-means bytes scanned / GMM bytes scanned at verdict_target
    double scan_factor = 0;

    /// Whether spill costs more memory than it saves in scanning:
    /// memory_factor > scan_factor (false when either is NaN).
    bool spill_costs_more_memory() const {
        return memory_factor > scan_factor;
    }
};

/**
 * The comparison of every code from a report of code_specs(); throws when
 * an index of a code is missing.
 */
std::vector<CodeComparison>
compare_codes(const EvalReport& report, const std::vector<CodeVariant>& codes);

/// The per-code table and one line per code on memory against scanning.
std::string format_code_table(
    const EvalReport& report, const std::vector<CodeComparison>& codes);

/// The per-code table as CSV (one line per code); throws naming the path
/// when it cannot be written.
void write_codes_csv(
    const std::vector<CodeComparison>& codes, const std::string& path);

} // namespace eval
} // namespace faiss_gmm
