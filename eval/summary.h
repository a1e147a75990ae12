/**
 * The summary of a run: the distance computations each index needs to reach
 * recall@k targets, the ratio baseline / index (> 1: the index needs fewer),
 * and recall@k at the baseline's costs ("matched cost"). Also the readable
 * tables printed on stdout.
 */

#pragma once

#include <string>
#include <vector>

#include <eval/curves.h>
#include <eval/results.h>

namespace faiss_gmm {
namespace eval {

/// How the cost of a search row is counted.
enum class CostMeasure : int {
    /// coarse + fine distances, each stored vector counted once per query
    UniqueVectors = 0,
    /// coarse + inverted-list entries scanned, duplicates included
    EntriesScanned = 1,
    /// wall-clock search time per query in microseconds (1e6 / QPS, the
    /// run's threads or GPU): the ratio at a target is the QPS ratio at
    /// matched recall
    SearchTime = 2,
    /// bytes read per query: codes of the list entries scanned (and their
    /// spill records), plus the refinement's reads (SearchRow::bytes_scanned)
    BytesScanned = 3,
};
/// "unique" / "entries" / "time_us" / "bytes".
const char* cost_measure_name(CostMeasure measure);

/// The cost of one row under the given measure.
double row_cost(const SearchRow& row, CostMeasure measure);

/// The index's recall@k curve (rows with finite recall and cost > 0).
std::vector<CurvePoint>
recall_curve(const IndexResult& index, CostMeasure measure);

/// Costs to reach recall targets and ratios to the baseline.
struct TargetSummary {
    CostMeasure measure = CostMeasure::UniqueVectors; ///< cost counting
    std::vector<double> targets; ///< recall@k targets, ascending
    /// cost[i][t]: cost per query of index i at targets[t] (NaN: not reached)
    std::vector<std::vector<double>> cost;
    /// upper_bound[i][t]: the cheapest measured setting already reaches the
    /// target, so cost[i][t] (that setting's cost) is only an upper bound
    std::vector<std::vector<bool>> upper_bound;
    /// ratio[i][t] = cost[baseline][t] / cost[i][t] (NaN when either is NaN
    /// or there is no baseline)
    std::vector<std::vector<double>> ratio;
};

/// Cost of every index at each target, on its interpolated curve.
TargetSummary summarize_targets(
    const EvalReport& report,
    const std::vector<double>& targets,
    CostMeasure measure);

/// Recall@k of every index at the baseline's measured costs.
struct MatchedCostSummary {
    CostMeasure measure = CostMeasure::UniqueVectors; ///< cost counting
    /// the baseline's costs per query, one per baseline row, ascending
    std::vector<double> costs;
    /// the baseline row behind each cost (its nprobe)
    std::vector<int64_t> baseline_nprobe;
    /// recall[i][c]: recall@k of index i at costs[c] (NaN outside its curve)
    std::vector<std::vector<double>> recall;
};

/// Interpolates every index's curve at the baseline's costs. Empty when the
/// report has no baseline.
MatchedCostSummary
summarize_matched_cost(const EvalReport& report, CostMeasure measure);

/// Per-row table: every index and search setting with recalls, distance
/// counts, replication, times.
std::string format_rows_table(const EvalReport& report);

/// Targets table (cost per index and ratio to the baseline).
std::string
format_target_summary(const EvalReport& report, const TargetSummary& summary);

/// Matched-cost table (recall@k of each index at the baseline's costs).
std::string format_matched_cost(
    const EvalReport& report, const MatchedCostSummary& summary);

/// A number for tables: "n/a" for NaN, otherwise printf with the format.
std::string format_number(double value, const char* format);

} // namespace eval
} // namespace faiss_gmm
