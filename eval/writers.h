/**
 * Machine-readable outputs of a run: results.csv (one line per index and
 * search setting), summary.csv (costs at recall targets, ratios, recall at
 * matched cost) and results.json (everything, including the run settings).
 */

#pragma once

#include <string>
#include <vector>

#include <eval/results.h>
#include <eval/summary.h>

namespace faiss_gmm {
namespace eval {

/// Column names of results.csv, in order.
std::vector<std::string> results_csv_columns();

/// Writes results.csv to path (header + one line per row); throws naming the
/// path when it cannot be written.
void write_results_csv(const EvalReport& report, const std::string& path);

/**
 * Writes summary.csv: lines "target" (measure, index, target, cost, ratio)
 * and "matched_cost" (measure, index, cost, recall). NaN is written as an
 * empty field.
 */
void write_summary_csv(
    const EvalReport& report,
    const std::vector<TargetSummary>& targets,
    const std::vector<MatchedCostSummary>& matched,
    const std::string& path);

/// Writes results.json: run settings, per-index build figures and rows, and
/// the summaries. NaN is written as null.
void write_results_json(
    const EvalReport& report,
    const std::vector<TargetSummary>& targets,
    const std::vector<MatchedCostSummary>& matched,
    const std::string& path);

/// A string as a JSON string literal (quotes and escapes included).
std::string json_quote(const std::string& s);

/// A string as one CSV field (quoted when it holds a comma, quote or
/// newline).
std::string csv_field(const std::string& s);

} // namespace eval
} // namespace faiss_gmm
